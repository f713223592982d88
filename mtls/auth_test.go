package mtls_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/sim"
)

const serial = "220597303201181723869389"

func simConfig() sim.Config { return sim.Config{} }

// world is a simulated PPaaS on loopback with a device PKI.
type world struct {
	dir  string
	ppas *sim.PPaaS
}

func newWorld(t *testing.T, cfg sim.Config) *world {
	t.Helper()
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir, Serial: serial, Model: "DX8000"})
	require.NoError(t, err)
	cfg.CertsDir = dir
	cfg.Addr = "127.0.0.1:0"
	p, err := sim.New(cfg)
	require.NoError(t, err)
	require.NoError(t, p.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return &world{dir: dir, ppas: p}
}

func (w *world) deviceTLS(t *testing.T) *mtls.DeviceTLS {
	t.Helper()
	d, err := mtls.LoadDeviceTLS(testrig.DeviceFiles(w.dir), nil)
	require.NoError(t, err)
	return d
}

func (w *world) auth(t *testing.T, mod func(*mtls.AuthConfig)) (*mtls.Authenticator, *http.Client) {
	t.Helper()
	dev := w.deviceTLS(t)
	clock := mtls.NewClock(time.Time{}, nil)
	cfg := mtls.AuthConfig{
		BaseURL:    w.ppas.URL(),
		Serial:     serial,
		Client:     mtls.NewHTTPClient(dev, nil, clock, 10*time.Second),
		Clock:      clock,
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := mtls.NewAuthenticator(cfg)
	require.NoError(t, err)
	return a, mtls.NewHTTPClient(dev, a, clock, 10*time.Second)
}

func getCountries(ctx context.Context, c *http.Client, base string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/resources/v1/countries", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func TestAuthenticateHappyPath(t *testing.T) {
	w := newWorld(t, sim.Config{})
	a, api := w.auth(t, nil)
	start := time.Now()
	tok, err := a.Current(t.Context())
	require.NoError(t, err)
	t.Logf("time to first token: %s", time.Since(start))
	require.NotEmpty(t, tok.Access)
	require.InDelta(t, 300, tok.Lifetime.Seconds(), 2)
	status, err := getCountries(t.Context(), api, w.ppas.URL())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 1, w.ppas.Stats().TokensIssued)
}

func TestRefreshBeforeExpiryNeverSendsExpiredToken(t *testing.T) {
	w := newWorld(t, sim.Config{TokenTTL: 2 * time.Second})
	a, api := w.auth(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 4500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Run(ctx) })
	calls := 0
	for ctx.Err() == nil {
		status, err := getCountries(ctx, api, w.ppas.URL())
		if ctx.Err() != nil {
			break
		}
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)
		calls++
	}
	cancel()
	wg.Wait()
	st := w.ppas.Stats()
	t.Logf("%d calls, %d tokens issued", calls, st.TokensIssued)
	require.Zero(t, st.TokensRejected, "a request reached the platform with an expired token")
	require.GreaterOrEqual(t, st.TokensIssued, 3, "2 s tokens over 4.5 s must have been refreshed in the background")
}

func TestUnauthorizedReauthenticatesOnceAndRetries(t *testing.T) {
	w := newWorld(t, sim.Config{})
	_, api := w.auth(t, nil)
	status, err := getCountries(t.Context(), api, w.ppas.URL())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)

	w.ppas.ExpireTokens()
	status, err = getCountries(t.Context(), api, w.ppas.URL())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	st := w.ppas.Stats()
	require.Equal(t, 2, st.TokensIssued, "exactly one re-authentication")
	require.Equal(t, 1, st.TokensRejected, "exactly one refused request before the retry")
}

func TestSerialMismatchIsAClearError(t *testing.T) {
	w := newWorld(t, sim.Config{})
	a, _ := w.auth(t, func(c *mtls.AuthConfig) { c.Serial = "999999" })
	_, err := a.Token(t.Context())
	var ae *mtls.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusForbidden, ae.Status)
	require.Contains(t, err.Error(), "serial_number does not match the client certificate")
}

func TestUnknownCAIsATLSError(t *testing.T) {
	w := newWorld(t, sim.Config{})
	other := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: other})
	require.NoError(t, err)
	files := testrig.DeviceFiles(w.dir)
	files.CA = testrig.DeviceFiles(other).CA
	dev, err := mtls.LoadDeviceTLS(files, nil)
	require.NoError(t, err)
	a := testrig.Authenticate(t, dev, serial, w.ppas.URL())
	_, err = a.Token(t.Context())
	require.ErrorContains(t, err, "certificate signed by unknown authority")
}

