// Package mtls is the agent's link to the PPaaS platform: the device's mutual-TLS
// configuration, the serial number read from its certificate, the device
// authentication flow (merchant credentials by serial → client_credentials token,
// the password grant for end-user mode with its refresh token, or the demo-only
// custom token without a certificate), a token cache refreshed in the background,
// and an http.RoundTripper that puts the bearer token on every API call.
package mtls

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// TLSFiles name the device's PEM files (the seed's conf/client.pem, conf/client.key,
// conf/bundle.pem).
type TLSFiles struct {
	Cert string
	Key  string
	CA   string
}

// DeviceTLS holds the device's client identity (from a KeyProvider) and the CA
// pool that verifies PPaaS. It asks the provider at every handshake, so a rotated
// certificate is used for the next connection without restarting the agent.
type DeviceTLS struct {
	keys KeyProvider
	pool *x509.CertPool
	now  func() time.Time

	mu   sync.Mutex
	cert *tls.Certificate
	leaf *x509.Certificate
}

// LoadDeviceTLS reads and checks the device certificate, key and CA bundle. Errors
// name the file and what is wrong with it: missing, unreadable, not PEM, expired,
// key not matching the certificate, or a key file readable by others.
func LoadDeviceTLS(files TLSFiles, now func() time.Time) (*DeviceTLS, error) {
	pool, err := LoadCAPool(files.CA)
	if err != nil {
		return nil, err
	}
	keys, err := NewFileKeyProvider(files.Cert, files.Key)
	if err != nil {
		return nil, err
	}
	return NewDeviceTLS(context.Background(), keys, pool, now)
}

// NewDeviceTLS takes the device identity from keys and checks it: a certificate
// valid now (by now, default time.Now) whose public key matches the signer's.
func NewDeviceTLS(ctx context.Context, keys KeyProvider, pool *x509.CertPool, now func() time.Time) (*DeviceTLS, error) {
	if now == nil {
		now = time.Now
	}
	d := &DeviceTLS{keys: keys, pool: pool, now: now}
	if err := d.refresh(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// LoadCAPool reads a PEM bundle of CA certificates.
func LoadCAPool(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, errors.New("CA bundle: no file configured")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA bundle %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificates in file", path)
	}
	return pool, nil
}

// LoadKeyPair reads a certificate and its key, refusing a key file that other users
// can read: a device key is the terminal's identity.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, errors.New("client certificate: cert and key files must both be configured")
	}
	st, err := os.Stat(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("private key %s: %w", keyFile, err)
	}
	if st.Mode().Perm()&0o077 != 0 && !windows() {
		return tls.Certificate{}, fmt.Errorf("private key %s: mode %v lets other users read it; chmod 600 it", keyFile, st.Mode().Perm())
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	if blk, _ := pem.Decode(certPEM); blk == nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s: no PEM block", certFile)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("private key %s: %w", keyFile, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return pair, nil
}

// refresh takes the provider's current identity if it differs from the one in
// service and passes the checks; otherwise it leaves the old one in place.
func (d *DeviceTLS) refresh(ctx context.Context) error {
	chain, err := d.keys.Certificate(ctx)
	if err != nil {
		return err
	}
	name := describe(d.keys)
	if len(chain) == 0 || chain[0] == nil {
		return fmt.Errorf("certificate %s: key provider returned no certificate", name)
	}
	leaf := chain[0]
	d.mu.Lock()
	same := d.leaf != nil && d.leaf.Equal(leaf)
	d.mu.Unlock()
	if same {
		return nil
	}
	now := d.now()
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("certificate %s: expired at %s", name, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("certificate %s: not valid before %s (is the clock right?)", name, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	signer, err := d.keys.Signer(ctx)
	if err != nil {
		return fmt.Errorf("certificate %s: %w", name, err)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return fmt.Errorf("certificate %s: private key does not match the certificate's public key", name)
	}
	cert := &tls.Certificate{PrivateKey: signer, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	d.mu.Lock()
	d.cert, d.leaf = cert, leaf
	d.mu.Unlock()
	return nil
}

// describe names a provider's identity in errors: its files, or its type.
func describe(keys KeyProvider) string {
	if s, ok := keys.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("from %T", keys)
}

// Leaf is the device certificate currently in use.
func (d *DeviceTLS) Leaf() *x509.Certificate {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.leaf
}

// Pool is the CA pool that verifies PPaaS.
func (d *DeviceTLS) Pool() *x509.CertPool { return d.pool }

// ExpiresIn is how long the device certificate stays valid.
func (d *DeviceTLS) ExpiresIn() time.Duration { return d.Leaf().NotAfter.Sub(d.now()) }

// clientCertificate serves the handshake, picking up a rotated identity: when the
// provider hands out a new certificate that passes the checks it is used; a
// half-written or broken new pair keeps the old one in service and the next
// handshake tries again.
func (d *DeviceTLS) clientCertificate(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	_ = d.refresh(cri.Context())
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cert, nil
}

// Config is the client TLS configuration for PPaaS: TLS 1.2–1.3, the server verified
// against the CA bundle, the device certificate presented.
func (d *DeviceTLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		MaxVersion:           tls.VersionTLS13,
		RootCAs:              d.pool,
		GetClientCertificate: d.clientCertificate,
	}
}

// Serial returns the device's serial number and model from its certificate: the
// Subject serialNumber attribute when present, else the trailing token of a CN of
// the form ingenico-{MODEL}-{SERIAL}.
func Serial(cert *x509.Certificate) (serial, model string, err error) {
	cn := cert.Subject.CommonName
	if rest, ok := strings.CutPrefix(cn, "ingenico-"); ok {
		if i := strings.LastIndexByte(rest, '-'); i > 0 && i < len(rest)-1 {
			model, serial = rest[:i], rest[i+1:]
		}
	}
	if s := strings.TrimSpace(cert.Subject.SerialNumber); s != "" {
		serial = s
	}
	if serial == "" {
		return "", "", fmt.Errorf("device certificate %q: no serialNumber attribute and CN is not ingenico-{MODEL}-{SERIAL}", cn)
	}
	return serial, model, nil
}
