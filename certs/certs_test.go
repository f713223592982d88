package certs_test

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk, "PEM block in %s", path)
	c, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	return c
}

func TestGenerateWritesSeedFiles(t *testing.T) {
	dir := t.TempDir()
	res, err := certs.Generate(certs.Options{Dir: dir, Serial: "220597303201181723869389", Model: "DX8000"})
	require.NoError(t, err)
	require.False(t, res.CAReused)
	for _, name := range []string{certs.CAFile, certs.BundleFile, certs.ServerCertFile, certs.ServerKeyFile, certs.ClientCertFile, certs.ClientKeyFile, certs.CAKeyFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err, name)
		if filepath.Ext(name) == ".key" {
			require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "%s must be private", name)
		}
	}

	client := readCert(t, filepath.Join(dir, certs.ClientCertFile))
	require.Equal(t, "220597303201181723869389", client.Subject.SerialNumber)
	require.Equal(t, "ingenico-DX8000-220597303201181723869389", client.Subject.CommonName)
	require.Contains(t, client.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	_, isEC := client.PublicKey.(*ecdsa.PublicKey)
	require.True(t, isEC, "ECDSA P-256 by default")

	pool := x509.NewCertPool()
	bundle, err := os.ReadFile(filepath.Join(dir, certs.BundleFile))
	require.NoError(t, err)
	require.True(t, pool.AppendCertsFromPEM(bundle))
	server := readCert(t, filepath.Join(dir, certs.ServerCertFile))
	for _, host := range []string{"localhost", "127.0.0.1", "auth.device.demo.ppaas.tech", "api.device.demo.ppaas.tech"} {
		_, err := server.Verify(x509.VerifyOptions{DNSName: host, Roots: pool})
		require.NoError(t, err, "server cert must verify for %s", host)
	}
	_, err = client.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)

	_, err = tls.LoadX509KeyPair(filepath.Join(dir, certs.ClientCertFile), filepath.Join(dir, certs.ClientKeyFile))
	require.NoError(t, err, "client key must match its certificate")
}

func TestGenerateKeepsCAUnlessForced(t *testing.T) {
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir})
	require.NoError(t, err)
	ca1, err := os.ReadFile(filepath.Join(dir, certs.CAFile))
	require.NoError(t, err)

	res, err := certs.Generate(certs.Options{Dir: dir, Serial: "123456"})
	require.NoError(t, err)
	require.True(t, res.CAReused)
	ca2, _ := os.ReadFile(filepath.Join(dir, certs.CAFile))
	require.Equal(t, ca1, ca2, "an existing CA is never overwritten without Force")
	require.Contains(t, res.Written, certs.ClientCertFile, "a new serial gets a new client certificate")
	require.Equal(t, "123456", readCert(t, filepath.Join(dir, certs.ClientCertFile)).Subject.SerialNumber)

	res, err = certs.Generate(certs.Options{Dir: dir, Serial: "123456"})
	require.NoError(t, err)
	require.Empty(t, res.Written, "nothing to do on an identical re-run")

	res, err = certs.Generate(certs.Options{Dir: dir, Force: true})
	require.NoError(t, err)
	require.False(t, res.CAReused)
	ca3, _ := os.ReadFile(filepath.Join(dir, certs.CAFile))
	require.NotEqual(t, ca1, ca3)
}

func TestGenerateRSA(t *testing.T) {
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir, Key: certs.RSA2048})
	require.NoError(t, err)
	c := readCert(t, filepath.Join(dir, certs.ClientCertFile))
	k, ok := c.PublicKey.(*rsa.PublicKey)
	require.True(t, ok)
	require.Equal(t, 2048, k.N.BitLen())

	_, err = certs.Generate(certs.Options{Dir: t.TempDir(), Key: "dsa"})
	require.ErrorContains(t, err, `key type "dsa"`)
}

func TestIssueDeviceForFleet(t *testing.T) {
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir})
	require.NoError(t, err)
	dev := filepath.Join(dir, "devices", "0001")
	require.NoError(t, certs.IssueDevice(dir, dev, "MOVE5000", "0001"))
	c := readCert(t, filepath.Join(dev, certs.ClientCertFile))
	require.Equal(t, "ingenico-MOVE5000-0001", c.Subject.CommonName)
	_, err = os.Stat(filepath.Join(dev, certs.BundleFile))
	require.NoError(t, err, "a device dir carries the CA bundle")
}
