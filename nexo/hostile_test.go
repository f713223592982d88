package nexo

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The tests in this file are the attacks of issue 11 against the server:
// each one gets a clear Nexo error and leaves the server's state bounded.

func decodeField(t *testing.T, c Codec, req *Request) error {
	t.Helper()
	b, err := c.EncodeRequest(req)
	require.NoError(t, err)
	_, err = c.DecodeRequest(b)
	return err
}

func TestFieldLengthsAtDecode(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name  string
		req   func() *Request
		field string // "" when accepted
	}{
		{"ServiceID of 10 é is 10 characters", func() *Request { return paymentReq(strings.Repeat("é", 10), "KB", 100) }, ""},
		{"ServiceID of 11 characters", func() *Request { return paymentReq(strings.Repeat("é", 11), "KB", 100) }, "MessageHeader.ServiceID"},
		{"SaleID of 35 characters", func() *Request { r := diagnosisReq("1"); r.Header.SaleID = long(35); return r }, ""},
		{"SaleID of 60 KB", func() *Request { r := diagnosisReq("1"); r.Header.SaleID = long(60 << 10); return r }, "MessageHeader.SaleID"},
		{"POIID", func() *Request { r := diagnosisReq("1"); r.Header.POIID = long(36); return r }, "MessageHeader.POIID"},
		{"DeviceID", func() *Request { r := diagnosisReq("1"); r.Header.DeviceID = long(11); return r }, "MessageHeader.DeviceID"},
		{"SaleTransactionID", func() *Request { r := paymentReq("1", "KB", 1); r.Payment.SaleTransactionID.ID = long(65); return r }, "SaleTransactionID.TransactionID"},
		{"POI transaction id (a UUID)", func() *Request {
			return &Request{Header: testHeader(CategoryReversal, "1"), Reversal: &ReversalRequest{
				OriginalPOITransactionID: TransactionID{ID: "6b3c2f1e-7a53-4c8e-9d0b-2f4f1f6f9a10"}, Reason: "MerchantCancel"}}
		}, ""},
		{"SaleReferenceID", func() *Request { r := paymentReq("1", "KB", 1); r.Payment.SaleReferenceID = long(36); return r }, "SaleReferenceID"},
		{"brand", func() *Request { return paymentReq("1", long(36), 1) }, "AllowedPaymentBrand"},
		{"too many brands", func() *Request {
			r := paymentReq("1", "KB", 1)
			for range 16 {
				r.Payment.AllowedBrands = append(r.Payment.AllowedBrands, "KB")
			}
			return r
		}, "AllowedPaymentBrand"},
		{"instrument type", func() *Request { r := paymentReq("1", "KB", 1); r.Payment.InstrumentType = long(36); return r }, "PaymentInstrumentType"},
		{"reference ServiceID", func() *Request { return statusReq("1", long(11)) }, "MessageReference.ServiceID"},
		{"reference SaleID", func() *Request {
			r := statusReq("1", "2")
			r.TransactionStatus.MessageReference.SaleID = long(36)
			return r
		}, "MessageReference.SaleID"},
		{"abort reason", func() *Request { r := abortReq("1", "2"); r.Abort.AbortReason = long(257); return r }, "AbortReason"},
		{"display text", func() *Request {
			return &Request{Header: testHeader(CategoryDisplay, "1"), Display: &DisplayRequest{Outputs: []DisplayOutput{{Device: "CustomerDisplay", InfoQualify: "Display", Text: []string{long(2049)}}}}}
		}, "OutputText[0]"},
		{"acquirer ids", func() *Request {
			r := diagnosisReq("1")
			r.Diagnosis.AcquirerIDs = make([]string, 17)
			for i := range r.Diagnosis.AcquirerIDs {
				r.Diagnosis.AcquirerIDs[i] = "a"
			}
			return r
		}, "AcquirerID"},
		{"event details", func() *Request {
			r := &Request{Header: testHeader(CategoryEvent, "1"), Event: &EventNotification{TimeStamp: testEpoch, EventToNotify: "Shutdown", EventDetails: long(1025)}}
			r.Header.Class, r.Header.Type = ClassEvent, TypeNotification
			return r
		}, "EventDetails"},
		{"login software", func() *Request {
			return &Request{Header: testHeader(CategoryLogin, "1"), Login: &LoginRequest{DateTime: testEpoch, OperatorLanguage: "en",
				SaleSoftware: SaleSoftware{ManufacturerID: long(36), ApplicationName: "a", SoftwareVersion: "1"}}}
		}, "ManufacturerID"},
	}
	for _, tc := range tests {
		for _, c := range []Codec{JSONCodec{}, XMLCodec{}} {
			t.Run(tc.name+"/"+c.ContentType(), func(t *testing.T) {
				err := decodeField(t, c, tc.req())
				if tc.field == "" {
					require.NoError(t, err)
					return
				}
				var ne *Error
				require.ErrorAs(t, err, &ne)
				require.Equal(t, MessageFormat, ne.Condition)
				require.Contains(t, ne.Text, tc.field)
				require.Less(t, len(ne.Text), 200, "the error does not echo the value")
			})
		}
	}
}

