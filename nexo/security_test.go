package nexo

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

type secVector struct {
	Passphrase    string
	KeyIdentifier string
	KeyVersion    int
	HmacKeyHex    string
	CipherKeyHex  string
	IVHex         string
	NonceHex      string
	PlaintextFile string
	NexoBlob      string
	Nonce         string
	Hmac          string
}

func loadVector(t testing.TB) (secVector, []byte) {
	b, err := os.ReadFile("testdata/security/vector.json")
	require.NoError(t, err)
	var v secVector
	require.NoError(t, json.Unmarshal(b, &v))
	plain, err := os.ReadFile("testdata/security/" + v.PlaintextFile)
	require.NoError(t, err)
	return v, plain
}

func TestSecurityGoldenVector(t *testing.T) {
	v, plain := loadVector(t)
	k, err := NewKey(v.KeyIdentifier, v.KeyVersion, v.Passphrase)
	require.NoError(t, err)
	require.Equal(t, v.HmacKeyHex, hex.EncodeToString(k.hmacKey))
	require.Equal(t, v.CipherKeyHex, hex.EncodeToString(k.cipherKey))
	require.Equal(t, v.IVHex, hex.EncodeToString(k.iv))

	nonce, _ := hex.DecodeString(v.NonceHex)
	blob, mac, err := k.seal(plain, nonce)
	require.NoError(t, err)
	require.Equal(t, v.NexoBlob, base64.StdEncoding.EncodeToString(blob))
	require.Equal(t, v.Hmac, base64.StdEncoding.EncodeToString(mac))

	// The whole envelope opens back to the same message.
	env, err := k.sealMessage(JSONCodec{}, rootRequest, &wireHeader{
		ProtocolVersion: "3.0", MessageClass: "Service", MessageCategory: "Diagnosis", MessageType: "Request",
		ServiceID: "2001", SaleID: "POS1", POIID: testPOIID,
	}, plain, nonce)
	require.NoError(t, err)
	root, outer, err := JSONCodec{}.decodeWire(env)
	require.NoError(t, err)
	require.Equal(t, v.NexoBlob, outer.NexoBlob)
	got, inner, cerr := k.openMessage(JSONCodec{}, root, outer)
	require.Nil(t, cerr)
	require.Equal(t, plain, got)
	require.NotNil(t, inner.DiagnosisRequest)
}

func TestSecurityRefusals(t *testing.T) {
	v, plain := loadVector(t)
	k, err := NewKey(v.KeyIdentifier, v.KeyVersion, v.Passphrase)
	require.NoError(t, err)
	other, err := NewKey(v.KeyIdentifier, v.KeyVersion, "another passphrase")
	require.NoError(t, err)
	hdr := func() *wireHeader {
		_, m, err := JSONCodec{}.decodeWire(plain)
		require.NoError(t, err)
		return m.MessageHeader
	}
	seal := func(key *Key, h *wireHeader) *wireMessage {
		b, err := key.sealMessage(JSONCodec{}, rootRequest, h, plain, nil)
		require.NoError(t, err)
		_, m, err := JSONCodec{}.decodeWire(b)
		require.NoError(t, err)
		return m
	}
	tests := []struct {
		name string
		msg  func() *wireMessage
		code int
	}{
		{"in clear", func() *wireMessage { _, m, _ := JSONCodec{}.decodeWire(plain); return m }, cryptoUnprotected},
		{"wrong passphrase", func() *wireMessage { return seal(other, hdr()) }, cryptoAuth},
		{"tampered hmac", func() *wireMessage {
			m := seal(k, hdr())
			mac, _ := base64.StdEncoding.DecodeString(m.SecurityTrailer.Hmac)
			mac[0] ^= 1
			m.SecurityTrailer.Hmac = base64.StdEncoding.EncodeToString(mac)
			return m
		}, cryptoAuth},
		{"tampered blob", func() *wireMessage {
			m := seal(k, hdr())
			b, _ := base64.StdEncoding.DecodeString(m.NexoBlob)
			b[len(b)-20] ^= 1
			m.NexoBlob = base64.StdEncoding.EncodeToString(b)
			return m
		}, cryptoAuth},
		{"unknown key id", func() *wireMessage { m := seal(k, hdr()); m.SecurityTrailer.KeyIdentifier = "x"; return m }, cryptoUnknownKey},
		{"unknown key version", func() *wireMessage { m := seal(k, hdr()); m.SecurityTrailer.KeyVersion = 9; return m }, cryptoUnknownKey},
		{"crypto version", func() *wireMessage { m := seal(k, hdr()); m.SecurityTrailer.AdyenCryptoVersion = 2; return m }, cryptoUnknownKey},
		{"bad base64", func() *wireMessage { m := seal(k, hdr()); m.SecurityTrailer.Nonce = "!!"; return m }, cryptoParse},
		{"no trailer", func() *wireMessage { m := seal(k, hdr()); m.SecurityTrailer = nil; return m }, cryptoParse},
		{"outer header changed", func() *wireMessage {
			m := seal(k, hdr())
			m.MessageHeader.POIID = "OTHER"
			return m
		}, cryptoHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, cerr := k.openMessage(JSONCodec{}, rootRequest, tc.msg())
			require.NotNil(t, cerr)
			require.Equal(t, tc.code, cerr.Code, cerr.Error())
		})
	}
}

func TestKeyNeverPrinted(t *testing.T) {
	k, err := NewKey("mykey", 1, "mysupersecretpassphrase")
	require.NoError(t, err)
	require.NotContains(t, k.String(), "secret")
	require.NotContains(t, k.LogValue().String(), hex.EncodeToString(k.hmacKey))
}
