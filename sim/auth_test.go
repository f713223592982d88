package sim_test

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/sim"
)

const seedSerial = "220597303201181723869389"

func startSim(t *testing.T, cfg sim.Config) (*sim.PPaaS, string) {
	t.Helper()
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir, Serial: seedSerial, Model: "DX8000"})
	require.NoError(t, err)
	cfg.CertsDir, cfg.Addr = dir, "127.0.0.1:0"
	p, err := sim.New(cfg)
	require.NoError(t, err)
	require.NoError(t, p.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p, dir
}

// curl runs the seed's curl command lines with conf/ pointing at the generated files
// and the demo host resolved to the simulator.
func curl(t *testing.T, p *sim.PPaaS, dir string, args ...string) []byte {
	t.Helper()
	u, err := url.Parse(p.URL())
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(u.Host)
	full := append([]string{"--silent", "--show-error", "--max-time", "10",
		"--resolve", "auth.device.demo.ppaas.tech:" + port + ":127.0.0.1",
		"--key", filepath.Join(dir, "client.key"), "--cert", filepath.Join(dir, "client.pem"), "--cacert", filepath.Join(dir, "bundle.pem")}, args...)
	for i, a := range full {
		full[i] = strings.ReplaceAll(a, "auth.device.demo.ppaas.tech:9021", "auth.device.demo.ppaas.tech:"+port)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", full...).CombinedOutput()
	require.NoError(t, err, "curl: %s", out)
	return out
}

func TestSeedCurlCommands(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	p, dir := startSim(t, sim.Config{})

	// Machine-to-machine mode, step 1 (the seed's host has no port; the device host on
	// 9021 is where the simulator listens).
	out := curl(t, p, dir, "-X", "GET", "--header", "Content-Type: application/json",
		"https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/merchants-credentials?serial_number="+seedSerial)
	var creds []struct{ MerchantName, UserDomain, ClientID, ClientSecret string }
	require.NoError(t, json.Unmarshal(out, &creds), "%s", out)
	require.Len(t, creds, 1)
	require.NotEmpty(t, creds[0].ClientID)
	require.NotEmpty(t, creds[0].ClientSecret)

	// Step 2: client credentials.
	out = curl(t, p, dir, "-X", "POST",
		"--header", "Content-Type: application/x-www-form-urlencoded",
		"--data-urlencode", "client_id="+creds[0].ClientID,
		"--data-urlencode", "client_secret="+creds[0].ClientSecret,
		"--data-urlencode", "grant_type=client_credentials",
		"https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/token")
	var tok struct {
		AccessToken      string `json:"access_token"`
		TokenType        string `json:"token_type"`
		ExpiresIn        int    `json:"expires_in"`
		RefreshExpiresIn *int   `json:"refresh_expires_in"`
		IDToken          string `json:"id_token"`
		Scope            string `json:"scope"`
	}
	require.NoError(t, json.Unmarshal(out, &tok), "%s", out)
	require.Equal(t, "Bearer", tok.TokenType)
	require.Equal(t, 300, tok.ExpiresIn)
	require.NotNil(t, tok.RefreshExpiresIn)
	require.NotEmpty(t, tok.IDToken)
	require.Equal(t, "openid email profile", tok.Scope)

	// The token is an RS256 JWT verifiable with the JWKS, carrying the serial.
	claims := jwt.MapClaims{}
	_, _, err := jwt.NewParser().ParseUnverified(tok.AccessToken, claims)
	require.NoError(t, err)
	require.Equal(t, seedSerial, claims["serial_number"])
	d, err := p.VerifyToken(tok.AccessToken)
	require.NoError(t, err)
	require.Equal(t, seedSerial, d.Serial)

	// End user identification: password grant with ppaas-powered-app.
	out = curl(t, p, dir, "--tlsv1.2", "--tls-max", "1.3", "-X", "POST",
		"--header", "Content-Type: application/x-www-form-urlencoded",
		"--data-urlencode", "username=merchant",
		"--data-urlencode", "password=@Welcome123",
		"--data-urlencode", "grant_type=password",
		"--data-urlencode", "client_id=ppaas-powered-app",
		"--data-urlencode", "scope=openid profile email",
		"https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/token")
	require.Contains(t, string(out), `"access_token"`)

	// The token on the resources API of the seed.
	out = curl(t, p, dir, "--header", "Authorization: Bearer "+tok.AccessToken,
		"https://auth.device.demo.ppaas.tech:9021/resources/v1/countries")
	require.Contains(t, string(out), `"code":"BG"`)
}

func TestAuthRefusals(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	p, dir := startSim(t, sim.Config{})
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"other serial", []string{"-w", "%{http_code}", "https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/merchants-credentials?serial_number=1"}, `"error":"access_denied"`},
		{"wrong secret", []string{"-w", "%{http_code}", "--data-urlencode", "client_id=device-" + seedSerial, "--data-urlencode", "client_secret=nope", "--data-urlencode", "grant_type=client_credentials", "https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/token"}, `"error":"invalid_client"`},
		{"no grant", []string{"-w", "%{http_code}", "--data-urlencode", "x=1", "https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/token"}, `"error":"invalid_request"`},
		{"no token", []string{"-w", "%{http_code}", "https://auth.device.demo.ppaas.tech:9021/resources/v1/countries"}, `"error":"invalid_token"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := string(curl(t, p, dir, tc.args...))
			require.Contains(t, out, tc.want)
		})
	}
	out := string(curl(t, p, dir, "-w", "%{http_code}", "https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/merchants-credentials?serial_number=1"))
	require.True(t, strings.HasSuffix(out, "403"), out)
}

func TestTLSRequiresDeviceCertificate(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	p, dir := startSim(t, sim.Config{})
	u, _ := url.Parse(p.URL())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "curl", "-s", "-w", "%{http_code}", "--cacert", filepath.Join(dir, "bundle.pem"),
		"https://"+u.Host+"/oauth2-mtls/v1/merchants-credentials?serial_number="+seedSerial).CombinedOutput()
	require.Contains(t, string(out), "mutual TLS required")
	require.True(t, strings.HasSuffix(string(out), "401"), string(out))
}
