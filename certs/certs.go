// Package certs generates the development PKI that the simulator and the agent use
// on loopback: a CA, a PPaaS server certificate, and device client certificates whose
// Subject carries the terminal's serial number the way Ingenico device certificates do
// (the serialNumber attribute and a CN of the form ingenico-{MODEL}-{SERIAL}).
//
// It is a development tool: production devices carry certificates provisioned by the
// manufacturer, and the agent only ever reads them.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/termagent/termagent/internal/durable"
)

// File names, as in the PPaaS seed's curl commands (conf/client.key, conf/client.pem,
// conf/bundle.pem) plus the CA key kept to issue more device certificates and the
// agent's own certificate for its POS-facing HTTPS server.
const (
	CAFile         = "ca.pem"
	CAKeyFile      = "ca.key"
	BundleFile     = "bundle.pem"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server.key"
	ClientCertFile = "client.pem"
	ClientKeyFile  = "client.key"
	AgentCertFile  = "agent.pem"
	AgentKeyFile   = "agent.key"
)

// Default identity of the simulated terminal: the serial number of the seed's curl
// example and the model of its custom-token example.
const (
	DefaultSerial = "220597303201181723869389"
	DefaultModel  = "DX8000"
)

// ServerHosts are the names the simulated PPaaS answers to: loopback and the demo
// environment's device hosts, so the seed's curl commands work with --resolve.
func ServerHosts() []string {
	return []string{"localhost", "127.0.0.1", "::1", "auth.device.demo.ppaas.tech", "api.device.demo.ppaas.tech",
		// The hosts of the document's other curl commands (credentials, realm, API).
		"auth.demo.ppaas.tech", "api.demo.ppaas.tech"}
}

// KeyType selects the key algorithm of generated keys.
type KeyType string

// Supported key types.
const (
	ECDSAP256 KeyType = "ecdsa"
	RSA2048   KeyType = "rsa"
)

// Options say what Generate writes.
type Options struct {
	Dir    string  // output directory, created 0700 if missing
	Serial string  // device serial number (default DefaultSerial)
	Model  string  // device model (default DefaultModel)
	Key    KeyType // default ECDSAP256
	// Force replaces an existing CA (and so every certificate). Without it an existing
	// CA is reused, so certificates already handed out stay valid.
	Force bool
	// Validity of leaf certificates (default one year); the CA lives ten years.
	Validity time.Duration
	Now      func() time.Time
}

// Result names the files Generate wrote or kept.
type Result struct {
	Dir       string
	CAReused  bool
	Written   []string
	ClientCN  string
	Serial    string
	ClientDir string
}

// Generate writes a CA (unless one exists), the server certificate, the agent's
// certificate and the device client certificate into opts.Dir.
func Generate(opts Options) (Result, error) {
	opts = withDefaults(opts)
	res := Result{Dir: opts.Dir, Serial: opts.Serial, ClientCN: DeviceCN(opts.Model, opts.Serial)}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return res, fmt.Errorf("create certs dir: %w", err)
	}
	ca, reused, err := loadOrCreateCA(opts)
	if err != nil {
		return res, err
	}
	res.CAReused = reused
	if !reused {
		res.Written = append(res.Written, CAFile, CAKeyFile, BundleFile)
	}
	regenerate := !reused
	if regenerate || missing(opts.Dir, ServerCertFile, ServerKeyFile) {
		if err := ca.issue(opts, filepath.Join(opts.Dir, ServerCertFile), filepath.Join(opts.Dir, ServerKeyFile), serverTemplate(ServerHosts())); err != nil {
			return res, fmt.Errorf("issue server certificate: %w", err)
		}
		res.Written = append(res.Written, ServerCertFile, ServerKeyFile)
	}
	if regenerate || missing(opts.Dir, AgentCertFile, AgentKeyFile) {
		if err := ca.issue(opts, filepath.Join(opts.Dir, AgentCertFile), filepath.Join(opts.Dir, AgentKeyFile), serverTemplate([]string{"localhost", "127.0.0.1", "::1"})); err != nil {
			return res, fmt.Errorf("issue agent certificate: %w", err)
		}
		res.Written = append(res.Written, AgentCertFile, AgentKeyFile)
	}
	if regenerate || missing(opts.Dir, ClientCertFile, ClientKeyFile) || !clientMatches(opts) {
		if err := issueDevice(opts.Dir, opts.Dir, opts.Model, opts.Serial, opts); err != nil {
			return res, err
		}
		res.Written = append(res.Written, ClientCertFile, ClientKeyFile)
	}
	return res, nil
}

