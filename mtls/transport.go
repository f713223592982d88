package mtls

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"time"
)

// TokenSource supplies bearer tokens and hears when the platform rejected one.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	Invalidate(token string)
}

// Transport adds the device bearer token to every request. A 401 invalidates the
// token, re-authenticates once and retries the request once; a request whose body
// cannot be replayed (no GetBody) is not retried. A redirect is answered with a
// *RedirectError, never a response: the http.Client would follow it with the
// token (added here, on every round trip, so net/http's stripping of
// Authorization on a cross-host redirect never applies).
type Transport struct {
	Base   http.RoundTripper
	Tokens TokenSource
	Clock  *Clock // optional: learns the server's time from every response
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return refuseRedirect(t.roundTrip(req))
}

func (t *Transport) roundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.Tokens.Token(req.Context())
	if err != nil {
		return nil, fmt.Errorf("authorize %s %s: %w", req.Method, req.URL.Path, err)
	}
	resp, err := t.Base.RoundTrip(authorized(req, tok, req.Body))
	if err != nil {
		return nil, err
	}
	if t.Clock != nil {
		t.Clock.ObserveResponse(resp)
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return resp, nil
	}
	var body io.ReadCloser
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return resp, nil
		}
		if body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	t.Tokens.Invalidate(tok)
	tok, err = t.Tokens.Token(req.Context())
	if err != nil {
		return nil, fmt.Errorf("re-authorize %s %s after 401: %w", req.Method, req.URL.Path, err)
	}
	resp, err = t.Base.RoundTrip(authorized(req, tok, body))
	if err == nil && t.Clock != nil {
		t.Clock.ObserveResponse(resp)
	}
	return resp, err
}

func authorized(req *http.Request, tok string, body io.ReadCloser) *http.Request {
	r := req.Clone(req.Context())
	r.Body = body
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// NewHTTPClient returns the client for PPaaS calls: mutual TLS with the device
// certificate and, when tokens is not nil, the bearer token on every request.
// It follows no redirect: a redirect fails the call with a *RedirectError.
// Callers put deadlines on their contexts; timeout is a last resort.
func NewHTTPClient(dev *DeviceTLS, tokens TokenSource, clock *Clock, timeout time.Duration) *http.Client {
	return NewHTTPClientTLS(dev.Config(), tokens, clock, timeout)
}

// NewHTTPClientTLS is NewHTTPClient with any TLS configuration: the demo
// custom-token mode talks to PPaaS without a client certificate.
func NewHTTPClientTLS(tlsConfig *tls.Config, tokens TokenSource, clock *Clock, timeout time.Duration) *http.Client {
	base := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       tlsConfig.Clone(), // the transport adds its ALPN protocols
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
	var rt http.RoundTripper = noRedirects{base}
	if tokens != nil {
		rt = &Transport{Base: base, Tokens: tokens, Clock: clock}
	}
	return &http.Client{Transport: rt, Timeout: timeout}
}
