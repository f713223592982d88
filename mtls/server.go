package mtls

import "crypto/tls"

// AEADSuites are the TLS 1.2 cipher suites every server of the project
// offers: ECDHE key exchange (forward secrecy) with AES-GCM or
// ChaCha20-Poly1305. No CBC, no SHA-1 MAC, no RSA key exchange. TLS 1.3
// suites are all AEAD and not configurable.
var AEADSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// HardenServerTLS returns a copy of cfg that accepts TLS 1.2 and 1.3 only,
// with AEADSuites for TLS 1.2.
func HardenServerTLS(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	c.CipherSuites = append([]uint16(nil), AEADSuites...)
	return c
}
