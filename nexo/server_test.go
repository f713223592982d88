package nexo

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func requireFailure(t *testing.T, resp *Response, err error, c ErrorCondition) {
	t.Helper()
	require.NoError(t, err)
	require.NotNil(t, resp)
	require.Equal(t, Failure, resp.Status.Result, resp.Status.AdditionalResponse)
	require.Equal(t, c, resp.Status.ErrorCondition, resp.Status.AdditionalResponse)
	require.NotEmpty(t, resp.Status.AdditionalResponse)
}

func requireSuccess(t *testing.T, resp *Response, err error) {
	t.Helper()
	require.NoError(t, err)
	require.NotNil(t, resp)
	require.Equal(t, Success, resp.Status.Result, "%s %s", resp.Status.ErrorCondition, resp.Status.AdditionalResponse)
}

func diagnosisReq(serviceID string) *Request {
	return &Request{Header: testHeader(CategoryDiagnosis, serviceID), Diagnosis: &DiagnosisRequest{HostDiagnosis: true}}
}

func statusReq(serviceID, ref string) *Request {
	r := &Request{Header: testHeader(CategoryTransactionStatus, serviceID), TransactionStatus: &TransactionStatusRequest{}}
	if ref != "" {
		r.TransactionStatus.MessageReference = &MessageReference{Category: CategoryPayment, SaleID: "POS1", ServiceID: ref}
	}
	return r
}

func abortReq(serviceID, ref string) *Request {
	return &Request{Header: testHeader(CategoryAbort, serviceID), Abort: &AbortRequest{
		MessageReference: MessageReference{Category: CategoryPayment, SaleID: "POS1", ServiceID: ref}, AbortReason: "MerchantAbort",
	}}
}

func TestPOIIDMismatch(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	req := diagnosisReq("1")
	req.Header.POIID = "P400-999"
	resp, err := env.client(nil, nil).Do(testCtx(t), req)
	requireFailure(t, resp, err, NotAllowed)
}

func TestLoginRules(t *testing.T) {
	login := &Request{Header: testHeader(CategoryLogin, "1"), Login: &LoginRequest{
		DateTime: testEpoch, SaleSoftware: SaleSoftware{ManufacturerID: "Acme", ApplicationName: "POS", SoftwareVersion: "1"}, OperatorLanguage: "en",
	}}
	logout := &Request{Header: testHeader(CategoryLogout, "4"), Logout: &LogoutRequest{}}
	t.Run("default serves without login", func(t *testing.T) {
		env := startServer(t, ServerConfig{}, nil)
		c := env.client(nil, nil)
		resp, err := c.Do(testCtx(t), paymentReq("1", "KB", 100))
		requireSuccess(t, resp, err)
	})
	t.Run("strict", func(t *testing.T) {
		env := startServer(t, ServerConfig{Strict: true}, nil)
		c := env.client(nil, nil)
		ctx := testCtx(t)
		resp, err := c.Do(ctx, diagnosisReq("0"))
		requireFailure(t, resp, err, LoggedOut)
		resp, err = c.Do(ctx, paymentReq("0b", "KB", 100))
		requireFailure(t, resp, err, LoggedOut)
		resp, err = c.Do(ctx, login)
		requireSuccess(t, resp, err)
		require.NotNil(t, resp.Login)
		resp, err = c.Do(ctx, diagnosisReq("2"))
		requireSuccess(t, resp, err)
		require.Equal(t, []string{"POS1"}, resp.Diagnosis.LoggedSaleIDs)
		resp, err = c.Do(ctx, paymentReq("3", "KB", 100))
		requireSuccess(t, resp, err)
		resp, err = c.Do(ctx, logout)
		requireSuccess(t, resp, err)
		resp, err = c.Do(ctx, paymentReq("5", "KB", 100))
		requireFailure(t, resp, err, LoggedOut)
	})
}

// payAsync starts a payment and returns its outcome channel once the engine
// has started it.
func payAsync(t *testing.T, env *testEnv, c *Client, req *Request) <-chan *Response {
	t.Helper()
	out := make(chan *Response, 1)
	go func() {
		resp, err := c.Do(context.Background(), req)
		if err != nil {
			t.Errorf("payment: %v", err)
		}
		out <- resp
	}()
	select {
	case <-env.engine.started:
	case <-time.After(10 * time.Second):
		t.Fatal("engine never started the payment")
	}
	return out
}

