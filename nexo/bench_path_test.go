package nexo

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"
)

// nullJournal journals nothing: the payment path's benchmarks measure the
// server's own CPU, not a journal's.
type nullJournal struct{}

func (nullJournal) Begin(_ context.Context, e JournalEntry) (string, error) {
	return e.SaleID + "." + e.ServiceID, nil
}
func (nullJournal) Finish(context.Context, Txn, *Response, time.Time) error { return nil }
func (nullJournal) Lookup(context.Context, string, string) (JournalEntry, bool, error) {
	return JournalEntry{}, false, nil
}
func (nullJournal) Last(context.Context, string) (JournalEntry, bool, error) {
	return JournalEntry{}, false, nil
}

// BenchmarkPaymentHandler is one approved payment through the /nexo handler
// (no TLS, no network, a journal that keeps nothing, an engine that
// approves at once): the server's CPU per payment.
func BenchmarkPaymentHandler(b *testing.B) {
	golden, err := os.ReadFile("testdata/golden/02_payment.request.json")
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true}, Deps{Engine: &fakeEngine{}, Journal: nullJournal{}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	const n = 4096
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = bytes.Replace(golden, []byte(`"ServiceID": "1002"`), []byte(`"ServiceID": "`+strconv.Itoa(10000+i)+`"`), 1)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/nexo", bytes.NewReader(bodies[i%n]))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		srv.handler.ServeHTTP(w, r)
		if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"Result":"Success"`)) {
			b.Fatalf("status %d: %s", w.Code, w.Body.Bytes())
		}
		i++
	}
}

// BenchmarkPaymentStages measures each step of an approved payment's path in
// the server, on the golden payment: what runs before Journal.Begin (decode,
// validation, request hash), on the engine goroutine once the engine returns
// (receipts), and for Journal.Finish and the answer (journal record, wire
// encoding).
func BenchmarkPaymentStages(b *testing.B) {
	reqBody, err := os.ReadFile("testdata/golden/02_payment.request.json")
	if err != nil {
		b.Fatal(err)
	}
	respBody, err := os.ReadFile("testdata/golden/02_payment.response.json")
	if err != nil {
		b.Fatal(err)
	}
	req, err := JSONCodec{}.DecodeRequest(reqBody)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := JSONCodec{}.DecodeResponse(respBody)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, m, err := JSONCodec{}.decodeWire(reqBody)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := requestFromWire(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if requestHash(req) == "" {
				b.Fatal("no hash")
			}
		}
	})
	b.Run("receipts", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if len(Receipts(resp, "", false)) != 2 {
				b.Fatal("no receipts")
			}
		}
	})
	b.Run("record", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := AppendResponseRecord(nil, resp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("answer", func(b *testing.B) {
		srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true}, Deps{Engine: &fakeEngine{}, Journal: nullJournal{}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if out := srv.encode(&exchange{codec: JSONCodec{}}, http.StatusOK, resp); len(out.body) == 0 {
				b.Fatal("no answer")
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := (JSONCodec{}).EncodeResponse(resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}
