package mtls_test

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/sim"
)

// The password grant's response carries a refresh token (the document:
// refresh_token, refresh_expires_in 900): the agent renews with it instead of
// replaying the password, until refresh_expires_in passes.
func TestPasswordGrantUsesRefreshTokenUntilItExpires(t *testing.T) {
	w := newWorld(t, sim.Config{})
	var jump atomic.Int64 // the agent's local clock runs ahead by this
	clock := mtls.NewClock(time.Time{}, func() time.Time { return time.Now().Add(time.Duration(jump.Load())) })
	a, api := w.auth(t, func(c *mtls.AuthConfig) {
		c.Grant = mtls.Grant{Password: true, Username: "merchant", Secret: "@Welcome123"}
		c.Clock = clock
	})
	tok, err := a.Token(t.Context())
	require.NoError(t, err)
	require.Equal(t, sim.AuthStats{PasswordGrants: 1}, w.ppas.AuthStats())

	// A renewal (here forced by a 401's invalidation) uses the refresh token.
	a.Invalidate(tok)
	tok2, err := a.Token(t.Context())
	require.NoError(t, err)
	require.NotEqual(t, tok, tok2)
	require.Equal(t, sim.AuthStats{PasswordGrants: 1, RefreshGrants: 1}, w.ppas.AuthStats())
	status, err := getCountries(t.Context(), api, w.ppas.URL())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)

	// Past refresh_expires_in (900 s for 300 s tokens) the password grant again.
	jump.Store(int64(901 * time.Second))
	a.Invalidate(tok2)
	_, err = a.Token(t.Context())
	require.NoError(t, err)
	require.Equal(t, sim.AuthStats{PasswordGrants: 2, RefreshGrants: 1}, w.ppas.AuthStats())
}

// A refresh token the platform refuses (its session ended) falls back to the
// password grant once, rather than failing.
func TestRefusedRefreshTokenFallsBackToPassword(t *testing.T) {
	w := newWorld(t, sim.Config{})
	a, _ := w.auth(t, func(c *mtls.AuthConfig) {
		c.Grant = mtls.Grant{Password: true, Username: "merchant", Secret: "@Welcome123"}
	})
	tok, err := a.Token(t.Context())
	require.NoError(t, err)
	w.ppas.ExpireTokens() // every token, refresh tokens included, is void
	a.Invalidate(tok)
	_, err = a.Token(t.Context())
	require.NoError(t, err)
	require.Equal(t, 2, w.ppas.AuthStats().PasswordGrants)
	require.Zero(t, w.ppas.AuthStats().RefreshGrants)
}

// The document's demo custom token: a merchant token from realm sandbox-ma,
// then custom-token with device_model, device_id and method; the device token
// then works on the API with no client certificate.
func TestCustomTokenWithoutDeviceCertificate(t *testing.T) {
	w := newWorld(t, sim.Config{})
	pool, err := mtls.LoadCAPool(filepath.Join(w.dir, certs.BundleFile))
	require.NoError(t, err)
	var jump atomic.Int64 // the agent's local clock runs ahead by this
	clock := mtls.NewClock(time.Time{}, func() time.Time { return time.Now().Add(time.Duration(jump.Load())) })
	noCert := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	a, err := mtls.NewAuthenticator(mtls.AuthConfig{
		Client: mtls.NewHTTPClientTLS(noCert, nil, clock, 10*time.Second),
		Clock:  clock,
		Grant: mtls.Grant{Username: "merchant", Secret: "@Welcome123", CustomToken: &mtls.CustomToken{
			MerchantTokenURL: w.ppas.URL() + "/auth/realms/sandbox-ma/protocol/openid-connect/token",
			ClientID:         "ppaas-portal",
			URL:              w.ppas.URL() + "/auth/realms/sandbox-ma/custom-token",
			DeviceModel:      "DX8000",
			DeviceID:         mtls.DeviceID("DX8000", "2097CD800007"),
			Method:           "[api, device_flow]",
		}},
	})
	require.NoError(t, err)
	tok, err := a.Current(t.Context())
	require.NoError(t, err)
	require.InDelta(t, 300, tok.Lifetime.Seconds(), 2, "the document's expires_in")
	d, err := w.ppas.VerifyToken(tok.Access)
	require.NoError(t, err)
	require.Equal(t, sim.Device{Serial: "2097CD800007", Model: "DX8000"}, d)

	api := mtls.NewHTTPClientTLS(noCert, a, clock, 10*time.Second)
	status, err := getCountries(t.Context(), api, w.ppas.URL())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)

	// A second device token reuses the merchant's token: one login.
	a.Invalidate(tok.Access)
	_, err = a.Token(t.Context())
	require.NoError(t, err)
	require.Equal(t, sim.AuthStats{MerchantLogins: 1, CustomTokens: 2}, w.ppas.AuthStats())

	// Past the merchant token's life (300 s) but within its refresh token's
	// (900 s), the merchant session is renewed with the refresh token.
	jump.Store(int64(400 * time.Second))
	tok2, err := a.Token(t.Context())
	require.NoError(t, err)
	a.Invalidate(tok2)
	_, err = a.Token(t.Context())
	require.NoError(t, err)
	st := w.ppas.AuthStats()
	require.Equal(t, 1, st.MerchantLogins)
	require.Equal(t, 1, st.RefreshGrants)

	// A wrong merchant password is the realm's invalid_grant.
	bad, err := mtls.NewAuthenticator(mtls.AuthConfig{
		Client: mtls.NewHTTPClientTLS(noCert, nil, clock, 10*time.Second),
		Grant: mtls.Grant{Username: "merchant", Secret: "nope", CustomToken: &mtls.CustomToken{
			MerchantTokenURL: w.ppas.URL() + "/auth/realms/sandbox-ma/protocol/openid-connect/token",
			ClientID:         "ppaas-portal", URL: w.ppas.URL() + "/auth/realms/sandbox-ma/custom-token",
			DeviceModel: "DX8000", DeviceID: "ingenico-DX8000-1", Method: "[api, device_flow]",
		}},
	})
	require.NoError(t, err)
	_, err = bad.Token(t.Context())
	var ae *mtls.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "invalid_grant", ae.Code)
}