func waitResponse(t *testing.T, ch <-chan *Response) *Response {
	t.Helper()
	select {
	case r := <-ch:
		require.NotNil(t, r)
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no response")
		return nil
	}
}

func TestBusyAndAbort(t *testing.T) {
	env := startServer(t, ServerConfig{}, &testEnv{engine: &fakeEngine{started: make(chan string, 4)}})
	c := env.client(nil, nil)
	ctx := testCtx(t)

	running := payAsync(t, env, c, paymentReq("A", "BLOCK", 100))

	resp, err := c.Do(ctx, paymentReq("B", "KB", 100))
	requireFailure(t, resp, err, Busy)

	resp, err = c.Do(ctx, statusReq("S1", "A"))
	requireFailure(t, resp, err, InProgress)

	// An Abort naming another transaction does nothing.
	resp, err = c.Do(ctx, abortReq("X1", "B"))
	require.NoError(t, err)
	require.Nil(t, resp)

	resp, err = c.Do(ctx, abortReq("X2", "A"))
	require.NoError(t, err)
	require.Nil(t, resp, "Abort has no response body")

	aborted := waitResponse(t, running)
	require.Equal(t, Failure, aborted.Status.Result)
	require.Equal(t, Aborted, aborted.Status.ErrorCondition)
	require.NotNil(t, aborted.Payment)
	require.Equal(t, "ORD-A", aborted.Payment.SaleTransactionID.ID)
	require.NotEmpty(t, aborted.Payment.POITransactionID.ID)

	// The slot is free again, and the aborted outcome is in the journal.
	go func() { <-env.engine.started }()
	resp, err = c.Do(ctx, paymentReq("C", "KB", 100))
	requireSuccess(t, resp, err)
	resp, err = c.Do(ctx, statusReq("S2", "A"))
	requireSuccess(t, resp, err)
	require.Equal(t, Aborted, resp.TransactionStatus.Repeated.Status.ErrorCondition)

	// Aborting a completed payment changes nothing.
	resp, err = c.Do(ctx, abortReq("X3", "C"))
	require.NoError(t, err)
	require.Nil(t, resp)
	resp, err = c.Do(ctx, statusReq("S3", "C"))
	requireSuccess(t, resp, err)
	require.Equal(t, Success, resp.TransactionStatus.Repeated.Status.Result)
}

func TestDuplicateServiceID(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	c := env.client(nil, nil)
	ctx := testCtx(t)
	first, err := c.Do(ctx, paymentReq("D1", "KB", 1234))
	requireSuccess(t, first, err)

	replay, err := c.Do(ctx, paymentReq("D1", "KB", 1234))
	requireSuccess(t, replay, err)
	require.Equal(t, first, replay, "an identical retry gets the stored response")
	require.Equal(t, 1, env.engine.calls(), "the engine ran once")

	// The same ServiceID over XML is still the same request.
	replay, err = env.client(XMLCodec{}, nil).Do(ctx, paymentReq("D1", "KB", 1234))
	requireSuccess(t, replay, err)
	require.Equal(t, first, replay)

	resp, err := c.Do(ctx, paymentReq("D1", "KB", 999))
	requireFailure(t, resp, err, MessageFormat)
	require.Contains(t, resp.Status.AdditionalResponse, "ServiceID")
	require.Equal(t, 1, env.engine.calls())

	// Another SaleID may use the same ServiceID.
	other := paymentReq("D1", "KB", 999)
	other.Header.SaleID = "POS2"
	resp, err = c.Do(ctx, other)
	requireSuccess(t, resp, err)

	// After 48 h the ServiceID is free again.
	env.clock.Advance(49 * time.Hour)
	resp, err = c.Do(ctx, paymentReq("D1", "KB", 999))
	requireSuccess(t, resp, err)
	require.Equal(t, 3, env.engine.calls())
}