// IssueDevice writes client.pem and client.key for one device into outDir, signed by
// the CA in caDir. The simulator's fleet mode uses it for each simulated terminal.
func IssueDevice(caDir, outDir, model, serial string) error {
	return issueDevice(caDir, outDir, model, serial, withDefaults(Options{}))
}

func issueDevice(caDir, outDir, model, serial string, opts Options) error {
	ca, err := loadCA(caDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return fmt.Errorf("create device cert dir: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName:   DeviceCN(model, serial),
			SerialNumber: serial,
			Organization: []string{"Ingenico (development)"},
		},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := ca.issue(opts, filepath.Join(outDir, ClientCertFile), filepath.Join(outDir, ClientKeyFile), tmpl); err != nil {
		return fmt.Errorf("issue device certificate for %s: %w", serial, err)
	}
	if outDir != caDir {
		// A device dir is self-contained: it needs the bundle to verify PPaaS.
		b, err := os.ReadFile(filepath.Join(caDir, BundleFile))
		if err != nil {
			return fmt.Errorf("read CA bundle: %w", err)
		}
		if err := writeFile(filepath.Join(outDir, BundleFile), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// DeviceCN is the Common Name Ingenico devices carry: ingenico-{MODEL}-{SERIAL}.
func DeviceCN(model, serial string) string { return "ingenico-" + model + "-" + serial }

func withDefaults(o Options) Options {
	if o.Serial == "" {
		o.Serial = DefaultSerial
	}
	if o.Model == "" {
		o.Model = DefaultModel
	}
	if o.Key == "" {
		o.Key = ECDSAP256
	}
	if o.Validity == 0 {
		o.Validity = 365 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func loadOrCreateCA(opts Options) (*authority, bool, error) {
	if !opts.Force && !missing(opts.Dir, CAFile, CAKeyFile) {
		ca, err := loadCA(opts.Dir)
		return ca, true, err
	}
	key, err := newKey(opts.Key)
	if err != nil {
		return nil, false, err
	}
	now := opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "termagent development CA", Organization: []string{"termagent (development only)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, false, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, false, fmt.Errorf("parse CA certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, false, err
	}
	for name, data := range map[string][]byte{CAFile: certPEM, BundleFile: certPEM} {
		if err := writeFile(filepath.Join(opts.Dir, name), data, 0o644); err != nil {
			return nil, false, err
		}
	}
	if err := writeFile(filepath.Join(opts.Dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, false, err
	}
	return &authority{cert: cert, key: key}, false, nil
}

func loadCA(dir string) (*authority, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("read CA certificate %s: no PEM certificate", filepath.Join(dir, CAFile))
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse CA key: %w", err)
	}
	return &authority{cert: cert, key: key}, nil
}

func (ca *authority) issue(opts Options, certPath, keyPath string, tmpl *x509.Certificate) error {
	key, err := newKey(opts.Key)
	if err != nil {
		return err
	}
	now := opts.Now()
	tmpl.SerialNumber = randomSerial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(opts.Validity)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return fmt.Errorf("sign certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func serverTemplate(hosts []string) *x509.Certificate {
	t := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"termagent (development only)"}},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
	return t
}

func clientMatches(opts Options) bool {
	b, err := os.ReadFile(filepath.Join(opts.Dir, ClientCertFile))
	if err != nil {
		return false
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return false
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false
	}
	return c.Subject.SerialNumber == opts.Serial && c.Subject.CommonName == DeviceCN(opts.Model, opts.Serial)
}

func newKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case ECDSAP256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate ECDSA key: %w", err)
		}
		return k, nil
	case RSA2048:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("generate RSA key: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("key type %q: want %q or %q", t, ECDSAP256, RSA2048)
	}
}

func encodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey reads a PEM private key in PKCS#8, PKCS#1 (RSA) or SEC 1 (EC) form.
func ParseKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key in PEM block %q", block.Type)
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on supported platforms; a fixed serial would make
		// certificates collide, so refuse loudly instead.
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return n
}

func missing(dir string, names ...string) bool {
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			return true
		}
	}
	return false
}

// writeFile writes atomically and durably (temp, fsync, rename, fsync the
// directory) so an interrupted run never leaves a half-written key next to a
// certificate, nor loses a key once written.
func writeFile(path string, data []byte, mode os.FileMode) error {
	return durable.WriteFile(path, data, mode)
}
