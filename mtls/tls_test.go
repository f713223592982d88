package mtls_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/mtls"
)

func TestSerialExtraction(t *testing.T) {
	tests := []struct {
		name          string
		subject       pkix.Name
		serial, model string
		wantErr       string
	}{
		{"attribute and CN", pkix.Name{SerialNumber: "220597303201181723869389", CommonName: "ingenico-DX8000-220597303201181723869389"}, "220597303201181723869389", "DX8000", ""},
		{"CN only", pkix.Name{CommonName: "ingenico-DX8000-2097CD800007"}, "2097CD800007", "DX8000", ""},
		{"model with dash", pkix.Name{CommonName: "ingenico-AXIUM-DX8000-42"}, "42", "AXIUM-DX8000", ""},
		{"attribute wins", pkix.Name{SerialNumber: "111", CommonName: "ingenico-DX8000-222"}, "111", "DX8000", ""},
		{"attribute, foreign CN", pkix.Name{SerialNumber: "333", CommonName: "terminal"}, "333", "", ""},
		{"nothing", pkix.Name{CommonName: "terminal"}, "", "", "no serialNumber attribute"},
		{"trailing dash", pkix.Name{CommonName: "ingenico-DX8000-"}, "", "", "no serialNumber attribute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, m, err := mtls.Serial(&x509.Certificate{Subject: tc.subject})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.serial, s)
			require.Equal(t, tc.model, m)
		})
	}
}

func TestLoadDeviceTLSErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir})
	require.NoError(t, err)
	other := t.TempDir()
	_, err = certs.Generate(certs.Options{Dir: other})
	require.NoError(t, err)
	files := func() mtls.TLSFiles {
		return mtls.TLSFiles{Cert: filepath.Join(dir, certs.ClientCertFile), Key: filepath.Join(dir, certs.ClientKeyFile), CA: filepath.Join(dir, certs.BundleFile)}
	}
	tests := []struct {
		name string
		mod  func(*mtls.TLSFiles)
		now  func() time.Time
		want string
	}{
		{"missing cert", func(f *mtls.TLSFiles) { f.Cert = filepath.Join(dir, "nope.pem") }, nil, "nope.pem"},
		{"missing CA", func(f *mtls.TLSFiles) { f.CA = filepath.Join(dir, "nope-ca.pem") }, nil, "CA bundle"},
		{"CA not PEM", func(f *mtls.TLSFiles) { f.CA = filepath.Join(dir, certs.ClientKeyFile) }, nil, "no PEM certificates"},
		{"mismatched key", func(f *mtls.TLSFiles) { f.Key = filepath.Join(other, certs.ClientKeyFile) }, nil, "private key does not match"},
		{"expired", nil, func() time.Time { return time.Now().Add(2 * 365 * 24 * time.Hour) }, "expired at"},
		{"not yet valid", nil, func() time.Time { return time.Now().Add(-48 * time.Hour) }, "not valid before"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := files()
			if tc.mod != nil {
				tc.mod(&f)
			}
			_, err := mtls.LoadDeviceTLS(f, tc.now)
			require.ErrorContains(t, err, tc.want)
		})
	}

	t.Run("world-readable key", func(t *testing.T) {
		f := files()
		require.NoError(t, os.Chmod(f.Key, 0o644))
		t.Cleanup(func() { _ = os.Chmod(f.Key, 0o600) })
		_, err := mtls.LoadDeviceTLS(f, nil)
		require.ErrorContains(t, err, "chmod 600")
	})
}

func TestDeviceCertRotation(t *testing.T) {
	w := newWorld(t, simConfig())
	dev := w.deviceTLS(t)
	before := dev.Leaf().SerialNumber
	// Rotate: a new certificate for the same device, written over the files.
	require.NoError(t, certs.IssueDevice(w.dir, w.dir, "DX8000", serial))
	future := time.Now().Add(time.Minute)
	require.NoError(t, os.Chtimes(filepath.Join(w.dir, certs.ClientCertFile), future, future))

	a := testrig.Authenticate(t, dev, serial, w.ppas.URL())
	_, err := a.Token(t.Context())
	require.NoError(t, err)
	require.NotEqual(t, before, dev.Leaf().SerialNumber, "the handshake picked up the rotated certificate")
}
