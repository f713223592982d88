package mtls

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// KeyProvider is where the device identity lives: its certificate chain and the
// private key that proves it. The agent never needs the key's bytes, only a
// crypto.Signer, so a key kept in a secure element or HSM (a PKCS#11 token, a TPM)
// fits behind the same two methods: its Signer signs inside the token and the key
// never enters the agent's memory. FileKeyProvider is the PEM-file implementation.
//
// DeviceTLS asks the provider at every TLS handshake, so a provider whose identity
// is rotated (new files, a new token object) hands out the new one without a
// restart.
type KeyProvider interface {
	// Certificate returns the device certificate chain, leaf first. It is called
	// at every handshake, so it answers from a cache when nothing changed.
	Certificate(ctx context.Context) ([]*x509.Certificate, error)
	// Signer returns the signer for the private key of the leaf that Certificate
	// last returned; its Public key matches the leaf's.
	Signer(ctx context.Context) (crypto.Signer, error)
}

// FileKeyProvider reads the device certificate and key from PEM files (the seed's
// conf/client.pem and conf/client.key). It reloads the pair when either file's
// modification time changes; until the new pair loads cleanly (both files
// rewritten, the key matching the certificate) it keeps answering with the old one
// and reports the error, which DeviceTLS takes as "keep the pair in service".
type FileKeyProvider struct {
	certFile, keyFile string

	mu      sync.Mutex
	chain   []*x509.Certificate
	signer  crypto.Signer
	certMod time.Time
	keyMod  time.Time
}

// NewFileKeyProvider loads the pair once, so that a missing, unreadable,
// mismatched or world-readable file is reported at start, naming the file.
func NewFileKeyProvider(certFile, keyFile string) (*FileKeyProvider, error) {
	p := &FileKeyProvider{certFile: certFile, keyFile: keyFile}
	if _, err := p.Certificate(context.Background()); err != nil {
		return nil, err
	}
	return p, nil
}

// String names the files, for errors about the certificate.
func (p *FileKeyProvider) String() string { return p.certFile }

// Certificate implements KeyProvider: two stats when nothing changed.
func (p *FileKeyProvider) Certificate(context.Context) ([]*x509.Certificate, error) {
	cst, err := os.Stat(p.certFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", p.certFile, err)
	}
	kst, err := os.Stat(p.keyFile)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", p.keyFile, err)
	}
	p.mu.Lock()
	if p.chain != nil && cst.ModTime().Equal(p.certMod) && kst.ModTime().Equal(p.keyMod) {
		defer p.mu.Unlock()
		return p.chain, nil
	}
	p.mu.Unlock()

	pair, err := LoadKeyPair(p.certFile, p.keyFile)
	if err != nil {
		return nil, err
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key %s: %T cannot sign", p.keyFile, pair.PrivateKey)
	}
	chain := make([]*x509.Certificate, 0, len(pair.Certificate))
	for _, der := range pair.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", p.certFile, err)
		}
		chain = append(chain, c)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.chain, p.signer, p.certMod, p.keyMod = chain, signer, cst.ModTime(), kst.ModTime()
	return chain, nil
}

// Signer implements KeyProvider.
func (p *FileKeyProvider) Signer(context.Context) (crypto.Signer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.signer == nil {
		return nil, errors.New("private key " + p.keyFile + ": not loaded")
	}
	return p.signer, nil
}
