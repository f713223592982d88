package nexo

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// addGoldenSeeds adds every golden file with the extension as a seed, on top
// of the committed corpus in testdata/fuzz/<FuzzName>.
func addGoldenSeeds(f *testing.F, pattern string) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", pattern))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// fuzzCodec checks that a decoder never panics, fails only with a Nexo
// MessageFormat error, and that what it accepts re-encodes stably.
func fuzzCodec(t *testing.T, c Codec, b []byte) {
	req, err := c.DecodeRequest(b)
	if err != nil {
		var ne *Error
		if !errors.As(err, &ne) || ne.Condition != MessageFormat {
			t.Fatalf("decode error is not MessageFormat: %v", err)
		}
	} else {
		enc, err := c.EncodeRequest(req)
		if err != nil {
			t.Fatalf("accepted request does not encode: %v", err)
		}
		again, err := c.DecodeRequest(enc)
		if err != nil {
			t.Fatalf("re-encoded request does not decode: %v\n%s", err, enc)
		}
		enc2, err := c.EncodeRequest(again)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
	}
	if resp, err := c.DecodeResponse(b); err == nil {
		if _, err := c.EncodeResponse(resp); err != nil {
			t.Fatalf("accepted response does not encode: %v", err)
		}
	}
}

func FuzzDecodeJSON(f *testing.F) {
	addGoldenSeeds(f, "*.json")
	f.Fuzz(func(t *testing.T, b []byte) { fuzzCodec(t, JSONCodec{}, b) })
}

func FuzzDecodeXML(f *testing.F) {
	addGoldenSeeds(f, "*.xml")
	f.Fuzz(func(t *testing.T, b []byte) { fuzzCodec(t, XMLCodec{}, b) })
}

// FuzzSecurityTrailer feeds protected envelopes to the opening code.
func FuzzSecurityTrailer(f *testing.F) {
	key, err := NewKey("mykey", 1, "mysupersecretpassphrase")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"02_payment.request.json", "06_diagnosis.request.json"} {
		plain, err := os.ReadFile(filepath.Join("testdata", "golden", name))
		if err != nil {
			f.Fatal(err)
		}
		_, m, err := JSONCodec{}.decodeWire(plain)
		if err != nil {
			f.Fatal(err)
		}
		sealed, err := key.sealMessage(JSONCodec{}, rootRequest, m.MessageHeader, plain, make([]byte, 16))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		root, outer, err := JSONCodec{}.decodeWire(b)
		if err != nil {
			return
		}
		plain, inner, cerr := key.openMessage(JSONCodec{}, root, outer)
		if cerr != nil {
			if cerr.Code < cryptoParse || cerr.Code > cryptoUnprotected {
				t.Fatalf("unknown crypto error code %d", cerr.Code)
			}
			return
		}
		if len(plain) == 0 || *inner.MessageHeader != *outer.MessageHeader {
			t.Fatal("opened a message whose header does not match")
		}
	})
}