func TestXMLRefusesTrailingContentAndDTD(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "golden", "06_diagnosis.request.xml"))
	require.NoError(t, err)
	_, err = XMLCodec{}.DecodeRequest(append(append([]byte(nil), golden...), " \n\t"...))
	require.NoError(t, err, "trailing white space is fine")
	for name, body := range map[string][]byte{
		"second root":   append(append([]byte(nil), golden...), "<SaleToPOIRequest/>"...),
		"trailing text": append(append([]byte(nil), golden...), "garbage"...),
		"entity expansion": []byte(`<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>` +
			`<SaleToPOIRequest><MessageHeader SaleID="&lol2;"/></SaleToPOIRequest>`),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := XMLCodec{}.DecodeRequest(body)
			var ne *Error
			require.ErrorAs(t, err, &ne)
			require.Equal(t, MessageFormat, ne.Condition)
		})
	}
	// JSON refuses the same.
	gj, err := os.ReadFile(filepath.Join("testdata", "golden", "06_diagnosis.request.json"))
	require.NoError(t, err)
	_, err = JSONCodec{}.DecodeRequest(append(gj, `{}`...))
	require.Error(t, err)
}

// levelRecorder records the levels of log records.
type levelRecorder struct {
	mu     sync.Mutex
	errors []string
}

func (l *levelRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *levelRecorder) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		l.mu.Lock()
		l.errors = append(l.errors, r.Message)
		l.mu.Unlock()
	}
	return nil
}
func (l *levelRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levelRecorder) WithGroup(string) slog.Handler      { return l }

