package nexo

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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
		// Attack inputs: padding-oracle probes (the last byte of the blob
		// flipped) and a truncated blob.
		_, outer, err := JSONCodec{}.decodeWire(sealed)
		if err != nil {
			f.Fatal(err)
		}
		blob, _ := base64.StdEncoding.DecodeString(outer.NexoBlob)
		for _, flip := range []byte{0x01, 0x0f, 0x80} {
			tampered := append([]byte(nil), blob...)
			tampered[len(tampered)-1] ^= flip
			outer.NexoBlob = base64.StdEncoding.EncodeToString(tampered)
			b, err := JSONCodec{}.encodeWire(rootRequest, outer)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
		outer.NexoBlob = base64.StdEncoding.EncodeToString(blob[:len(blob)-16])
		b, err := JSONCodec{}.encodeWire(rootRequest, outer)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
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

// approver approves every payment at once (FuzzServe must not block).
type approver struct{}

func (approver) Pay(context.Context, Txn, PaymentRequest) (PaymentResult, error) {
	return PaymentResult{Brand: "KB"}, nil
}
func (approver) Reverse(context.Context, Txn, ReversalRequest) (ReversalResult, error) {
	return ReversalResult{}, Errorf(NotFound, "no such transaction")
}

// FuzzServe feeds request bodies to the whole server (decode, validation,
// session rules, dispatch, journal): it must never panic or log an error,
// always answer 200 or 413, and answer in bounded size.
func FuzzServe(f *testing.F) {
	addGoldenSeeds(f, "*.request.*")
	for _, dir := range []string{"FuzzDecodeJSON", "FuzzDecodeXML"} {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "attack_*"))
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			// The corpus file format: the value is the Go literal on line 2.
			lines := strings.SplitN(string(b), "\n", 3)
			if len(lines) < 2 {
				continue
			}
			lit := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
			if v, err := strconv.Unquote(lit); err == nil {
				f.Add([]byte(v))
			}
		}
	}
	rec := &levelRecorder{}
	clk := newTestClock()
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true, PaymentTimeout: 100 * time.Millisecond, AbortGrace: 10 * time.Millisecond},
		Deps{Engine: approver{}, Journal: NewMemJournal(), Now: clk.Now}, slog.New(rec))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ctype := "application/json"
		if bytes.HasPrefix(bytes.TrimSpace(b), []byte("<")) {
			ctype = "application/xml"
		}
		req := httptest.NewRequest(http.MethodPost, "/nexo", bytes.NewReader(b))
		req.Header.Set("Content-Type", ctype)
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, req)
		if w.Code != http.StatusOK && w.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d for %q", w.Code, b)
		}
		if w.Body.Len() > len(b)+8<<10 {
			t.Fatalf("answer of %d bytes to a request of %d", w.Body.Len(), len(b))
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.errors) > 0 {
			t.Fatalf("logged an error (%v) for %q", rec.errors, b)
		}
	})
}