func TestTransactionStatusAfterRestart(t *testing.T) {
	journal := NewMemJournal()
	var paid *Response
	func() {
		env := startServer(t, ServerConfig{}, &testEnv{journal: journal})
		var err error
		paid, err = env.client(nil, nil).Do(testCtx(t), paymentReq("R1", "KB", 500))
		requireSuccess(t, paid, err)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, env.srv.Shutdown(ctx))
	}()

	env := startServer(t, ServerConfig{}, &testEnv{journal: journal})
	c := env.client(XMLCodec{}, nil)
	ctx := testCtx(t)
	for _, ref := range []string{"R1", ""} {
		resp, err := c.Do(ctx, statusReq("T-"+ref, ref))
		requireSuccess(t, resp, err)
		require.Equal(t, paid, resp.TransactionStatus.Repeated)
		require.Equal(t, "R1", resp.TransactionStatus.MessageReference.ServiceID)
	}
	resp, err := c.Do(ctx, statusReq("T2", "nope"))
	requireFailure(t, resp, err, NotFound)

	other := statusReq("T3", "")
	other.Header.SaleID = "POS9"
	resp, err = c.Do(ctx, other)
	requireFailure(t, resp, err, NotFound)
}

func TestEngineOutcomes(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	c := env.client(nil, nil)
	ctx := testCtx(t)
	for brand, cond := range map[string]ErrorCondition{"DECLINE": Refusal, "PANIC": UnreachableHost, "PLAINERR": UnreachableHost} {
		resp, err := c.Do(ctx, paymentReq("E"+brand[:3], brand, 100))
		requireFailure(t, resp, err, cond)
	}
	rev := &Request{Header: testHeader(CategoryReversal, "V1"), Reversal: &ReversalRequest{
		OriginalPOITransactionID: TransactionID{ID: "nope"}, Reason: "MerchantCancel",
	}}
	resp, err := c.Do(ctx, rev)
	requireFailure(t, resp, err, NotFound)
}

func TestPanicInHandler(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	req := &Request{Header: testHeader(CategoryDisplay, "P1"), Display: &DisplayRequest{Outputs: []DisplayOutput{{Device: "CustomerDisplay", InfoQualify: "Display", Text: []string{"PANIC"}}}}}
	resp, err := env.client(nil, nil).Do(testCtx(t), req)
	requireFailure(t, resp, err, UnavailableService)
	// The server still works.
	resp, err = env.client(nil, nil).Do(testCtx(t), diagnosisReq("P2"))
	requireSuccess(t, resp, err)
}

// An engine still running past AbortGrace: the POS is answered InProgress
// (not definitive: no reversal is queued, the engine may yet succeed), under
// the payment's own POI transaction id, and the journal gets the real
// outcome when the engine ends. (Answered UnreachableHost under a made-up id
// before: a POS that took it as a failure and took cash charged twice when
// the payment then succeeded; review, rv-money.)
func TestEngineIgnoringCancellation(t *testing.T) {
	eng := &fakeEngine{ignore: true, release: make(chan struct{})}
	env := startServer(t, ServerConfig{PaymentTimeout: 200 * time.Millisecond, AbortGrace: 100 * time.Millisecond}, &testEnv{engine: eng})
	c := env.client(nil, nil)
	ctx := testCtx(t)
	resp, err := c.Do(ctx, paymentReq("H1", "BLOCK", 100))
	requireFailure(t, resp, err, InProgress)
	require.Equal(t, env.journal.ID("POS1", "H1"), resp.Payment.POITransactionID.ID, "the payment's own POI transaction id")
	require.NotEmpty(t, resp.Payment.POITransactionID.ID)
	// The engine still holds the slot until it returns.
	resp, err = c.Do(ctx, paymentReq("H2", "KB", 100))
	requireFailure(t, resp, err, Busy)
	// Meanwhile TransactionStatus says it is still running: nothing made up.
	status := &Request{Header: testHeader(CategoryTransactionStatus, "Q1"), TransactionStatus: &TransactionStatusRequest{
		MessageReference: &MessageReference{Category: CategoryPayment, ServiceID: "H1", SaleID: "POS1"}}}
	resp, err = c.Do(ctx, status)
	requireFailure(t, resp, err, InProgress)
	close(eng.release)
	// When the engine ends, the journal gets its real outcome.
	require.Eventually(t, func() bool {
		resp, err := c.Do(ctx, status)
		return err == nil && resp.Status.Result == Success && resp.TransactionStatus.Repeated != nil &&
			resp.TransactionStatus.Repeated.Status.Result == Success
	}, 5*time.Second, 10*time.Millisecond, "the late outcome is journaled")
	require.Eventually(t, func() bool {
		resp, err := c.Do(ctx, paymentReq("H3", "KB", 100))
		return err == nil && resp.Status.Result == Success
	}, 5*time.Second, 10*time.Millisecond)
}