func TestEventClassWithAnotherCategory(t *testing.T) {
	rec := &levelRecorder{}
	env := startServer(t, ServerConfig{}, &testEnv{log: slog.New(rec)})
	body := `{"SaleToPOIRequest":{"MessageHeader":{"ProtocolVersion":"3.0","MessageClass":"Event","MessageCategory":"Diagnosis","MessageType":"Notification","ServiceID":"1","SaleID":"POS1","POIID":"` + testPOIID + `"},"DiagnosisRequest":{}}}`
	resp, err := http.Post(env.url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r, err := JSONCodec{}.DecodeResponse(b)
	require.NoError(t, err, string(b))
	require.Equal(t, Failure, r.Status.Result)
	require.Equal(t, MessageFormat, r.Status.ErrorCondition)
	require.Contains(t, r.Status.AdditionalResponse, "MessageClass")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Empty(t, rec.errors, "no panic, no ERROR log")
}

func loginReq(saleID, serviceID string) *Request {
	r := &Request{Header: testHeader(CategoryLogin, serviceID), Login: &LoginRequest{
		DateTime: testEpoch, SaleSoftware: SaleSoftware{ManufacturerID: "Acme", ApplicationName: "POS", SoftwareVersion: "1"}, OperatorLanguage: "en",
	}}
	r.Header.SaleID = saleID
	return r
}

func TestLoggedInSaleIDsBounded(t *testing.T) {
	env := startServer(t, ServerConfig{Strict: true, MaxLoggedIn: 3}, nil)
	c := env.client(nil, nil)
	ctx := testCtx(t)
	for i := range 300 {
		resp, err := c.Do(ctx, loginReq(fmt.Sprintf("POS-%03d-%s", i, strings.Repeat("x", 27)), "1"))
		requireSuccess(t, resp, err)
	}
	st := env.srv.Stats()
	require.Equal(t, 3, st.LoggedIn)
	require.EqualValues(t, 297, st.LoginsEvicted)

	// The newest are logged in; the oldest were logged out.
	d := diagnosisReq("2")
	d.Header.SaleID = fmt.Sprintf("POS-%03d-%s", 299, strings.Repeat("x", 27))
	resp, err := c.Do(ctx, d)
	requireSuccess(t, resp, err)
	require.Equal(t, []string{d.Header.SaleID}, resp.Diagnosis.LoggedSaleIDs, "Diagnosis names the caller only")
	d.Header.SaleID = fmt.Sprintf("POS-%03d-%s", 0, strings.Repeat("x", 27))
	resp, err = c.Do(ctx, d)
	requireFailure(t, resp, err, LoggedOut)
}

// Connections just accepted are not evicted: with the cap reached by two of
// them, one more is closed at once.
func TestConnectionsBounded(t *testing.T) {
	env := startServer(t, ServerConfig{MaxConns: 2}, &testEnv{tune: func(s *Server) { s.conns.newGrace = time.Hour }})
	addr := strings.TrimSuffix(strings.TrimPrefix(env.url, "http://"), "/nexo")
	var held []net.Conn
	for range 2 {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		held = append(held, conn)
	}
	// Wait until both are accepted.
	require.Eventually(t, func() bool { return env.srv.Stats().Conns == 2 }, 5*time.Second, 5*time.Millisecond)
	extra, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	require.NoError(t, extra.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = extra.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "a connection past the cap is closed at once")
	extra.Close()
	require.EqualValues(t, 1, env.srv.Stats().ConnsRefused)

	for _, c := range held {
		c.Close()
	}
	require.Eventually(t, func() bool { return env.srv.Stats().Conns == 0 }, 5*time.Second, 5*time.Millisecond)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := (&Client{URL: env.url, HTTP: hc}).Do(testCtx(t), diagnosisReq("1"))
	requireSuccess(t, resp, err)
}

func TestAbortAndStatusBoundToCaller(t *testing.T) {
	env := startServer(t, ServerConfig{}, &testEnv{engine: &fakeEngine{started: make(chan string, 4)}})
	c := env.client(nil, nil)
	ctx := testCtx(t)
	running := payAsync(t, env, c, paymentReq("A1", "BLOCK", 100))

	other := func(r *Request) *Request { r.Header.SaleID = "POS2"; return r }
	// POS2 names POS1's payment: nothing happens, nothing is told.
	resp, err := c.Do(ctx, other(abortReq("X1", "A1")))
	require.NoError(t, err)
	require.Nil(t, resp)
	resp, err = c.Do(ctx, other(statusReq("S1", "A1")))
	requireFailure(t, resp, err, NotFound)
	require.NotContains(t, resp.Status.AdditionalResponse, "POS1")
	resp, err = c.Do(ctx, other(statusReq("S2", "")))
	requireFailure(t, resp, err, NotFound)
	busy, err := c.Do(ctx, other(paymentReq("B1", "KB", 100)))
	requireFailure(t, busy, err, Busy)
	require.NotContains(t, busy.Status.AdditionalResponse, "POS1")
	require.NotContains(t, busy.Status.AdditionalResponse, "A1")

	select {
	case r := <-running:
		t.Fatalf("POS2 aborted POS1's payment: %+v", r.Status)
	case <-time.After(50 * time.Millisecond):
	}
	// POS1 still aborts its own.
	resp, err = c.Do(ctx, abortReq("X2", "A1"))
	require.NoError(t, err)
	require.Nil(t, resp)
	require.Equal(t, Aborted, waitResponse(t, running).Status.ErrorCondition)
	// And POS2 still cannot read it.
	resp, err = c.Do(ctx, other(statusReq("S3", "A1")))
	requireFailure(t, resp, err, NotFound)
	resp, err = c.Do(ctx, statusReq("S4", "A1"))
	requireSuccess(t, resp, err)
}

func protectedPost(t *testing.T, url string, hc *http.Client, body []byte) (int, []byte) {
	t.Helper()
	resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func TestProtectedReplaysRefused(t *testing.T) {
	key, err := NewKey("mykey", 1, "mysupersecretpassphrase")
	require.NoError(t, err)
	env := startServer(t, ServerConfig{Key: key, ReplayWindow: time.Hour, ServiceIDWindow: 3 * time.Hour}, nil)
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, req := range []*Request{loginReq("POS1", "L1"), diagnosisReq("D1"), abortReq("A1", "P1")} {
		t.Run(string(req.Header.Category), func(t *testing.T) {
			sealed, err := sealRequest(JSONCodec{}, key, req)
			require.NoError(t, err)
			status, _ := protectedPost(t, env.url, hc, sealed)
			require.Equal(t, http.StatusOK, status)
			status, b := protectedPost(t, env.url, hc, sealed)
			require.Equal(t, http.StatusUnauthorized, status)
			require.Contains(t, string(b), "replayed")
		})
	}
	// A payment replayed once its nonce is forgotten gets the stored
	// response (its ServiceID is still reserved), not a second payment; past
	// the ServiceID window it is refused by its age.
	pay := paymentReq("P2", "KB", 100)
	sealed, err := sealRequest(JSONCodec{}, key, pay)
	require.NoError(t, err)
	status, first := protectedPost(t, env.url, hc, sealed)
	require.Equal(t, http.StatusOK, status)
	env.clock.Advance(2 * time.Hour)
	status, again := protectedPost(t, env.url, hc, sealed)
	require.Equal(t, http.StatusOK, status)
	r1, err := (&Client{Key: key}).decode(JSONCodec{}, first)
	require.NoError(t, err)
	r2, err := (&Client{Key: key}).decode(JSONCodec{}, again)
	require.NoError(t, err)
	require.Equal(t, r1, r2)
	require.Equal(t, 1, env.engine.calls())
	env.clock.Advance(2 * time.Hour)
	status, b := protectedPost(t, env.url, hc, sealed)
	require.Equal(t, http.StatusUnauthorized, status)
	resp, err := (&Client{Key: key}).decode(JSONCodec{}, b)
	require.NoError(t, err)
	require.Equal(t, NotAllowed, resp.Status.ErrorCondition)
	require.Contains(t, resp.Status.AdditionalResponse, "SaleTransactionID.TimeStamp")
	require.Equal(t, 1, env.engine.calls())
}

func TestNonceCacheBounded(t *testing.T) {
	c := newNonceCache(100, time.Minute)
	now := testEpoch
	nonce := func(i int) (n [ivLen]byte) { copy(n[:], fmt.Sprintf("%016d", i)); return n }
	for i := range 10_000 {
		require.True(t, c.add(nonce(i), now))
		require.LessOrEqual(t, c.len(), 100)
		require.Len(t, c.queue, 100)
	}
	require.False(t, c.add(nonce(9999), now), "a recent nonce is remembered")
	require.False(t, c.add(nonce(9900), now), "the 100 newest are")
	require.True(t, c.add(nonce(9899), now), "the oldest was forgotten for the newer")
	require.True(t, c.add(nonce(9999), now.Add(2*time.Minute)), "past the window it is forgotten")
	require.Equal(t, 1, c.len())
	// A clock going back does not make the cache forget a nonce early.
	require.True(t, c.add(nonce(1), now))
	require.False(t, c.add(nonce(1), now))
}

// The nonce cache takes its whole size when made: serving messages, however
// many, allocates nothing more (what a flood costs is known at start).
func TestNonceCacheAllocatedOnce(t *testing.T) {
	c := newNonceCache(4096, time.Hour)
	require.Nil(t, c.seen, "nothing until a protected message verified (a server without a key never pays)")
	now := testEpoch
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	add := func(i uint64) bool {
		var n [ivLen]byte
		binary.BigEndian.PutUint64(n[8:], i)
		return c.add(n, now)
	}
	require.True(t, add(0))
	runtime.ReadMemStats(&ms)
	require.Less(t, ms.TotalAlloc-before, uint64(224<<10), "the README's about 210 KiB for 4,096 nonces")
	before = ms.TotalAlloc
	refused := 0
	for i := range uint64(20_000) {
		if !add(i + 1) {
			refused++
		}
	}
	runtime.ReadMemStats(&ms)
	require.Zero(t, refused)
	require.Less(t, ms.TotalAlloc-before, uint64(4<<10), "bytes allocated by 20,000 adds")
	require.Equal(t, 4096, c.len())
}

// sealRaw encrypts buf (already padded, or deliberately not) with the key's
// CBC parameters.
func sealRaw(k *Key, buf, nonce []byte) []byte {
	b, iv, _ := k.block(nonce)
	out := make([]byte, len(buf))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, buf)
	return out
}

// TestOpenComputesEveryMACWhateverThePadding fails if open short-circuits on
// bad padding: the HMACs computed are counted, and must be the same for bad
// padding, good padding with a bad MAC, and a good message.
func TestOpenComputesEveryMACWhateverThePadding(t *testing.T) {
	k, err := NewKey("mykey", 1, "mysupersecretpassphrase")
	require.NoError(t, err)
	k.macRuns = &atomic.Int64{}
	nonce := make([]byte, ivLen)
	plain := bytes.Repeat([]byte("p"), 100)
	goodBlob, goodMAC, err := k.seal(plain, nonce)
	require.NoError(t, err)
	badMAC := append([]byte(nil), goodMAC...)
	badMAC[0] ^= 1
	badPadBuf := bytes.Repeat([]byte("p"), 112) // last byte 'p' = 0x70: not a padding
	zeroPad := append(bytes.Repeat([]byte("p"), 111), 0)
	cases := []struct {
		name      string
		blob, mac []byte
		ok        bool
	}{
		{"good", goodBlob, goodMAC, true},
		{"good padding, bad MAC", goodBlob, badMAC, false},
		{"bad padding", sealRaw(k, badPadBuf, nonce), goodMAC, false},
		{"zero padding", sealRaw(k, zeroPad, nonce), goodMAC, false},
		{"inconsistent padding", sealRaw(k, append(bytes.Repeat([]byte("p"), 110), 1, 2), nonce), goodMAC, false},
	}
	var errText string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := k.macRuns.Load()
			got, err := k.open(tc.blob, nonce, tc.mac)
			require.EqualValues(t, aes.BlockSize, k.macRuns.Load()-before, "every HMAC is computed")
			if tc.ok {
				require.NoError(t, err)
				require.Equal(t, plain, got)
				return
			}
			require.Error(t, err)
			if errText == "" {
				errText = err.Error()
			}
			require.Equal(t, errText, err.Error(), "one error for every failure")
		})
	}
}

