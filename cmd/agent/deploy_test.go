package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
)

const deployDir = "../../deploy"

// The example configuration documents every field, loads, and validates.
func TestExampleConfigDocumentsEveryFieldAndValidates(t *testing.T) {
	path := filepath.Join(deployDir, "termagent.example.json")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &raw))
	rt := reflect.TypeFor[agent.Config]()
	for i := range rt.NumField() {
		name := strings.Split(rt.Field(i).Tag.Get("json"), ",")[0]
		require.Contains(t, raw, name, "the example sets %s", name)
		require.Contains(t, raw, "//"+name, "the example explains %s", name)
	}

	cfg, rest, err := agent.LoadConfig("agent", []string{"-config", path}, noEnv, &bytes.Buffer{})
	require.NoError(t, err)
	require.Empty(t, rest)
	require.NoError(t, cfg.Validate())
	// The file is a real deployment's, not the defaults.
	require.Equal(t, "/var/lib/termagent", cfg.DataDir)
	require.Equal(t, "json", cfg.LogFormat)

	// config check also checks the files, which live on the device: here
	// the development set stands in for them.
	var out bytes.Buffer
	_, files := devConf(t)
	require.NoError(t, run(t.Context(), append([]string{"config", "check", "-config", path}, files...), noEnv, &out, &out))
	require.Contains(t, out.String(), "configuration OK")
}

// The systemd unit keeps its hardening, reads TERMAGENT_* from an environment
// file, restarts on failure and lets the data directory be written.
func TestSystemdUnitHardening(t *testing.T) {
	path := filepath.Join(deployDir, "termagent.service")
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	directives := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "directive %q", line)
		directives[k] = append(directives[k], v)
	}
	require.NoError(t, sc.Err())
	want := map[string]string{
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"ReadWritePaths":          "/var/lib/termagent",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter":        "@system-service",
		"MemoryDenyWriteExecute":  "yes",
		"Restart":                 "on-failure",
		"EnvironmentFile":         "-/etc/termagent/termagent.env",
		"KillSignal":              "SIGTERM",
	}
	for k, v := range want {
		require.Contains(t, directives[k], v, "%s=%s", k, v)
	}
	// The unit's data directory is the example configuration's.
	var ex struct {
		DataDir string `json:"data_dir"`
	}
	b, err := os.ReadFile(filepath.Join(deployDir, "termagent.example.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &ex))
	require.Equal(t, ex.DataDir, directives["ReadWritePaths"][0])

	// systemd's own check, where systemd is installed (it needs the
	// executables to exist, so they are swapped for one that does).
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: unit syntax not verified by systemd")
		return
	}
	unit, err := os.ReadFile(path)
	require.NoError(t, err)
	tmp := filepath.Join(t.TempDir(), "termagent.service")
	require.NoError(t, os.WriteFile(tmp, bytes.ReplaceAll(unit, []byte("/usr/local/bin/termagent"), []byte("/bin/true")), 0o644))
	out, err := exec.CommandContext(t.Context(), sa, "verify", tmp).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "systemd-analyze verify")
}