func TestRejectAndHTTPErrors(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	for _, body := range []string{"", "not json", `{"foo":1}`, `{"SaleToPOIRequest":{"MessageHeader":{"MessageCategory":"CardAcquisition"}}}`, `<x/>`} {
		resp, err := http.Post(env.url, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Contains(t, string(b), `"EventToNotify":"Reject"`, body)
	}
	// A request whose category is known gets a Failure response naming the field.
	resp, err := http.Post(env.url+"/", "application/json", strings.NewReader(`{"SaleToPOIRequest":{"MessageHeader":{"MessageClass":"Service","MessageCategory":"Payment","MessageType":"Request","ServiceID":"1","SaleID":"S","POIID":"`+testPOIID+`"}}}`))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r, err := JSONCodec{}.DecodeResponse(b)
	require.NoError(t, err)
	require.Equal(t, MessageFormat, r.Status.ErrorCondition)
	require.Contains(t, r.Status.AdditionalResponse, "PaymentRequest")

	// The client surfaces a Reject as MessageFormat.
	_, err = (&Client{URL: env.url}).Do(testCtx(t), &Request{Header: Header{Category: "Bogus"}, Diagnosis: &DiagnosisRequest{}})
	var ne *Error
	require.ErrorAs(t, err, &ne)
	require.Equal(t, MessageFormat, ne.Condition)

	resp, err = http.Get(env.url)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	resp, err = http.Post(strings.TrimSuffix(env.url, "/nexo")+"/other", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestOversizeBody(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	body := `{"SaleToPOIRequest":{"Pad":"` + strings.Repeat("x", 70<<10) + `"}}`
	resp, err := http.Post(env.url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	require.Contains(t, string(b), "Reject")
	require.Contains(t, string(b), "65536")
}

// readBody refuses a declared length over the limit without reading the
// body, reads a declared length into one buffer of that size, and reads a
// body of unknown length as far as the limit.
func TestReadBodyBounds(t *testing.T) {
	const max = 64 << 10
	for _, tc := range []struct {
		name     string
		declared int64 // -1: unknown (chunked)
		size     int
		tooLarge bool
	}{
		{"declared over the limit", 100 << 10, 100 << 10, true},
		{"declared within", 20 << 10, 20 << 10, false},
		{"unknown within", -1, 20 << 10, false},
		{"unknown over the limit", -1, 100 << 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &countingReader{r: strings.NewReader(strings.Repeat("x", tc.size))}
			r := httptest.NewRequest(http.MethodPost, "/nexo", src)
			r.ContentLength = tc.declared
			w := httptest.NewRecorder()
			body, err := readBody(w, r, max)
			if tc.tooLarge {
				var mbe *http.MaxBytesError
				require.ErrorAs(t, err, &mbe)
				require.LessOrEqual(t, src.n, max+1, "read past the limit")
				if tc.declared > max {
					require.LessOrEqual(t, src.n, sniffLen, "a declared length over the limit is refused after its first bytes")
					require.Equal(t, "close", w.Header().Get("Connection"))
				}
				return
			}
			require.NoError(t, err)
			require.Len(t, body, tc.size)
			if tc.declared >= 0 {
				require.Equal(t, tc.size, cap(body), "one buffer of the declared size")
			}
		})
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestSlowlorisBounded(t *testing.T) {
	env := startServer(t, ServerConfig{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 600 * time.Millisecond}, nil)
	addr := strings.TrimSuffix(strings.TrimPrefix(env.url, "http://"), "/nexo")
	for name, send := range map[string]string{
		"headers": "POST /nexo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
		"body":    "POST /nexo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"SaleTo",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer conn.Close()
			_, err = conn.Write([]byte(send))
			require.NoError(t, err)
			start := time.Now()
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
			_, err = io.ReadAll(conn) // returns when the server closes the connection
			var ne net.Error
			require.False(t, errors.As(err, &ne) && ne.Timeout(), "server kept a stalled connection open")
			require.Less(t, time.Since(start), 3*time.Second)
		})
	}
}

func TestServeRefusals(t *testing.T) {
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true}, Deps{Engine: &fakeEngine{}, Journal: NewMemJournal()}, nil)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)
	defer ln.Close()
	require.ErrorContains(t, srv.Serve(ln), "without TLS and a message key")

	srv, err = NewServer(ServerConfig{POIID: testPOIID}, Deps{Engine: &fakeEngine{}, Journal: NewMemJournal()}, nil)
	require.NoError(t, err)
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln2.Close()
	require.ErrorContains(t, srv.Serve(ln2), "TLS config required")

	_, err = NewServer(ServerConfig{}, Deps{Engine: &fakeEngine{}, Journal: NewMemJournal()}, nil)
	require.Error(t, err)
}