// BenchmarkOpenPaddingTiming measures open on bad padding and on good
// padding with a bad MAC, interleaved, and reports both medians and their
// difference. It fails when the difference is above the noise: 5% of the
// median, or 2 µs.
func BenchmarkOpenPaddingTiming(b *testing.B) {
	k, err := NewKey("mykey", 1, "mysupersecretpassphrase")
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, ivLen)
	plain := bytes.Repeat([]byte("p"), 1500) // a typical payment request
	blob, mac, _ := k.seal(plain, nonce)
	badMAC := append([]byte(nil), mac...)
	badMAC[0] ^= 1
	padded := make([]byte, len(blob))
	copy(padded, bytes.Repeat([]byte("p"), len(blob)))
	badPad := sealRaw(k, padded, nonce)
	var pad, macd []time.Duration
	for b.Loop() {
		for _, bad := range []bool{true, false} {
			start := time.Now()
			if bad {
				_, _ = k.open(badPad, nonce, mac)
				pad = append(pad, time.Since(start))
			} else {
				_, _ = k.open(blob, nonce, badMAC)
				macd = append(macd, time.Since(start))
			}
		}
	}
	mp, mm := median(pad), median(macd)
	diff := mm - mp
	b.ReportMetric(float64(mp.Nanoseconds()), "badpad-ns")
	b.ReportMetric(float64(mm.Nanoseconds()), "badmac-ns")
	b.ReportMetric(float64(diff.Nanoseconds()), "diff-ns")
	if len(pad) >= 100 {
		limit := max(2*time.Microsecond, mp/20)
		if diff > limit || -diff > limit {
			b.Fatalf("open takes %s on bad padding and %s on a bad MAC: %s apart, above the %s noise", mp, mm, diff, limit)
		}
	}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}

