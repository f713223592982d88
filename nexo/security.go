package nexo

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"log/slog"
	"sync/atomic"
)

// Message security as existing Nexo JSON terminal APIs do it ("shared key"
// protection of local communications): the whole plaintext document is
// encrypted into NexoBlob and authenticated in SecurityTrailer, while the
// MessageHeader travels in clear beside it.
//
//   - key material: PBKDF2-HMAC-SHA1(passphrase, salt "AdyenNexoV1Salt",
//     4000 rounds) → 80 bytes = HMAC key (32) ‖ cipher key (32) ‖ IV (16);
//   - per message: a random 16-byte Nonce; AES-256-CBC with PKCS#7 padding
//     and IV = derived IV XOR Nonce;
//   - Hmac = HMAC-SHA256(HMAC key, plaintext);
//   - SecurityTrailer{AdyenCryptoVersion 1, KeyIdentifier, KeyVersion,
//     Nonce, Hmac}, binary values in standard base64.
const (
	kdfSalt       = "AdyenNexoV1Salt"
	kdfRounds     = 4000
	hmacKeyLen    = 32
	cipherKeyLen  = 32
	ivLen         = 16
	cryptoVersion = 1
)

// Key is a derived message-security key. Its String and LogValue never show
// key material.
type Key struct {
	Identifier string
	Version    int
	hmacKey    []byte
	cipherKey  []byte
	iv         []byte
	// macRuns, when set (tests), counts the HMACs open computes.
	macRuns *atomic.Int64
}

// NewKey derives the key material of a shared key from its passphrase.
func NewKey(identifier string, version int, passphrase string) (*Key, error) {
	if identifier == "" || passphrase == "" {
		return nil, fmt.Errorf("derive nexo key: identifier and passphrase are required")
	}
	km, err := pbkdf2.Key(sha1.New, passphrase, []byte(kdfSalt), kdfRounds, hmacKeyLen+cipherKeyLen+ivLen)
	if err != nil {
		return nil, fmt.Errorf("derive nexo key: %w", err)
	}
	return &Key{
		Identifier: identifier,
		Version:    version,
		hmacKey:    km[:hmacKeyLen],
		cipherKey:  km[hmacKeyLen : hmacKeyLen+cipherKeyLen],
		iv:         km[hmacKeyLen+cipherKeyLen:],
	}, nil
}

func (k *Key) String() string { return fmt.Sprintf("nexo.Key{%s v%d}", k.Identifier, k.Version) }

// LogValue keeps key material out of structured logs.
func (k *Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", k.Identifier), slog.Int("key_version", k.Version))
}

func (k *Key) block(nonce []byte) (cipher.Block, []byte, error) {
	b, err := aes.NewCipher(k.cipherKey)
	if err != nil {
		return nil, nil, err
	}
	iv := make([]byte, ivLen)
	for i := range iv {
		iv[i] = k.iv[i] ^ nonce[i]
	}
	return b, iv, nil
}

// seal encrypts and authenticates plaintext with the given 16-byte nonce.
func (k *Key) seal(plain, nonce []byte) (blob, mac []byte, err error) {
	b, iv, err := k.block(nonce)
	if err != nil {
		return nil, nil, err
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	buf := make([]byte, len(plain)+pad)
	copy(buf, plain)
	for i := len(plain); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(buf, buf)
	h := hmac.New(sha256.New, k.hmacKey)
	h.Write(plain)
	return buf, h.Sum(nil), nil
}

// open decrypts blob and checks mac over the plaintext. It takes the same
// time whatever the padding: the padding is checked in constant time, and
// the HMAC is computed for every possible padding length (1–16 bytes, from
// one shared prefix state) before either result is looked at, so neither the
// answer nor its timing is a padding oracle. Bad padding and a bad MAC give
// the same error.
func (k *Key) open(blob, nonce, mac []byte) ([]byte, error) {
	errAuth := fmt.Errorf("message authentication failed")
	if len(nonce) != ivLen {
		return nil, fmt.Errorf("nonce is %d bytes, want %d", len(nonce), ivLen)
	}
	if len(blob) == 0 || len(blob)%aes.BlockSize != 0 {
		return nil, errAuth // public: the length is on the wire
	}
	b, iv, err := k.block(nonce)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, len(blob))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(buf, blob)
	n := len(buf)
	pad := int(buf[n-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, aes.BlockSize)
	for i := 1; i <= aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, pad)
		same := subtle.ConstantTimeByteEq(buf[n-i], byte(pad))
		good &= subtle.ConstantTimeSelect(inPad, same, 1)
	}
	macOK := 0
	for p, sum := range k.tailMACs(buf) {
		macOK |= subtle.ConstantTimeEq(int32(p+1), int32(pad)) & subtle.ConstantTimeCompare(sum, mac)
	}
	if good&macOK != 1 {
		return nil, errAuth
	}
	return buf[:n-pad], nil
}