func TestMessageSecurityOverHTTPS(t *testing.T) {
	key, err := NewKey("mykey", 1, "mysupersecretpassphrase")
	require.NoError(t, err)
	wrong, err := NewKey("mykey", 1, "guess")
	require.NoError(t, err)
	srvTLS, cliTLS := testTLS(t)
	env := startServer(t, ServerConfig{TLSConfig: srvTLS, Key: key}, nil)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cliTLS}}
	ctx := testCtx(t)

	for _, codec := range []Codec{JSONCodec{}, XMLCodec{}} {
		c := &Client{URL: env.url, HTTP: hc, Codec: codec, Key: key}
		resp, err := c.Do(ctx, diagnosisReq("K1"))
		requireSuccess(t, resp, err)
		require.Equal(t, 3, resp.Diagnosis.OutboxDepth)
	}

	// The wire really is protected both ways.
	plain, err := JSONCodec{}.EncodeRequest(diagnosisReq("K2"))
	require.NoError(t, err)
	sealed, err := sealRequest(JSONCodec{}, key, diagnosisReq("K2"))
	require.NoError(t, err)
	require.NotContains(t, string(sealed), "DiagnosisRequest")
	hr, err := hc.Post(env.url, "application/json", bytes.NewReader(sealed))
	require.NoError(t, err)
	b, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	require.Equal(t, http.StatusOK, hr.StatusCode)
	require.Contains(t, string(b), "NexoBlob")
	require.NotContains(t, string(b), "DiagnosisResponse")

	refusals := map[string][]byte{"no key": plain}
	wrongSealed, err := sealRequest(JSONCodec{}, wrong, diagnosisReq("K3"))
	require.NoError(t, err)
	refusals["wrong key"] = wrongSealed
	_, m, err := JSONCodec{}.decodeWire(sealed)
	require.NoError(t, err)
	mac, _ := base64.StdEncoding.DecodeString(m.SecurityTrailer.Hmac)
	mac[5] ^= 0x40
	m.SecurityTrailer.Hmac = base64.StdEncoding.EncodeToString(mac)
	refusals["tampered hmac"], err = JSONCodec{}.encodeWire(rootRequest, m)
	require.NoError(t, err)
	for name, body := range refusals {
		t.Run(name, func(t *testing.T) {
			hr, err := hc.Post(env.url, "application/json", bytes.NewReader(body))
			require.NoError(t, err)
			b, _ := io.ReadAll(hr.Body)
			hr.Body.Close()
			require.Equal(t, http.StatusUnauthorized, hr.StatusCode)
			r, err := JSONCodec{}.DecodeResponse(b)
			require.NoError(t, err)
			require.Equal(t, NotAllowed, r.Status.ErrorCondition)
			require.Contains(t, r.Status.AdditionalResponse, "crypto error")
		})
	}

	// The client reports a refusal as an error wrapping the Nexo failure.
	_, err = (&Client{URL: env.url, HTTP: hc, Key: wrong}).Do(ctx, diagnosisReq("K4"))
	var ne *Error
	require.ErrorAs(t, err, &ne)
	require.Equal(t, NotAllowed, ne.Condition)

	// A server without a key refuses protected messages rather than guess.
	env2 := startServer(t, ServerConfig{}, nil)
	_, err = (&Client{URL: env2.url, Key: key}).Do(ctx, diagnosisReq("K5"))
	require.ErrorAs(t, err, &ne)
	require.Equal(t, NotAllowed, ne.Condition)
}

