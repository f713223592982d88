package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
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

// startSim starts a simulated PPaaS whose PKI is in dir/conf, the layout of the
// document's curl commands (conf/client.key, conf/client.pem, conf/bundle.pem).
func startSim(t *testing.T, cfg sim.Config) (*sim.PPaaS, string) {
	t.Helper()
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: filepath.Join(dir, "conf"), Serial: seedSerial, Model: "DX8000"})
	require.NoError(t, err)
	cfg.CertsDir, cfg.Addr = filepath.Join(dir, "conf"), "127.0.0.1:0"
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

// documentHosts are the host:port pairs of the document's curl commands.
var documentHosts = []string{"auth.demo.ppaas.tech:443", "auth.device.demo.ppaas.tech:9021", "api.demo.ppaas.tech:443"}

// curlEnv is the environment curl runs in against the simulator: a .curlrc (in a
// fresh CURL_HOME) that connects the document's hosts to the simulator's
// loopback port, as --resolve does, plus extra config lines; the dev CA as the
// trust store (for commands without --cacert); and vars for the shell.
func curlEnv(t *testing.T, p *sim.PPaaS, dir string, extra []string, vars map[string]string) []string {
	t.Helper()
	u, err := url.Parse(p.URL())
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(u.Host)
	rc := []string{"silent", "show-error", "max-time = 10"}
	for _, hp := range documentHosts {
		rc = append(rc, fmt.Sprintf("connect-to = %q", hp+":127.0.0.1:"+port))
	}
	home := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(home, ".curlrc"), []byte(strings.Join(append(rc, extra...), "\n")+"\n"), 0o600))
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "CURL_HOME=" + home,
		"CURL_CA_BUNDLE=" + filepath.Join(dir, "conf", certs.BundleFile)}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// curl runs curl with args in dir against the simulator (see curlEnv).
func curl(t *testing.T, p *sim.PPaaS, dir string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", append([]string{"--key", "conf/client.key", "--cert", "conf/client.pem", "--cacert", "conf/bundle.pem"}, args...)...)
	cmd.Dir, cmd.Env = dir, curlEnv(t, p, dir, nil, nil)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "curl: %s", out)
	return out
}

// document runs one of the document's curl commands (testdata/ppaas-document)
// with sh, unchanged but for the placeholders the document leaves to the reader.
func document(t *testing.T, p *sim.PPaaS, dir, name string, extra []string, vars, placeholders map[string]string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "ppaas-document", name))
	require.NoError(t, err)
	script := string(b)
	for k, v := range placeholders {
		require.Contains(t, script, k)
		script = strings.ReplaceAll(script, k, v)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Dir, cmd.Env = dir, curlEnv(t, p, dir, extra, vars)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s: %s", name, out)
	return out
}

type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int    `json:"expires_in"`
	RefreshExpiresIn *int   `json:"refresh_expires_in"`
	RefreshToken     string `json:"refresh_token"`
	IDToken          string `json:"id_token"`
	Scope            string `json:"scope"`
	SessionState     string `json:"session_state"`
	NotBeforePolicy  *int   `json:"not-before-policy"`
}