// credentialsServer answers the merchant credentials list given and a token for
// any client_credentials grant, recording the client id used.
func credentialsServer(t *testing.T, list string, usedClient *atomic.Value) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case mtls.CredentialsPath:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(list))
		case mtls.TokenPath:
			_ = r.ParseForm()
			usedClient.Store(r.PostForm.Get("client_id"))
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "opaque", "token_type": "Bearer", "expires_in": 300})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Several merchant credentials for one serial: the entry is chosen by
// user_domain; without it (or with one matching none) authentication fails with
// an error naming the entries, instead of silently taking the first.
func TestMerchantCredentialsChosenByUserDomain(t *testing.T) {
	const list = `[{"merchantName":"Shop A","userDomain":"ppaasfr","clientId":"A","clientSecret":"a"},
		{"merchantName":"Shop B","userDomain":"shopb","clientId":"B","clientSecret":"b"}]`
	var used atomic.Value
	srv := credentialsServer(t, list, &used)
	auth := func(domain string) error {
		a, err := mtls.NewAuthenticator(mtls.AuthConfig{BaseURL: srv.URL, Serial: serial, Client: srv.Client(), Grant: mtls.Grant{UserDomain: domain}})
		require.NoError(t, err)
		_, err = a.Token(t.Context())
		return err
	}

	require.NoError(t, auth("shopb"))
	require.Equal(t, "B", used.Load())
	require.NoError(t, auth("PPAASFR"), "user domains compare case-insensitively")
	require.Equal(t, "A", used.Load())

	for _, domain := range []string{"", "other"} {
		err := auth(domain)
		var ce *mtls.CredentialsChoiceError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, []string{`"ppaasfr" (Shop A)`, `"shopb" (Shop B)`}, ce.Entries)
		require.ErrorContains(t, err, "user_domain")
	}

	// One entry needs no user domain.
	single := credentialsServer(t, `[{"merchantName":"Shop A","userDomain":"ppaasfr","clientId":"A","clientSecret":"a"}]`, &used)
	a, err := mtls.NewAuthenticator(mtls.AuthConfig{BaseURL: single.URL, Serial: serial, Client: single.Client()})
	require.NoError(t, err)
	_, err = a.Token(t.Context())
	require.NoError(t, err)
}

// The document's two auth hosts: credentials and token are fetched from the
// URLs configured for each, not from one base URL.
func TestCredentialsAndTokenURLsAreSeparate(t *testing.T) {
	var used atomic.Value
	creds := credentialsServer(t, `[{"merchantName":"m","userDomain":"d","clientId":"A","clientSecret":"a"}]`, &used)
	var tokenCalls atomic.Int32
	token := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/other/token", r.URL.Path)
		tokenCalls.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "opaque", "token_type": "Bearer", "expires_in": 300})
	}))
	defer token.Close()
	pool := creds.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	pool.AddCert(token.Certificate())
	a, err := mtls.NewAuthenticator(mtls.AuthConfig{
		CredentialsURL: creds.URL + mtls.CredentialsPath, TokenURL: token.URL + "/other/token",
		Serial: serial, Client: creds.Client(),
	})
	require.NoError(t, err)
	_, err = a.Token(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, 1, tokenCalls.Load())
	require.Nil(t, used.Load(), "the credentials host was not asked for the token")
}