func TestNotify(t *testing.T) {
	got := make(chan *Request, 1)
	pos := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req, err := JSONCodec{}.DecodeRequest(b)
		if err != nil {
			t.Errorf("event: %v", err)
		}
		got <- req
	}))
	defer pos.Close()
	env := startServer(t, ServerConfig{EventURL: pos.URL + "/events"}, nil)
	ctx := testCtx(t)
	require.NoError(t, env.srv.Notify(ctx, EventNotification{EventToNotify: "Shutdown", EventDetails: "maintenance"}))
	req := <-got
	require.Equal(t, CategoryEvent, req.Header.Category)
	require.Equal(t, TypeNotification, req.Header.Type)
	require.Equal(t, "Shutdown", req.Event.EventToNotify)
	require.Equal(t, testEpoch, req.Event.TimeStamp)

	// An unreachable POS: the event goes to the outbox, ready to redeliver.
	pos.Close()
	require.NoError(t, env.srv.Notify(ctx, EventNotification{EventToNotify: "OutOfOrder"}))
	require.Len(t, env.outbox.events, 1)
	ev := env.outbox.events[0]
	require.Equal(t, pos.URL+"/events", ev.URL)
	queued, err := JSONCodec{}.DecodeRequest(ev.Body)
	require.NoError(t, err)
	require.Equal(t, "OutOfOrder", queued.Event.EventToNotify)
}

func TestRouter(t *testing.T) {
	r := NewRouter(brandEngine{"KB"}, brandEngine{"PTI"})
	res, err := r.Pay(context.Background(), Txn{}, PaymentRequest{AllowedBrands: []string{"PTI"}})
	require.NoError(t, err)
	require.Equal(t, "PTI", res.Brand)
	_, err = r.Pay(context.Background(), Txn{}, PaymentRequest{AllowedBrands: []string{"VISA"}})
	var ne *Error
	require.ErrorAs(t, err, &ne)
	require.Equal(t, PaymentRestriction, ne.Condition)
	require.Contains(t, ne.Text, "VISA")
	_, err = r.Reverse(context.Background(), Txn{}, ReversalRequest{OriginalPOITransactionID: TransactionID{ID: "PTI-1"}})
	require.NoError(t, err)
	_, err = r.Reverse(context.Background(), Txn{}, ReversalRequest{OriginalPOITransactionID: TransactionID{ID: "X-1"}})
	require.ErrorAs(t, err, &ne)
	require.Equal(t, NotFound, ne.Condition)
}

type brandEngine struct{ brand string }

func (b brandEngine) Accepts(req PaymentRequest) bool {
	return len(req.AllowedBrands) > 0 && req.AllowedBrands[0] == b.brand
}
func (b brandEngine) Pay(context.Context, Txn, PaymentRequest) (PaymentResult, error) {
	return PaymentResult{Brand: b.brand}, nil
}
func (b brandEngine) Reverse(_ context.Context, _ Txn, req ReversalRequest) (ReversalResult, error) {
	if !strings.HasPrefix(req.OriginalPOITransactionID.ID, b.brand+"-") {
		return ReversalResult{}, Errorf(NotFound, "not mine")
	}
	return ReversalResult{}, nil
}

// A payment may run longer than WriteTimeout (PaymentTimeout, then up to
// AbortGrace for a paid payment's confirmation): its answer still arrives.
// net/http's write deadline is set when the request is read; the server sets
// it again once the answer is ready. (Before, the agent's write timeout,
// PaymentTimeout + 15 s, cut off any answer given in AbortGrace's last 30 s:
// the POS got a broken connection instead of its Success; review, rv-money.)
func TestAnswerOutlastingWriteTimeoutArrives(t *testing.T) {
	eng := &fakeEngine{ignore: true, release: make(chan struct{})}
	env := startServer(t, ServerConfig{PaymentTimeout: 5 * time.Second, AbortGrace: 5 * time.Second, WriteTimeout: 200 * time.Millisecond}, &testEnv{engine: eng})
	time.AfterFunc(700*time.Millisecond, func() { close(eng.release) })
	resp, err := env.client(nil, nil).Do(testCtx(t), paymentReq("W1", "BLOCK", 100))
	requireSuccess(t, resp, err)
}
