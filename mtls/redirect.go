package mtls

import (
	"fmt"
	"io"
	"net/http"
)

// RedirectError is a redirect the platform answered. PPaaS's API does not
// redirect, and a redirect followed would carry the device token (or, on the
// authentication endpoints, the client secret or password) to whatever host
// it names, plain HTTP included: this package's clients never follow one, and
// the caller sees the call failed with this error.
type RedirectError struct {
	Status int    // 301, 302, 303, 307 or 308
	Host   string // the host of the Location, "" when it has none; never its path or query
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("platform answered HTTP %d, a redirect to host %q: redirects are not followed", e.Status, e.Host)
}

// maxRedirectHost bounds the host a RedirectError quotes: the peer writes it.
const maxRedirectHost = 255

func redirectError(status int, host string) *RedirectError {
	if len(host) > maxRedirectHost {
		host = host[:maxRedirectHost]
	}
	return &RedirectError{Status: status, Host: host}
}

// refuseRedirect turns a redirect response into a *RedirectError, draining
// (a little of) and closing its body; any other response is returned as is.
// The statuses are those http.Client follows.
func refuseRedirect(resp *http.Response, err error) (*http.Response, error) {
	if err != nil {
		return resp, err
	}
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return resp, nil
	}
	host := ""
	if loc, err := resp.Location(); err == nil {
		host = loc.Host
	}
	re := redirectError(resp.StatusCode, host)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	return nil, re
}

// noRedirects is a RoundTripper that refuses redirects (refuseRedirect): the
// http.Client never sees one to follow.
type noRedirects struct{ base http.RoundTripper }

func (t noRedirects) RoundTrip(req *http.Request) (*http.Response, error) {
	return refuseRedirect(t.base.RoundTrip(req))
}
