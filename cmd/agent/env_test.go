package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// configCheck runs `agent config check` and decodes the configuration it prints.
func configCheck(t *testing.T, args ...string) map[string]any {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), append([]string{"config", "check"}, args...), noEnv, &out, &out), "%s", out.String())
	s := out.String()
	i := strings.Index(s, "{")
	require.GreaterOrEqual(t, i, 0, s)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal([]byte(s[i:]), &cfg), s)
	return cfg
}

// `agent config check -env eur` prints the PPaaS document's Europe hosts
// (api.eur.ppaas.com is both its "Main API URL" and its "Security" host), and
// every preset URL stays overridable.
func TestConfigCheckPrintsEnvironmentHosts(t *testing.T) {
	cfg := configCheck(t, "-env", "eur")
	require.Equal(t, "eur", cfg["env"])
	require.Equal(t, "https://api.eur.ppaas.com/oauth2-mtls/v1/merchants-credentials", cfg["credentials_url"])
	require.Equal(t, "https://api.eur.ppaas.com:9021/oauth2-mtls/v1/token", cfg["token_url"])
	require.Equal(t, "https://api.eur.ppaas.com:9021", cfg["api_url"])

	cfg = configCheck(t, "-env", "nar")
	require.Equal(t, "https://auth.nar.ppaas.com/oauth2-mtls/v1/merchants-credentials", cfg["credentials_url"])
	require.Equal(t, "https://api.nar.ppaas.com:9021", cfg["api_url"])

	// The demo defaults are the document's URLs, verbatim.
	cfg = configCheck(t)
	require.Equal(t, "https://auth.demo.ppaas.tech/oauth2-mtls/v1/merchants-credentials", cfg["credentials_url"])
	require.Equal(t, "https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/token", cfg["token_url"])
	require.Empty(t, cfg["mqtt_url"], "the document names no broker: polling unless configured")

	cfg = configCheck(t, "-env", "eur", "-api-url", "https://api.example.test:9021")
	require.Equal(t, "https://api.example.test:9021", cfg["api_url"], "a flag wins over the preset")
	require.Equal(t, "https://api.eur.ppaas.com:9021/oauth2-mtls/v1/token", cfg["token_url"])

	// TERMAGENT_ENV works like the flag.
	var out bytes.Buffer
	env := func(k string) string { return map[string]string{"TERMAGENT_ENV": "ind"}[k] }
	require.NoError(t, run(t.Context(), []string{"config", "check"}, env, &out, &out))
	require.Contains(t, out.String(), `"api_url": "https://api.ind.ppaas.com:9021"`)

	out.Reset()
	err := run(t.Context(), []string{"config", "check", "-env", "mars"}, noEnv, &out, &out)
	require.ErrorContains(t, err, "config env (flag -env, env TERMAGENT_ENV): must be one of demo, eur, ind, nar")
}
