package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// checkedConfig runs `agent config check` with the development certificates and
// decodes the configuration it prints on stdout.
func checkedConfig(t *testing.T, args ...string) map[string]any {
	t.Helper()
	_, files := devConf(t)
	out, report, err := runAgent(t, nil, append(append([]string{"config", "check"}, files...), args...)...)
	require.NoError(t, err, "%s", report)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &cfg), out)
	return cfg
}

// `agent config check -env eur` prints the PPaaS document's Europe hosts
// (api.eur.ppaas.com is both its "Main API URL" and its "Security" host), and
// every preset URL stays overridable.
func TestConfigCheckPrintsEnvironmentHosts(t *testing.T) {
	cfg := checkedConfig(t, "-env", "eur")
	require.Equal(t, "eur", cfg["env"])
	require.Equal(t, "https://api.eur.ppaas.com/oauth2-mtls/v1/merchants-credentials", cfg["credentials_url"])
	require.Equal(t, "https://api.eur.ppaas.com:9021/oauth2-mtls/v1/token", cfg["token_url"])
	require.Equal(t, "https://api.eur.ppaas.com:9021", cfg["api_url"])

	cfg = checkedConfig(t, "-env", "nar")
	require.Equal(t, "https://auth.nar.ppaas.com/oauth2-mtls/v1/merchants-credentials", cfg["credentials_url"])
	require.Equal(t, "https://api.nar.ppaas.com:9021", cfg["api_url"])

	// The demo defaults are the document's URLs, verbatim.
	cfg = checkedConfig(t)
	require.Equal(t, "https://auth.demo.ppaas.tech/oauth2-mtls/v1/merchants-credentials", cfg["credentials_url"])
	require.Equal(t, "https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/token", cfg["token_url"])
	require.Empty(t, cfg["mqtt_url"], "the document names no broker: polling unless configured")

	cfg = checkedConfig(t, "-env", "eur", "-api-url", "https://api.example.test:9021")
	require.Equal(t, "https://api.example.test:9021", cfg["api_url"], "a flag wins over the preset")
	require.Equal(t, "https://api.eur.ppaas.com:9021/oauth2-mtls/v1/token", cfg["token_url"])

	// TERMAGENT_ENV works like the flag.
	_, files := devConf(t)
	out, report, err := runAgent(t, map[string]string{"TERMAGENT_ENV": "ind"}, append([]string{"config", "check"}, files...)...)
	require.NoError(t, err, "%s", report)
	require.Contains(t, out, `"api_url": "https://api.ind.ppaas.com:9021"`)

	_, _, err = runAgent(t, nil, "config", "check", "-env", "mars")
	require.ErrorContains(t, err, "config env (flag -env, env TERMAGENT_ENV): must be one of demo, eur, ind, nar")
}
