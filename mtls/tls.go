// Package mtls is the agent's link to the PPaaS platform: the device's mutual-TLS
// configuration, the serial number read from its certificate, the device
// authentication flow (merchant credentials by serial → client_credentials token,
// or the password grant for end-user mode), a token cache refreshed in the
// background, and an http.RoundTripper that puts the bearer token on every API call.
package mtls

import (
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

// DeviceTLS holds the device's client certificate and the CA pool that verifies
// PPaaS. It reloads the certificate when its files change on disk, so a rotated
// certificate is used for the next handshake without restarting the agent.
type DeviceTLS struct {
	files TLSFiles
	pool  *x509.CertPool
	now   func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	leaf    *x509.Certificate
	modTime time.Time
}

// LoadDeviceTLS reads and checks the device certificate, key and CA bundle. Errors
// name the file and what is wrong with it: missing, unreadable, not PEM, expired,
// key not matching the certificate, or a key file readable by others.
func LoadDeviceTLS(files TLSFiles, now func() time.Time) (*DeviceTLS, error) {
	if now == nil {
		now = time.Now
	}
	pool, err := LoadCAPool(files.CA)
	if err != nil {
		return nil, err
	}
	d := &DeviceTLS{files: files, pool: pool, now: now}
	if err := d.reload(); err != nil {
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

func (d *DeviceTLS) reload() error {
	st, err := os.Stat(d.files.Cert)
	if err != nil {
		return fmt.Errorf("certificate %s: %w", d.files.Cert, err)
	}
	pair, err := LoadKeyPair(d.files.Cert, d.files.Key)
	if err != nil {
		return err
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("certificate %s: %w", d.files.Cert, err)
		}
	}
	now := d.now()
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("certificate %s: expired at %s", d.files.Cert, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("certificate %s: not valid before %s (is the clock right?)", d.files.Cert, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	d.mu.Lock()
	d.cert, d.leaf, d.modTime = &pair, leaf, st.ModTime()
	d.mu.Unlock()
	return nil
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

// clientCertificate serves the handshake, picking up a rotated certificate: when the
// file's modification time changed and the new pair loads cleanly it is used; a
// half-written or broken new pair keeps the old one in service.
func (d *DeviceTLS) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if st, err := os.Stat(d.files.Cert); err == nil {
		d.mu.Lock()
		changed := !st.ModTime().Equal(d.modTime)
		d.mu.Unlock()
		if changed {
			_ = d.reload() // keep the old pair on failure; the next handshake retries
		}
	}
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