// The document's curl commands, run as written against the simulator on loopback.
func TestDocumentCurlCommands(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	p, dir := startSim(t, sim.Config{})

	// Machine-to-machine mode: merchant credentials on auth.demo.ppaas.tech (no
	// port), then the token on auth.device.demo.ppaas.tech:9021.
	out := document(t, p, dir, "1-merchants-credentials.sh", nil, nil, nil)
	var creds []struct{ MerchantName, UserDomain, ClientID, ClientSecret string }
	require.NoError(t, json.Unmarshal(out, &creds), "%s", out)
	require.Len(t, creds, 1)
	require.NotEmpty(t, creds[0].ClientID)
	require.NotEmpty(t, creds[0].ClientSecret)
	require.Equal(t, "ppaasfr", creds[0].UserDomain)

	out = document(t, p, dir, "2-client-credentials.sh", nil,
		map[string]string{"client_id": creds[0].ClientID, "client_secret": creds[0].ClientSecret}, nil)
	var tok tokenResponse
	require.NoError(t, json.Unmarshal(out, &tok), "%s", out)
	require.Equal(t, "Bearer", tok.TokenType)
	require.Equal(t, 300, tok.ExpiresIn)
	require.NotNil(t, tok.RefreshExpiresIn)
	require.Zero(t, *tok.RefreshExpiresIn)
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

	// End user identification: the password grant, answered with the document's
	// refresh_token and refresh_expires_in 900.
	out = document(t, p, dir, "3-password.sh", []string{`url = "https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/token"`},
		map[string]string{"username": "merchant", "password": "@Welcome123"}, nil)
	var pw tokenResponse
	require.NoError(t, json.Unmarshal(out, &pw), "%s", out)
	require.Equal(t, 300, pw.ExpiresIn)
	require.Equal(t, 900, *pw.RefreshExpiresIn)
	require.NotEmpty(t, pw.RefreshToken)
	require.NotEmpty(t, pw.SessionState)
	require.Equal(t, 1609968533, *pw.NotBeforePolicy)

	// Demo only: the merchant token of realm sandbox-ma (the document gets it with
	// Postman: username merchant, password @Welcome123, client ppaas-portal), then
	// the custom-token command, then the transaction command with its token, no
	// client certificate in either.
	out = curl(t, p, dir, "--data-urlencode", "grant_type=password", "--data-urlencode", "client_id=ppaas-portal",
		"--data-urlencode", "username=merchant", "--data-urlencode", "password=@Welcome123",
		"https://auth.demo.ppaas.tech/auth/realms/sandbox-ma/protocol/openid-connect/token")
	var merchant tokenResponse
	require.NoError(t, json.Unmarshal(out, &merchant), "%s", out)
	require.NotEmpty(t, merchant.AccessToken)

	out = document(t, p, dir, "4-custom-token.sh", nil, nil, map[string]string{"TokenRetreivedFromPreviousCall": merchant.AccessToken})
	var custom tokenResponse
	require.NoError(t, json.Unmarshal(out, &custom), "%s", out)
	require.Equal(t, "Bearer", custom.TokenType)
	require.Equal(t, 300, custom.ExpiresIn)
	require.Equal(t, 900, *custom.RefreshExpiresIn)
	require.NotEmpty(t, custom.RefreshToken)
	require.NotEmpty(t, custom.IDToken)
	require.Equal(t, "profile email", custom.Scope)
	d, err = p.VerifyToken(custom.AccessToken)
	require.NoError(t, err)
	require.Equal(t, sim.Device{Serial: "2097CD800007", Model: "DX8000"}, d)

	out = document(t, p, dir, "5-transaction.sh", nil, nil, map[string]string{"JWTCustomTokenRetreivedFromPreviousCall": custom.AccessToken})
	var tx struct {
		TransactionID       string `json:"transactionId"`
		ClientTransactionID string `json:"clientTransactionId"`
		Status              string `json:"status"`
	}
	require.NoError(t, json.Unmarshal(out, &tx), "%s", out)
	require.NotEmpty(t, tx.TransactionID, "%s", out)
	require.Equal(t, "9236613c-ef7e-4a98-bfb6-16048c0e4f9b", tx.ClientTransactionID)
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
	out, _ := exec.CommandContext(ctx, "curl", "-s", "-w", "%{http_code}", "--cacert", filepath.Join(dir, "conf", "bundle.pem"),
		"https://"+u.Host+"/oauth2-mtls/v1/merchants-credentials?serial_number="+seedSerial).CombinedOutput()
	require.Contains(t, string(out), "mutual TLS required")
	require.True(t, strings.HasSuffix(string(out), "401"), string(out))
}

// The renew-secret knob (the portal's RENEW): the old secret is refused at once,
// a token issued before keeps working until it expires, the new secret is
// handed out by the credentials endpoint.
func TestRenewSecretKnob(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	p, dir := startSim(t, sim.Config{})
	credsURL := "https://auth.demo.ppaas.tech/oauth2-mtls/v1/merchants-credentials?serial_number=" + seedSerial
	var creds []struct{ ClientID, ClientSecret string }
	require.NoError(t, json.Unmarshal(curl(t, p, dir, credsURL), &creds))
	grant := func(secret string) string {
		return string(curl(t, p, dir, "-w", "%{http_code}", "--data-urlencode", "client_id="+creds[0].ClientID,
			"--data-urlencode", "client_secret="+secret, "--data-urlencode", "grant_type=client_credentials",
			"https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/token"))
	}
	var tok tokenResponse
	out := grant(creds[0].ClientSecret)
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSuffix(out, "200")), &tok), out)

	resp, err := http.Post(p.ControlURL()+"/control/auth/renew-secret/"+seedSerial, "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	require.Contains(t, grant(creds[0].ClientSecret), `"error":"invalid_client"`, "the old secret is obsolete")
	_, err = p.VerifyToken(tok.AccessToken)
	require.NoError(t, err, "tokens already issued remain valid until they expire")

	var renewed []struct{ ClientID, ClientSecret string }
	require.NoError(t, json.Unmarshal(curl(t, p, dir, credsURL), &renewed))
	require.Equal(t, creds[0].ClientID, renewed[0].ClientID)
	require.NotEqual(t, creds[0].ClientSecret, renewed[0].ClientSecret)
	require.True(t, strings.HasSuffix(grant(renewed[0].ClientSecret), "200"))
	require.Equal(t, 1, p.AuthStats().SecretRenewals)

	resp, err = http.Post(p.ControlURL()+"/control/auth/renew-secret/1", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}
