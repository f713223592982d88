package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
)

// devConf writes the development PKI and returns the flags that use it.
func devConf(t *testing.T) (string, []string) {
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir})
	require.NoError(t, err)
	return dir, []string{
		"-cert", filepath.Join(dir, certs.ClientCertFile), "-key", filepath.Join(dir, certs.ClientKeyFile), "-ca", filepath.Join(dir, certs.BundleFile),
		"-nexo-cert", filepath.Join(dir, certs.AgentCertFile), "-nexo-key", filepath.Join(dir, certs.AgentKeyFile),
	}
}

func runAgent(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), args, func(k string) string { return env[k] }, &out, &errb)
	return out.String(), errb.String(), err
}

func TestConfigCheckOutputIsAConfigFile(t *testing.T) {
	_, files := devConf(t)
	env := map[string]string{"TERMAGENT_GRANT": "password", "TERMAGENT_USERNAME": "merchant", "TERMAGENT_PASSWORD": "s3cret-pw"}
	// Flags after the sub-command, every kind of value changed from its default.
	args := append([]string{"config", "check"}, files...)
	args = append(args, "-payment-timeout", "90s", "-event-wait", "1500ms", "-strict", "-nexo-key-version", "3", "-mqtt-url", "", "-poiid", "POI-7")
	out, report, err := runAgent(t, env, args...)
	require.NoError(t, err, report)
	require.Contains(t, out, `"payment_timeout": "1m30s"`)
	require.Contains(t, out, `"event_wait": "1.5s"`)
	require.NotContains(t, out+report, "s3cret-pw", "secrets are never printed")
	require.Contains(t, out, `"// password": "set, not printed (TERMAGENT_PASSWORD, or this key)"`)
	for _, want := range []string{
		"serial " + certs.DefaultSerial + ", model " + certs.DefaultModel,
		"private (mode 0600 or stricter), matches the certificate",
		"/oauth2-mtls/v1/merchants-credentials?serial_number=" + certs.DefaultSerial,
		"/oauth2-mtls/v1/token (password grant)",
		"https://api.demo.ppaas.tech:9021/qrcode-payment/v1/transactions",
		"mqtt      none: the agent polls",
		"configuration OK",
	} {
		require.Contains(t, report, want)
	}

	// The output, saved, is the same configuration.
	file := filepath.Join(t.TempDir(), "termagent.json")
	require.NoError(t, os.WriteFile(file, []byte(out), 0o600))
	again, report, err := runAgent(t, env, "config", "check", "-config", file)
	require.NoError(t, err, report)
	require.Equal(t, out, again)
	// Flags before the sub-command work too.
	again, _, err = runAgent(t, env, "-config", file, "config", "check")
	require.NoError(t, err)
	require.Equal(t, out, again)
}

func TestConfigCheckFindsFileProblems(t *testing.T) {
	dir, files := devConf(t)
	missing := t.TempDir()
	_, _, err := runAgent(t, nil, "config", "check", "-cert", filepath.Join(missing, "c.pem"), "-key", filepath.Join(missing, "c.key"), "-ca", filepath.Join(missing, "b.pem"), "-nexo-plain-http")
	require.Error(t, err)
	for _, want := range []string{"config cert (flag -cert, env TERMAGENT_CERT)", "config key (flag -key", "config ca (flag -ca, env TERMAGENT_CA): " + filepath.Join(missing, "b.pem") + ": file does not exist", "sim certs --out conf"} {
		require.ErrorContains(t, err, want)
	}
	require.NotContains(t, err.Error(), "nexo_cert", "plain HTTP needs no Nexo certificate")

	key := filepath.Join(dir, certs.ClientKeyFile)
	require.NoError(t, os.Chmod(key, 0o644))
	_, _, err = runAgent(t, nil, append([]string{"config", "check"}, files...)...)
	require.ErrorContains(t, err, "config key (flag -key, env TERMAGENT_KEY): "+key+": mode 0644 lets other users read the private key; want 0600")
	require.NotContains(t, err.Error(), "sim certs", "the hint is for missing files")
	require.NoError(t, os.Chmod(key, 0o600))
	nexoKey := filepath.Join(dir, certs.AgentKeyFile)
	require.NoError(t, os.Chmod(nexoKey, 0o640))
	_, _, err = runAgent(t, nil, append([]string{"config", "check"}, files...)...)
	require.ErrorContains(t, err, "config nexo_key (flag -nexo-key, env TERMAGENT_NEXO_KEY): "+nexoKey+": mode 0640")
	require.NoError(t, os.Chmod(nexoKey, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, certs.AgentCertFile), []byte("not a certificate"), 0o644))
	_, _, err = runAgent(t, nil, append([]string{"config", "check"}, files...)...)
	require.ErrorContains(t, err, "config nexo_cert (flag -nexo-cert")

	// A certificate that is not one.
	require.NoError(t, os.WriteFile(filepath.Join(dir, certs.ClientCertFile), []byte("not a certificate"), 0o644))
	_, _, err = runAgent(t, nil, append([]string{"config", "check"}, files...)...)
	require.ErrorContains(t, err, "config cert (flag -cert")
}