func TestCBCSuitesRefused(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	env := startServer(t, ServerConfig{TLSConfig: srvTLS}, nil)
	addr := strings.TrimSuffix(strings.TrimPrefix(env.url, "https://"), "/nexo")
	dial := func(c *tls.Config) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
		if err == nil {
			conn.Close()
		}
		return err
	}
	for name, suite := range map[string]uint16{
		"ECDHE-ECDSA-AES128-SHA": tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
		"ECDHE-ECDSA-AES256-SHA": tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		"AES256-SHA":             tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	} {
		t.Run(name, func(t *testing.T) {
			c := cliTLS.Clone()
			c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{suite}
			require.Error(t, dial(c))
		})
	}
	t.Run("TLS 1.1", func(t *testing.T) {
		c := cliTLS.Clone()
		c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		require.Error(t, dial(c))
	})
	t.Run("TLS 1.2 AEAD", func(t *testing.T) {
		c := cliTLS.Clone()
		c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		require.NoError(t, dial(c))
	})
	// The caller's config is left as it was.
	require.Nil(t, srvTLS.CipherSuites)
}

// countingBrand is a routed engine that counts its payments.
type countingBrand struct {
	brandEngine
	n *atomic.Int64
}

func (c countingBrand) Pay(ctx context.Context, txn Txn, req PaymentRequest) (PaymentResult, error) {
	c.n.Add(1)
	return c.brandEngine.Pay(ctx, txn, req)
}

