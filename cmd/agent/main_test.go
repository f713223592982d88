package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/internal/syncbuf"
	"github.com/termagent/termagent/sim"
)

func noEnv(string) string { return "" }

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"version"}, noEnv, &out, &out))
	require.Contains(t, out.String(), "termagent dev")
}

func TestHelpDocumentsFlagsAndEnv(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"-h"}, noEnv, &out, &out)
	require.Equal(t, 0, exitCode(err))
	for _, want := range []string{"-auth-url", "TERMAGENT_AUTH_URL", "-nexo-listen", "TERMAGENT_PASSWORD"} {
		require.Contains(t, out.String(), want)
	}
	require.NotContains(t, out.String(), "-password ", "secrets have no flag")
}

func TestConfigCheckNamesTheField(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad grant flag", []string{"-grant", "magic"}, nil, "config grant (flag -grant, env TERMAGENT_GRANT)"},
		{"bad url env", nil, map[string]string{"TERMAGENT_AUTH_URL": "http://x"}, "config auth_url"},
		{"LAN without key", []string{"-nexo-listen", "0.0.0.0:8443"}, nil, "config nexo_passphrase (env TERMAGENT_NEXO_PASSPHRASE)"},
		{"bad duration", []string{"-payment-timeout", "soon"}, nil, "payment-timeout"},
		{"password grant needs password", []string{"-grant", "password", "-username", "merchant"}, nil, "config password (env TERMAGENT_PASSWORD): is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			env := func(k string) string { return tc.env[k] }
			err := run(t.Context(), append([]string{"config", "check"}, tc.args...), env, &out, &out)
			require.Error(t, err)
			require.Contains(t, err.Error()+out.String(), tc.want)
		})
	}

	var out bytes.Buffer
	env := func(k string) string {
		return map[string]string{"TERMAGENT_GRANT": "password", "TERMAGENT_USERNAME": "merchant", "TERMAGENT_PASSWORD": "s3cret-pw"}[k]
	}
	_, files := devConf(t)
	require.NoError(t, run(t.Context(), append([]string{"config", "check"}, files...), env, &out, &out))
	require.Contains(t, out.String(), "configuration OK")
	require.NotContains(t, out.String(), "s3cret-pw", "secrets never printed")
}

func TestAgentAuthenticatesAgainstSimulatorAndStops(t *testing.T) {
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir})
	require.NoError(t, err)
	p, err := sim.New(sim.Config{Addr: "127.0.0.1:0", CertsDir: dir})
	require.NoError(t, err)
	require.NoError(t, p.Start(t.Context()))
	defer p.Close(context.Background())

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"-auth-url", p.URL(), "-api-url", p.URL(), "-mqtt-url", "",
			"-cert", filepath.Join(dir, certs.ClientCertFile), "-key", filepath.Join(dir, certs.ClientKeyFile), "-ca", filepath.Join(dir, certs.BundleFile),
			"-nexo-cert", filepath.Join(dir, certs.AgentCertFile), "-nexo-key", filepath.Join(dir, certs.AgentKeyFile),
			"-nexo-listen", "127.0.0.1:0", "-admin-listen", "", "-data-dir", filepath.Join(dir, "data"),
		}, noEnv, logs, logs)
	}()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "authenticated to PPaaS") }, 10*time.Second, 10*time.Millisecond, "logs: %s", logs)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop on cancel")
	}
	require.Contains(t, logs.String(), "termagent stopped")
	require.NotContains(t, logs.String(), "access_token")
	require.NotContains(t, logs.String(), "clientSecret")
}
