// Package testrig holds the rigs the tests of several packages share: polling
// a condition with a deadline and a device's link to a (simulated) PPaaS (the
// locked buffer they share with processes is internal/syncbuf, which the
// simulator's commands use too). It imports only the transport
// packages (mtls, certs), so any package's tests can use it without an import
// cycle; the rigs that run the device side live below it: enginerig (the QR
// engine against the fake platform) and worldrig (a whole simulated world
// with an agent).
package testrig

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/mtls"
)

// WaitFor polls cond until it holds, failing the test with what (and detail's
// description of the state, if given) when within passes or the test ends.
// It polls a condition; it never waits for time to pass.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	wait := time.Millisecond
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			for _, d := range detail {
				msg += ": " + d()
			}
			t.Fatalf("%s: not within %s%s", what, within, msg)
		}
		// Quick to notice a condition about to hold, light on one that is
		// costly to evaluate or slow to come: 1 ms doubling to 50 ms.
		select {
		case <-timer.C:
			wait = min(2*wait, 50*time.Millisecond)
			timer.Reset(wait)
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		}
	}
}

// DeviceFiles are the device's mTLS files in a directory written by
// certs.Generate, trusting the bundle of that directory.
func DeviceFiles(dir string) mtls.TLSFiles {
	return mtls.TLSFiles{
		Cert: filepath.Join(dir, certs.ClientCertFile),
		Key:  filepath.Join(dir, certs.ClientKeyFile),
		CA:   filepath.Join(dir, certs.BundleFile),
	}
}

// Device is a device's link to PPaaS, assembled as the agent assembles it:
// its TLS identity, the authenticator that gets its tokens over mTLS, and
// the API client that sends them.
type Device struct {
	TLS  *mtls.DeviceTLS
	Auth *mtls.Authenticator
	HTTP *http.Client
}

// LinkDevice links the device whose files certs.Generate wrote to dir to
// the PPaaS at baseURL.
func LinkDevice(t testing.TB, dir, serial, baseURL string) Device {
	t.Helper()
	dev, err := mtls.LoadDeviceTLS(DeviceFiles(dir), nil)
	require.NoError(t, err)
	auth := Authenticate(t, dev, serial, baseURL)
	return Device{TLS: dev, Auth: auth, HTTP: mtls.NewHTTPClient(dev, auth, nil, 10*time.Second)}
}

// Authenticate is the authenticator of the device dev (serial) at the PPaaS
// at baseURL, reaching it over mTLS without a token.
func Authenticate(t testing.TB, dev *mtls.DeviceTLS, serial, baseURL string) *mtls.Authenticator {
	t.Helper()
	auth, err := mtls.NewAuthenticator(mtls.AuthConfig{BaseURL: baseURL, Serial: serial, Client: mtls.NewHTTPClient(dev, nil, nil, 10*time.Second)})
	require.NoError(t, err)
	return auth
}
