package mtls_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/mtls"
)

type staticTokens struct{}

func (staticTokens) Token(context.Context) (string, error) { return "SECRET-DEVICE-JWT", nil }
func (staticTokens) Invalidate(string)                     {}

// thief is a plain-HTTP host that counts what reaches it.
func thief(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(s.Close)
	return s, &hits
}

var redirects = []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect}

// A platform (or whatever answers in its name) redirecting to a plain-HTTP
// host elsewhere: the device token goes nowhere, and the caller's call fails
// with an error naming the status and the Location's host, not its query.
// Both shapes of client: NewHTTPClientTLS's, and an http.Client with a bare
// Transport (the agent's cloud relay dialer).
func TestTokenNeverFollowsARedirect(t *testing.T) {
	evil, hits := thief(t)
	evilHost := strings.TrimPrefix(evil.URL, "http://")
	for _, status := range redirects {
		ppaas := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, evil.URL+"/steal?leak=abc", status)
		}))
		defer ppaas.Close()
		tlsCfg := ppaas.Client().Transport.(*http.Transport).TLSClientConfig
		clients := map[string]*http.Client{
			"NewHTTPClientTLS": mtls.NewHTTPClientTLS(tlsCfg, staticTokens{}, nil, 0),
			"Transport":        {Transport: &mtls.Transport{Base: &http.Transport{TLSClientConfig: tlsCfg}, Tokens: staticTokens{}}},
		}
		for name, c := range clients {
			t.Run(fmt.Sprintf("%d/%s", status, name), func(t *testing.T) {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, ppaas.URL+"/qrcode-payment/v1/transactions", strings.NewReader(`{"amount":1}`))
				require.NoError(t, err)
				resp, err := c.Do(req)
				if resp != nil {
					resp.Body.Close()
				}
				require.Error(t, err)
				var re *mtls.RedirectError
				require.ErrorAs(t, err, &re)
				require.Equal(t, status, re.Status)
				require.Equal(t, evilHost, re.Host)
				require.Contains(t, err.Error(), fmt.Sprint(status))
				require.Contains(t, err.Error(), evilHost)
				require.NotContains(t, err.Error(), "leak")
				require.Zero(t, hits.Load(), "the plain-HTTP host received a request")
			})
		}
	}
}

// The token endpoint redirecting: the form with the client secret is not
// posted again anywhere, whatever client the Authenticator was given (one of
// NewHTTPClientTLS, as the agent's, or a plain http.Client that would follow
// redirects), and Token fails with the redirect named.
func TestClientSecretNeverFollowsARedirect(t *testing.T) {
	evil, hits := thief(t)
	evilHost := strings.TrimPrefix(evil.URL, "http://")
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		idp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == mtls.CredentialsPath {
				_, _ = io.WriteString(w, `[{"merchantName":"m","userDomain":"d","clientId":"dev","clientSecret":"S3CR3T"}]`)
				return
			}
			http.Redirect(w, r, evil.URL+"/token?leak=abc", status)
		}))
		defer idp.Close()
		tlsCfg := idp.Client().Transport.(*http.Transport).TLSClientConfig
		clients := map[string]*http.Client{
			"NewHTTPClientTLS": mtls.NewHTTPClientTLS(tlsCfg, nil, nil, 0),
			"plain":            idp.Client(),
		}
		for name, c := range clients {
			t.Run(fmt.Sprintf("%d/%s", status, name), func(t *testing.T) {
				a, err := mtls.NewAuthenticator(mtls.AuthConfig{BaseURL: idp.URL, Serial: "S1", Client: c})
				require.NoError(t, err)
				_, err = a.Token(t.Context())
				var re *mtls.RedirectError
				require.ErrorAs(t, err, &re)
				require.Equal(t, status, re.Status)
				require.Equal(t, evilHost, re.Host)
				require.Contains(t, err.Error(), "request device token")
				require.NotContains(t, err.Error(), "leak")
				var ue *url.Error
				require.NotErrorAs(t, err, &ue, "the error quotes no URL")
				require.Zero(t, hits.Load(), "the plain-HTTP host received the client secret")
			})
		}
	}
}