func TestDeviceFromAnotherCAIsRefused(t *testing.T) {
	w := newWorld(t, sim.Config{})
	other := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: other, Serial: serial})
	require.NoError(t, err)
	files := testrig.DeviceFiles(other)
	files.CA = testrig.DeviceFiles(w.dir).CA
	dev, err := mtls.LoadDeviceTLS(files, nil)
	require.NoError(t, err)
	a := testrig.Authenticate(t, dev, serial, w.ppas.URL())
	_, err = a.Token(t.Context())
	require.Error(t, err, "a certificate from another CA must not authenticate")
}

func TestRevokedCredentialsFail(t *testing.T) {
	w := newWorld(t, sim.Config{})
	a, _ := w.auth(t, nil)
	_, err := a.Token(t.Context())
	require.NoError(t, err)
	resp, err := http.Post(w.ppas.ControlURL()+"/control/auth/revoke/"+serial, "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	w.ppas.ExpireTokens()

	a2, _ := w.auth(t, nil)
	_, err = a2.Token(t.Context())
	var ae *mtls.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusForbidden, ae.Status)
}

func TestPasswordGrant(t *testing.T) {
	w := newWorld(t, sim.Config{})
	a, api := w.auth(t, func(c *mtls.AuthConfig) {
		c.Grant = mtls.Grant{Password: true, Username: "merchant", Secret: "@Welcome123"}
	})
	_, err := a.Token(t.Context())
	require.NoError(t, err)
	status, err := getCountries(t.Context(), api, w.ppas.URL())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)

	bad, _ := w.auth(t, func(c *mtls.AuthConfig) {
		c.Grant = mtls.Grant{Password: true, Username: "merchant", Secret: "wrong"}
	})
	_, err = bad.Token(t.Context())
	var ae *mtls.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "invalid_grant", ae.Code)
}

func TestConcurrentCallersShareOneRefresh(t *testing.T) {
	w := newWorld(t, sim.Config{})
	a, _ := w.auth(t, nil)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			<-start
			_, err := a.Token(t.Context())
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, 1, w.ppas.Stats().TokensIssued)
}

// countingTransport fails every request, counting them.
type countingTransport struct{ n atomic.Int32 }

func (c *countingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	c.n.Add(1)
	return nil, errors.New("connection refused (simulated)")
}

func TestServerDownBacksOff(t *testing.T) {
	ct := &countingTransport{}
	a, err := mtls.NewAuthenticator(mtls.AuthConfig{
		BaseURL: "https://127.0.0.1:1", Serial: serial, Client: &http.Client{Transport: ct},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 80 * time.Millisecond,
	})
	require.NoError(t, err)
	_, err = a.Token(t.Context())
	require.ErrorContains(t, err, "connection refused")
	_, err = a.Token(t.Context())
	require.ErrorIs(t, err, mtls.ErrBackoff, "a second caller during backoff fails fast")
	require.EqualValues(t, 1, ct.n.Load())

	ctx, cancel := context.WithTimeout(t.Context(), 600*time.Millisecond)
	defer cancel()
	require.NoError(t, a.Run(ctx))
	n := ct.n.Load()
	// Backoff between 10 ms and 90 ms: over 600 ms that is at most ~60 attempts and at
	// least a handful; without backoff it would be thousands.
	require.Greater(t, n, int32(3))
	require.Less(t, n, int32(70))
	_, failures := a.Stats()
	require.Equal(t, int(n), failures)
}

func TestClockSkewDoesNotShortenTokens(t *testing.T) {
	skew := 2 * time.Hour
	w := newWorld(t, sim.Config{Now: func() time.Time { return time.Now().Add(skew) }})
	a, _ := w.auth(t, nil)
	tok, err := a.Current(t.Context())
	require.NoError(t, err)
	require.InDelta(t, 300, tok.Lifetime.Seconds(), 3, "lifetime measured on the server's clock")
}

// fakeTokens hands out token N on the Nth call.
type fakeTokens struct {
	mu          sync.Mutex
	n           int
	invalidated []string
}

func (f *fakeTokens) Token(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return "tok" + string(rune('0'+f.n)), nil
}

func (f *fakeTokens) Invalidate(t string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalidated = append(f.invalidated, t)
}

func TestTransportReplaysBodyOnce(t *testing.T) {
	var bodies []string
	var auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		auths = append(auths, r.Header.Get("Authorization"))
		if len(bodies) < 3 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	ft := &fakeTokens{}
	c := &http.Client{Transport: &mtls.Transport{Base: http.DefaultTransport, Tokens: ft}}
	resp, err := c.Post(srv.URL, "application/json", strings.NewReader(`{"amount":2000}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "retried once only")
	require.Equal(t, []string{`{"amount":2000}`, `{"amount":2000}`}, bodies, "body replayed on the retry")
	require.Equal(t, []string{"Bearer tok1", "Bearer tok2"}, auths)
	require.Equal(t, []string{"tok1"}, ft.invalidated)
}
