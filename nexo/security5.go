package nexo

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"reflect"
)

// Message security for Nexo v5 reuses the 3.x shared-key scheme (see
// security.go): the whole plaintext v5 document is encrypted into NexoBlob
// and authenticated in SecurityTrailer (AdyenCryptoVersion, KeyIdentifier,
// KeyVersion, Nonce, Hmac), while the Header travels in clear beside them
// and must equal the protected one. ISO 20022 defines SecurityTrailer as a
// CMS ContentInformationType; that form is not supported (see README).

// open5 turns a protected v5 message into its inner message.
func (k *Key) open5(root string, outer *wire5Message) (*wire5Message, *cryptoError) {
	if outer.NexoBlob == "" && outer.SecurityTrailer == nil {
		return nil, &cryptoError{cryptoUnprotected, "message is not protected"}
	}
	t := outer.SecurityTrailer
	if t == nil || outer.NexoBlob == "" {
		return nil, &cryptoError{cryptoParse, "NexoBlob and SecurityTrailer are both required"}
	}
	if t.AdyenCryptoVersion != cryptoVersion {
		return nil, &cryptoError{cryptoUnknownKey, fmt.Sprintf("unsupported AdyenCryptoVersion %d", t.AdyenCryptoVersion)}
	}
	if t.KeyIdentifier != k.Identifier || t.KeyVersion != k.Version {
		return nil, &cryptoError{cryptoUnknownKey, "unknown KeyIdentifier or KeyVersion"}
	}
	enc := base64.StdEncoding
	blob, err1 := enc.DecodeString(outer.NexoBlob)
	nonce, err2 := enc.DecodeString(t.Nonce)
	mac, err3 := enc.DecodeString(t.Hmac)
	if err1 != nil || err2 != nil || err3 != nil || len(nonce) != ivLen || len(mac) != sha256.Size {
		return nil, &cryptoError{cryptoParse, "NexoBlob, Nonce or Hmac is not valid base64 of the right size"}
	}
	plain, err := k.open(blob, nonce, mac)
	if err != nil {
		return nil, &cryptoError{cryptoAuth, err.Error()}
	}
	innerRoot, inner, e := decode5(plain)
	if e != nil {
		return nil, &cryptoError{cryptoParse, "protected message does not parse"}
	}
	if innerRoot != root || inner.NexoBlob != "" || inner.SecurityTrailer != nil {
		return nil, &cryptoError{cryptoHeader, "protected message has another root or is protected twice"}
	}
	if inner.Header == nil || outer.Header == nil || !reflect.DeepEqual(inner.Header, outer.Header) {
		return nil, &cryptoError{cryptoHeader, "Header differs from the protected one"}
	}
	return inner, nil
}

// seal5 encodes m and wraps it into a protected envelope (random nonce when
// nonce is nil).
func (k *Key) seal5(root string, m *wire5Message, nonce []byte) ([]byte, error) {
	plain, err := encode5(root, m)
	if err != nil {
		return nil, err
	}
	if nonce == nil {
		nonce = make([]byte, ivLen)
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("seal nexo v5 message: %w", err)
		}
	}
	blob, mac, err := k.seal(plain, nonce)
	if err != nil {
		return nil, fmt.Errorf("seal nexo v5 message: %w", err)
	}
	enc := base64.StdEncoding
	return encode5(root, &wire5Message{
		Header:   m.Header,
		NexoBlob: enc.EncodeToString(blob),
		SecurityTrailer: &wireSecurityTrailer{
			AdyenCryptoVersion: cryptoVersion, KeyIdentifier: k.Identifier, KeyVersion: k.Version,
			Nonce: enc.EncodeToString(nonce), Hmac: enc.EncodeToString(mac),
		},
	})
}
