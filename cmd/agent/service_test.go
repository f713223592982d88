package main

import (
	"bytes"
	"io"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestServiceInstallCommandLineRoundTrips(t *testing.T) {
	abs := func(p string) (string, error) {
		if filepath.IsAbs(p) {
			return p, nil
		}
		return filepath.Join("/srv/termagent", p), nil
	}
	tests := []struct {
		name    string
		args    []string
		want    serviceRunArgs
		wantErr string
	}{
		{
			name: "defaults",
			args: []string{"-config", "termagent.json"},
			want: serviceRunArgs{name: "termagent", logFile: "/srv/termagent/termagent.log", dir: "/srv/termagent", agent: []string{"-config", "/srv/termagent/termagent.json"}},
		},
		{
			name: "named, own log",
			args: []string{"-name", "termagent-lane2", "-config", "lane2/termagent.json", "-log", "logs/lane2.log"},
			want: serviceRunArgs{name: "termagent-lane2", logFile: "/srv/termagent/logs/lane2.log", dir: "/srv/termagent/lane2", agent: []string{"-config", "/srv/termagent/lane2/termagent.json"}},
		},
		{name: "no config", args: nil, wantErr: "-config is required"},
		{name: "stray argument", args: []string{"-config", "x.json", "start"}, wantErr: `unexpected argument "start"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ia, err := parseServiceInstall(tc.args, abs, io.Discard)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			// What the SCM starts is parsed back by `agent service run`.
			cl := ia.run().commandLine()
			require.Equal(t, []string{"service", "run"}, cl[:2])
			got, err := parseServiceRun(cl[2:], io.Discard)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestServiceModeIsWindowsOnly(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the stub is for other systems")
	}
	for _, sub := range []string{"run", "install", "uninstall"} {
		var out bytes.Buffer
		err := run(t.Context(), []string{"service", sub}, noEnv, &out, &out)
		require.ErrorContains(t, err, "Windows-only")
		require.Equal(t, 1, exitCode(err))
	}
}
