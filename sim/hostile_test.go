package sim

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/ppaas"
)

// The attacks of issue 11 on the simulator.

func startHostile(t *testing.T, cfg Config) *PPaaS {
	t.Helper()
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir, Serial: "1234567890", Model: "DX8000"})
	require.NoError(t, err)
	cfg.CertsDir, cfg.Addr = dir, "127.0.0.1:0"
	p, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, p.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

func TestControlAddrLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:9080": true, "localhost:9080": true, "[::1]:9080": true,
		"0.0.0.0:9080": false, ":9080": false, "[::]:9080": false, "192.168.1.10:9080": false, "example.com:9080": false,
	} {
		err := checkControlAddr(addr, false)
		require.Equal(t, ok, err == nil, "%s: %v", addr, err)
		require.NoError(t, checkControlAddr(addr, true), "-control-insecure allows %s", addr)
	}
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir})
	require.NoError(t, err)
	p, err := New(Config{CertsDir: dir, Addr: "127.0.0.1:0", ControlAddr: "0.0.0.0:0"})
	require.NoError(t, err)
	require.ErrorContains(t, p.Start(t.Context()), "-control-insecure")
}

func TestControlGuard(t *testing.T) {
	srv := httptest.NewServer(guardControl(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	tests := []struct {
		name, method, ctype string
		hdr                 map[string]string
		want                int
	}{
		{"script, JSON", http.MethodPost, "application/json", nil, http.StatusOK},
		{"script, JSON with charset", http.MethodPost, "application/json; charset=utf-8", nil, http.StatusOK},
		{"no content type", http.MethodPost, "", nil, http.StatusUnsupportedMediaType},
		{"text/plain (a form a web page can send)", http.MethodPost, "text/plain", nil, http.StatusUnsupportedMediaType},
		{"cross-site page", http.MethodPost, "application/json", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"cross-site page, text/plain", http.MethodPost, "text/plain", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, http.StatusForbidden},
		{"other origin (old browser)", http.MethodPost, "application/json", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"cross-site DELETE", http.MethodDelete, "", map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"the terminal page itself", http.MethodPost, "application/json", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://" + host}, http.StatusOK},
		{"old browser, same origin", http.MethodPost, "application/json", map[string]string{"Origin": "http://" + host}, http.StatusOK},
		{"cross-site read", http.MethodGet, "", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+"/control/payments/mode", strings.NewReader(`{}`))
			require.NoError(t, err)
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, tc.want, resp.StatusCode)
		})
	}
}

func TestControlAPIGuarded(t *testing.T) {
	p := startHostile(t, Config{})
	resp, err := http.Post(p.ControlURL()+"/control/payments/mode", "text/plain", strings.NewReader(`{"mode":"approve"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	resp, err = http.Post(p.ControlURL()+"/control/payments/mode", "application/json", strings.NewReader(`{"mode":"approve"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestTokenErrorSameForOtherDevicesClient(t *testing.T) {
	p := startHostile(t, Config{})
	m, err := p.merchantFor(Device{Serial: "OTHER", Model: "DX8000"})
	require.NoError(t, err)
	post := func(secret string) (int, string) {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {m.ClientID}, "client_secret": {secret}}
		req := httptest.NewRequestWithContext(context.WithValue(t.Context(), deviceKey{}, Device{Serial: "1234567890"}), http.MethodPost, "/oauth2-mtls/v1/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		p.handleToken(w, req)
		return w.Code, w.Body.String()
	}
	goodCode, goodBody := post(m.ClientSecret) // right pair, another device's
	badCode, badBody := post("wrong")
	require.Equal(t, http.StatusUnauthorized, goodCode)
	require.Equal(t, badCode, goodCode)
	require.Equal(t, badBody, goodBody, "the answer does not tell a right secret from a wrong one")
}

func TestBrokerDropsSessionsOfInvalidTokens(t *testing.T) {
	for _, how := range []string{"expire-tokens", "revoke", "time"} {
		t.Run(how, func(t *testing.T) {
			clk := &settable{t: time.Now()}
			p := startHostile(t, Config{Now: clk.now, TokenTTL: time.Hour})
			const serial = "1234567890"
			m, err := p.merchantFor(Device{Serial: serial, Model: "DX8000"})
			require.NoError(t, err)
			tok, _, err := p.issuer.issue(Device{Serial: serial, Model: "DX8000", ClientID: m.ClientID}, "", "openid")
			require.NoError(t, err)
			lost := make(chan error, 1)
			opts := paho.NewClientOptions().AddBroker(p.MQTTURL()).SetClientID(serial).SetUsername(serial).SetPassword(tok).
				SetTLSConfig(&tls.Config{RootCAs: p.tls.ClientCAs, MinVersion: tls.VersionTLS12}).
				SetAutoReconnect(false).SetConnectRetry(false).
				SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
			c := paho.NewClient(opts)
			ct := c.Connect()
			require.True(t, ct.WaitTimeout(10*time.Second))
			require.NoError(t, ct.Error())
			defer c.Disconnect(0)
			st := c.Subscribe(ppaas.EventTopic(serial), 1, nil)
			require.True(t, st.WaitTimeout(10*time.Second))
			require.NoError(t, st.Error())

			switch how {
			case "expire-tokens":
				resp, err := http.Post(p.ControlURL()+"/control/auth/expire-tokens", "application/json", nil)
				require.NoError(t, err)
				resp.Body.Close()
			case "revoke":
				resp, err := http.Post(p.ControlURL()+"/control/auth/revoke/"+serial, "application/json", nil)
				require.NoError(t, err)
				resp.Body.Close()
			case "time":
				clk.add(2 * time.Hour) // the sweeper notices within 5 s
			}
			select {
			case <-lost:
			case <-time.After(15 * time.Second):
				t.Fatal("the session outlived its token")
			}
		})
	}
}

type settable struct {
	mu sync.Mutex
	t  time.Time
}

func (s *settable) now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t
}

func (s *settable) add(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t = s.t.Add(d)
}

func TestSimulatorTLSRefusesCBC(t *testing.T) {
	p := startHostile(t, Config{})
	api := strings.TrimPrefix(p.URL(), "https://")
	mqttAddr := strings.TrimPrefix(p.MQTTURL(), "ssl://")
	for _, addr := range []string{api, mqttAddr} {
		aead := 0
		for name, suite := range map[string]uint16{
			"ECDHE-RSA-AES128-SHA":   tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			"ECDHE-ECDSA-AES128-SHA": tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
			"AES256-SHA":             tls.TLS_RSA_WITH_AES_256_CBC_SHA,
			"ECDHE-RSA-AES128-GCM":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			"ECDHE-ECDSA-AES128-GCM": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		} {
			cfg := &tls.Config{RootCAs: p.tls.ClientCAs, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}, ServerName: "127.0.0.1"}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
			if strings.Contains(name, "GCM") {
				if err == nil { // the one matching the certificate's key type
					conn.Close()
					aead++
				}
				continue
			}
			require.Error(t, err, "%s %s accepted", addr, name)
		}
		require.Equal(t, 1, aead, "%s: TLS 1.2 with AES-GCM", addr)
		c := &tls.Config{RootCAs: p.tls.ClientCAs, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
		_, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
		require.Error(t, err, "%s accepted TLS 1.1", addr)
		ok := &tls.Config{RootCAs: p.tls.ClientCAs, MinVersion: tls.VersionTLS12}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, ok)
		require.NoError(t, err, addr)
		conn.Close()
	}
}