// tailMACs returns HMAC(buf[:len(buf)-p]) for p = 1…16 (index p-1): the
// shared prefix is hashed once and its state cloned for each tail.
func (k *Key) tailMACs(buf []byte) [aes.BlockSize][]byte {
	var out [aes.BlockSize][]byte
	n := len(buf)
	prefix := hmac.New(sha256.New, k.hmacKey)
	prefix.Write(buf[:n-aes.BlockSize])
	for p := 1; p <= aes.BlockSize; p++ {
		var h hash.Hash
		if c, ok := prefix.(hash.Cloner); ok {
			if cl, err := c.Clone(); err == nil {
				h = cl
			}
		}
		if h == nil { // no cloning (FIPS 140 v1.0.0 mode): start over
			h = hmac.New(sha256.New, k.hmacKey)
			h.Write(buf[:n-aes.BlockSize])
		}
		h.Write(buf[n-aes.BlockSize : n-p])
		out[p-1] = h.Sum(nil)
		if k.macRuns != nil {
			k.macRuns.Add(1)
		}
	}
	return out
}

// cryptoError is a refused protected (or unprotected) message. Existing Nexo
// JSON terminal APIs answer these with HTTP 401 and "crypto error (n)";
// codes 1–3 follow their published meanings, the others are ours.
type cryptoError struct {
	Code   int
	Reason string
}

const (
	cryptoParse       = 1 // trailer or blob unreadable
	cryptoUnknownKey  = 2 // KeyIdentifier/KeyVersion/AdyenCryptoVersion not ours
	cryptoHeader      = 3 // inner MessageHeader differs from the clear one
	cryptoAuth        = 4 // decryption or HMAC check failed
	cryptoUnprotected = 5 // a key is configured but the message is in clear
)

func (e *cryptoError) Error() string {
	return fmt.Sprintf("crypto error (%d): %s", e.Code, e.Reason)
}

// openMessage turns a protected envelope into its inner message.
func (k *Key) openMessage(c wireCodec, root string, outer *wireMessage) ([]byte, *wireMessage, *cryptoError) {
	if outer.NexoBlob == "" && outer.SecurityTrailer == nil {
		return nil, nil, &cryptoError{cryptoUnprotected, "message is not protected"}
	}
	t := outer.SecurityTrailer
	if t == nil || outer.NexoBlob == "" {
		return nil, nil, &cryptoError{cryptoParse, "NexoBlob and SecurityTrailer are both required"}
	}
	if t.AdyenCryptoVersion != cryptoVersion {
		return nil, nil, &cryptoError{cryptoUnknownKey, fmt.Sprintf("unsupported AdyenCryptoVersion %d", t.AdyenCryptoVersion)}
	}
	if t.KeyIdentifier != k.Identifier || t.KeyVersion != k.Version {
		return nil, nil, &cryptoError{cryptoUnknownKey, "unknown KeyIdentifier or KeyVersion"}
	}
	blob, err1 := base64.StdEncoding.DecodeString(outer.NexoBlob)
	nonce, err2 := base64.StdEncoding.DecodeString(t.Nonce)
	mac, err3 := base64.StdEncoding.DecodeString(t.Hmac)
	if err1 != nil || err2 != nil || err3 != nil || len(nonce) != ivLen || len(mac) != sha256.Size {
		return nil, nil, &cryptoError{cryptoParse, "NexoBlob, Nonce or Hmac is not valid base64 of the right size"}
	}
	plain, err := k.open(blob, nonce, mac)
	if err != nil {
		return nil, nil, &cryptoError{cryptoAuth, err.Error()}
	}
	innerRoot, inner, err := c.decodeWire(plain)
	if err != nil {
		return nil, nil, &cryptoError{cryptoParse, "protected message does not parse"}
	}
	if innerRoot != root || inner.NexoBlob != "" || inner.SecurityTrailer != nil {
		return nil, nil, &cryptoError{cryptoHeader, "protected message has another root or is protected twice"}
	}
	if inner.MessageHeader == nil || outer.MessageHeader == nil || *inner.MessageHeader != *outer.MessageHeader {
		return nil, nil, &cryptoError{cryptoHeader, "MessageHeader differs from the protected one"}
	}
	return plain, inner, nil
}

// sealMessage wraps an encoded plaintext document into a protected envelope.
func (k *Key) sealMessage(c wireCodec, root string, hdr *wireHeader, plain, nonce []byte) ([]byte, error) {
	if nonce == nil {
		nonce = make([]byte, ivLen)
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("seal nexo message: %w", err)
		}
	}
	blob, mac, err := k.seal(plain, nonce)
	if err != nil {
		return nil, fmt.Errorf("seal nexo message: %w", err)
	}
	enc := base64.StdEncoding
	return c.encodeWire(root, &wireMessage{
		MessageHeader: hdr,
		NexoBlob:      enc.EncodeToString(blob),
		SecurityTrailer: &wireSecurityTrailer{
			AdyenCryptoVersion: cryptoVersion,
			KeyIdentifier:      k.Identifier,
			KeyVersion:         k.Version,
			Nonce:              enc.EncodeToString(nonce),
			Hmac:               enc.EncodeToString(mac),
		},
	})
}
