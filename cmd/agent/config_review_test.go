package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/certs"
)

// The README's demo command (grant demo-custom-token, no device certificate)
// passes config check in an empty directory: the device's cert and key are
// not asked for, the CA is optional ("" is the system roots), and the
// endpoints it will call are printed. Before, it failed on conf/client.pem.
func TestConfigCheckDemoCustomTokenNeedsNoDeviceCertificate(t *testing.T) {
	t.Chdir(t.TempDir())
	env := map[string]string{"TERMAGENT_PASSWORD": "@Welcome123"}
	_, report, err := runAgent(t, env, "config", "check", "-env", "demo", "-grant", "demo-custom-token",
		"-username", "merchant", "-serial", "2097CD800007", "-model", "DX8000", "-ca", "", "-nexo-plain-http")
	require.NoError(t, err, report)
	require.NotContains(t, report, "client.pem")
	require.Contains(t, report, "https://api.demo.ppaas.tech")
}

// A POIID over Nexo's 35 characters, configured or made of model and serial,
// is refused by config check and by the agent's start, naming poiid: every
// POS request would be refused with it.
func TestPOIIDOverNexosBoundIsRefused(t *testing.T) {
	_, files := devConf(t)
	long := strings.Repeat("P", 36)
	_, report, err := runAgent(t, nil, append(append([]string{"config", "check"}, files...), "-poiid", long)...)
	require.ErrorContains(t, err, "config poiid (flag -poiid, env TERMAGENT_POIID): \""+long+"\" is 36 characters; Nexo allows at most 35", report)

	_, report, err = runAgent(t, nil, append(append([]string{"config", "check"}, files...), "-serial", strings.Repeat("9", 30))...)
	require.ErrorContains(t, err, "({MODEL}-{SERIAL}) is 37 characters; Nexo allows at most 35: set a shorter poiid", report)

	_, report, err = runAgent(t, nil, append(append([]string{"config", "check"}, files...), "-poiid", strings.Repeat("P", 35))...)
	require.NoError(t, err, report)
}

// A CA bundle holding no CA certificate (the device's own certificate given
// by mistake) is refused under ca, not cert, and check no longer claims the
// bundle "verifies PPaaS". A Nexo certificate naming no host is refused.
func TestConfigCheckNamesTheCAAndNexoCertificateProblems(t *testing.T) {
	dir, files := devConf(t)
	device := filepath.Join(dir, certs.ClientCertFile)
	args := append(append([]string{"config", "check"}, files...), "-ca", device)
	_, report, err := runAgent(t, nil, args...)
	require.ErrorContains(t, err, "config ca (flag -ca, env TERMAGENT_CA): "+device+": none of its 1 certificates is a CA or self-signed", report)
	require.NotContains(t, err.Error(), "config cert ")

	_, report, err = runAgent(t, nil, append([]string{"config", "check"}, files...)...)
	require.NoError(t, err, report)
	require.Contains(t, report, "CA certificates valid now")
	require.NotContains(t, report, "verifies PPaaS")

	// The device certificate has no subject alternative name: as the Nexo
	// server's certificate, a POS checking the host name would refuse it.
	_, report, err = runAgent(t, nil, append(append([]string{"config", "check"}, files...),
		"-nexo-cert", device, "-nexo-key", filepath.Join(dir, certs.ClientKeyFile))...)
	require.ErrorContains(t, err, "config nexo_cert (flag -nexo-cert, env TERMAGENT_NEXO_CERT): "+device+" names no host", report)
}

// poll_first above poll_max blames the one the user changed.
func TestPollBoundsBlameTheChangedField(t *testing.T) {
	_, files := devConf(t)
	_, _, err := runAgent(t, nil, append(append([]string{"config", "check"}, files...), "-poll-max", "1ms")...)
	require.ErrorContains(t, err, "config poll_max (flag -poll-max, env TERMAGENT_POLL_MAX): must be at least poll_first (1s), got 1ms")
	_, _, err = runAgent(t, nil, append(append([]string{"config", "check"}, files...), "-poll-first", "1m")...)
	require.ErrorContains(t, err, "config poll_first (flag -poll-first, env TERMAGENT_POLL_FIRST): must be at most poll_max (5s), got 1m0s")
}

// A misspelled TERMAGENT_ variable (a secret in an env file, say) is named,
// with the setting it may be a typo of; the real ones are not.
func TestUnknownEnvironmentVariablesAreNamed(t *testing.T) {
	got := agent.UnknownEnv([]string{"TERMAGENT_NEXO_PASSPHRSE=x", "TERMAGENT_PAYMENT_TIMEOUT=90s", "TERMAGENT_CONFIG=/etc/t.json",
		"PATH=/bin", "TERMAGENT_PASSWORD=p", "TERMAGENT_ZZZ=1"})
	require.Equal(t, []string{
		"environment variable TERMAGENT_NEXO_PASSPHRSE is not a setting and is ignored (did you mean TERMAGENT_NEXO_PASSPHRASE?)",
		"environment variable TERMAGENT_ZZZ is not a setting and is ignored",
	}, got)
}

// A self-signed certificate pinned as the bundle (Go verifies with it as a
// root, CA flag or not) passes.
func TestConfigCheckAcceptsAPinnedSelfSignedCertificate(t *testing.T) {
	_, files := devConf(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "ppaas.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"ppaas.example"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	pinned := filepath.Join(t.TempDir(), "pinned.pem")
	require.NoError(t, os.WriteFile(pinned, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	_, report, err := runAgent(t, nil, append(append([]string{"config", "check"}, files...), "-ca", pinned)...)
	// The device certificate does not chain to it: the check of the device's
	// TLS identity may say so, never that the bundle holds no trust anchor.
	if err != nil {
		require.NotContains(t, err.Error(), "is a CA or self-signed", report)
	}
}