func TestUnknownKeysSuggestTheClosest(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"// note": "comments are fine", "paymnet_timeout": "5s"}`), 0o600))
	_, _, err := runAgent(t, nil, "config", "check", "-config", file)
	require.EqualError(t, err, "config file "+file+`: unknown key "paymnet_timeout" (did you mean "payment_timeout"?)`)

	_, _, err = runAgent(t, nil, "config", "check", "-paymnet-timeout", "5s")
	require.EqualError(t, err, "unknown flag -paymnet-timeout (did you mean -payment-timeout?)")
	_, _, err = runAgent(t, nil, "-confg", "x.json")
	require.EqualError(t, err, "unknown flag -confg (did you mean -config?)")

	require.NoError(t, os.WriteFile(file, []byte(`{"frobnicate": 1}`), 0o600))
	_, _, err = runAgent(t, nil, "config", "check", "-config", file)
	require.EqualError(t, err, "config file "+file+`: unknown key "frobnicate"`)
}

func TestAgentWithoutConfigNamesTheFlagsAndSimCerts(t *testing.T) {
	t.Chdir(t.TempDir())
	_, _, err := runAgent(t, nil)
	require.Error(t, err)
	for _, want := range []string{"conf/bundle.pem", "-ca", "sim certs --out conf"} {
		require.ErrorContains(t, err, want)
	}
}

func TestCorruptStoreHintIsARunnableCommand(t *testing.T) {
	dir, files := devConf(t)
	data := filepath.Join(dir, "data")
	require.NoError(t, os.MkdirAll(data, 0o700))
	// A file that is not a bbolt database at all.
	require.NoError(t, os.WriteFile(filepath.Join(data, "termagent.db"), bytes.Repeat([]byte{0xAB}, 3*4096), 0o600))
	args := append([]string{"-data-dir", data, "-nexo-listen", "127.0.0.1:0", "-admin-listen", "", "-mqtt-url", ""}, files...)
	_, _, err := runAgent(t, nil, args...)
	require.Error(t, err)
	m := regexp.MustCompile("`agent (queue [^`]+)`").FindStringSubmatch(err.Error())
	require.NotNil(t, m, err.Error())
	out, _, err := runAgent(t, nil, strings.Fields(m[1])...)
	require.NoError(t, err, "the hint %q must work as printed", m[1])
	require.Contains(t, out, "damaged store moved to")
}

func TestErrorLineNamesTheAgentOnce(t *testing.T) {
	_, _, err := runAgent(t, nil, "queue")
	require.Equal(t, "agent queue: missing command (status, list, retry, purge-dead)", errorLine(err))
	_, _, err = runAgent(t, nil, "frobnicate")
	require.True(t, strings.HasPrefix(errorLine(err), "agent: unknown command"), errorLine(err))
}
