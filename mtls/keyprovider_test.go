package mtls_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/mtls"
)

// secureElement stands for a key kept in a token (PKCS#11, TPM): it hands out
// the certificate and a signer whose key the agent cannot read, and counts the
// signatures made inside it.
type secureElement struct {
	mu     sync.Mutex
	chain  []*x509.Certificate
	key    crypto.Signer
	signs  atomic.Int64
	broken bool // Signer fails, as a removed token would
}

func (s *secureElement) load(t *testing.T, dir string) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, certs.ClientCertFile), filepath.Join(dir, certs.ClientKeyFile))
	require.NoError(t, err)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chain = []*x509.Certificate{pair.Leaf}
	s.key = pair.PrivateKey.(crypto.Signer)
}

func (s *secureElement) Certificate(context.Context) ([]*x509.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chain, nil
}

func (s *secureElement) Signer(context.Context) (crypto.Signer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return nil, errors.New("token removed")
	}
	return tokenSigner{key: s.key, signs: &s.signs}, nil
}

// tokenSigner exposes only crypto.Signer: no way to reach the key itself.
type tokenSigner struct {
	key   crypto.Signer
	signs *atomic.Int64
}

func (t tokenSigner) Public() crypto.PublicKey { return t.key.Public() }

func (t tokenSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	t.signs.Add(1)
	return t.key.Sign(rand, digest, opts)
}

func TestKeyProviderSecureElementAuthenticates(t *testing.T) {
	w := newWorld(t, simConfig())
	se := &secureElement{}
	se.load(t, w.dir)
	pool, err := mtls.LoadCAPool(filepath.Join(w.dir, certs.BundleFile))
	require.NoError(t, err)
	dev, err := mtls.NewDeviceTLS(t.Context(), se, pool, nil)
	require.NoError(t, err)

	token := func() {
		t.Helper()
		a := testrig.Authenticate(t, dev, serial, w.ppas.URL())
		_, err = a.Token(t.Context())
		require.NoError(t, err)
	}
	token()
	require.Positive(t, se.signs.Load(), "the handshake signed inside the token")

	// The token's identity is rotated: the next connection presents the new one.
	before := dev.Leaf().SerialNumber
	require.NoError(t, certs.IssueDevice(w.dir, w.dir, "DX8000", serial))
	se.load(t, w.dir)
	token()
	require.NotEqual(t, before, dev.Leaf().SerialNumber)

	// A token that fails keeps the identity in service rather than failing the
	// handshake outright.
	rotated := dev.Leaf().SerialNumber
	se.mu.Lock()
	se.broken = true
	se.mu.Unlock()
	require.NoError(t, certs.IssueDevice(w.dir, w.dir, "DX8000", serial))
	pair, err := tls.LoadX509KeyPair(filepath.Join(w.dir, certs.ClientCertFile), filepath.Join(w.dir, certs.ClientKeyFile))
	require.NoError(t, err)
	se.mu.Lock()
	se.chain = []*x509.Certificate{pair.Leaf}
	se.mu.Unlock()
	token()
	require.Equal(t, rotated, dev.Leaf().SerialNumber)
}

func TestNewDeviceTLSChecksTheProvider(t *testing.T) {
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir})
	require.NoError(t, err)
	other := t.TempDir()
	_, err = certs.Generate(certs.Options{Dir: other})
	require.NoError(t, err)
	pool, err := mtls.LoadCAPool(filepath.Join(dir, certs.BundleFile))
	require.NoError(t, err)

	tests := []struct {
		name string
		mod  func(*secureElement)
		now  func() time.Time
		want string
	}{
		{"no certificate", func(s *secureElement) { s.chain = nil }, nil, "returned no certificate"},
		{"key of another device", func(s *secureElement) {
			o := &secureElement{}
			o.load(t, other)
			s.key = o.key
		}, nil, "private key does not match"},
		{"token removed", func(s *secureElement) { s.broken = true }, nil, "token removed"},
		{"expired", nil, func() time.Time { return time.Now().Add(2 * 365 * 24 * time.Hour) }, "expired at"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			se := &secureElement{}
			se.load(t, dir)
			if tc.mod != nil {
				tc.mod(se)
			}
			_, err := mtls.NewDeviceTLS(t.Context(), se, pool, tc.now)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestFileKeyProviderRereadsOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir})
	require.NoError(t, err)
	p, err := mtls.NewFileKeyProvider(filepath.Join(dir, certs.ClientCertFile), filepath.Join(dir, certs.ClientKeyFile))
	require.NoError(t, err)
	a, err := p.Certificate(t.Context())
	require.NoError(t, err)
	b, err := p.Certificate(t.Context())
	require.NoError(t, err)
	require.Same(t, a[0], b[0], "unchanged files are answered from the cache")

	require.NoError(t, certs.IssueDevice(dir, dir, certs.DefaultModel, certs.DefaultSerial))
	future := time.Now().Add(time.Minute)
	for _, f := range []string{certs.ClientCertFile, certs.ClientKeyFile} {
		require.NoError(t, os.Chtimes(filepath.Join(dir, f), future, future))
	}
	c, err := p.Certificate(t.Context())
	require.NoError(t, err)
	require.False(t, a[0].Equal(c[0]), "the rewritten pair is loaded")
	s, err := p.Signer(t.Context())
	require.NoError(t, err)
	require.True(t, s.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c[0].PublicKey))
}