// A payment no engine takes is refused before anything runs and journaled
// compactly: its header and the refusal, not the request.
func TestRefusedPaymentJournaledCompactly(t *testing.T) {
	var calls atomic.Int64
	j := NewMemJournal()
	clk := newTestClock()
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true},
		Deps{Engine: NewRouter(countingBrand{brandEngine{"KB"}, &calls}), Journal: j, Now: clk.Now}, nil)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	c := &Client{URL: "http://" + ln.Addr().String() + "/nexo", HTTP: &http.Client{Timeout: 5 * time.Second}}
	ctx := testCtx(t)

	req := paymentReq("R1", "VISA", 100)
	req.Payment.SaleReferenceID = strings.Repeat("r", 35)
	first, err := c.Do(ctx, req)
	requireFailure(t, first, err, PaymentRestriction)
	require.NotEmpty(t, first.Payment.POITransactionID.ID)
	e, ok, err := j.Lookup(ctx, "POS1", "R1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, TxDone, e.State)
	require.Nil(t, e.Request, "the request is not kept")
	require.NotEmpty(t, e.RequestHash)

	again, err := c.Do(ctx, req)
	require.NoError(t, err)
	require.Equal(t, first, again, "a retry gets the same refusal")
	st, err := c.Do(ctx, statusReq("S1", "R1"))
	requireSuccess(t, st, err)
	require.Equal(t, PaymentRestriction, st.TransactionStatus.Repeated.Status.ErrorCondition)
	resp, err := c.Do(ctx, paymentReq("R2", "KB", 100))
	requireSuccess(t, resp, err)
	require.EqualValues(t, 1, calls.Load(), "the engine ran for the accepted payment only")
}

// refusingBrand is a routed engine that refuses refunds up front.
type refusingBrand struct{ countingBrand }

func (refusingBrand) Precheck(req PaymentRequest) error {
	if req.Type == PaymentRefund {
		return Errorf(PaymentRestriction, "no refunds")
	}
	return nil
}

func TestRouterPrecheckDelegates(t *testing.T) {
	var calls atomic.Int64
	r := NewRouter(refusingBrand{countingBrand{brandEngine{"KB"}, &calls}})
	require.NoError(t, r.Precheck(PaymentRequest{AllowedBrands: []string{"KB"}, Type: PaymentNormal}))
	var ne *Error
	require.ErrorAs(t, r.Precheck(PaymentRequest{AllowedBrands: []string{"KB"}, Type: PaymentRefund}), &ne)
	require.Equal(t, "no refunds", ne.Text)
	require.ErrorAs(t, r.Precheck(PaymentRequest{AllowedBrands: []string{"VISA"}}), &ne)
	require.Equal(t, PaymentRestriction, ne.Condition)
	require.Zero(t, calls.Load())
}
