package nexo

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func (e *testEnv) client5() *Client {
	return &Client{URL: e.url, HTTP: &http.Client{Timeout: 10 * time.Second}, Codec: JSON5Codec{Now: e.clock.Now}}
}

func status5Req(serviceID, saleID string, ref *MessageReference) *Request {
	h := testHeader(CategoryTransactionStatus, serviceID)
	h.SaleID = saleID
	return &Request{Header: h, TransactionStatus: &TransactionStatusRequest{MessageReference: ref}}
}

// TestV5And3Interleaved runs v5 and 3.x payments on one server and checks
// that they share the journal, the ServiceID rules and TransactionStatus /
// MessageStatus in both directions.
func TestV5And3Interleaved(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	ctx := testCtx(t)
	c3, c5 := env.client(JSONCodec{}, nil), env.client5()

	pay := func(c *Client, saleID, serviceID string, minor int64) *Response {
		req := paymentReq(serviceID, "KB", minor)
		req.Header.SaleID = saleID
		resp, err := c.Do(ctx, req)
		require.NoError(t, err)
		require.Equal(t, Success, resp.Status.Result, resp.Status.AdditionalResponse)
		return resp
	}
	r5a := pay(c5, "POS5", "1", 1000)
	r3a := pay(c3, "POS3", "1", 2000)
	r5b := pay(c5, "POS5", "2", 3000)
	r3b := pay(c3, "POS3", "2", 4000)
	require.Equal(t, 4, env.engine.calls())
	for _, r := range []*Response{r5a, r3a, r5b, r3b} {
		require.NotEmpty(t, r.Payment.POITransactionID.ID)
	}
	require.Equal(t, int64(3000), r5b.Payment.Result.AuthorizedAmount.Minor)

	// The same v5 exchange again (a POS that lost the answer) is replayed
	// from the journal, not charged twice.
	again := pay(c5, "POS5", "2", 3000)
	require.Equal(t, r5b.Payment, again.Payment)
	require.Equal(t, 4, env.engine.calls())
	// The same ExchangeIdentification with another content is refused.
	req := paymentReq("2", "KB", 3001)
	req.Header.SaleID = "POS5"
	resp, err := c5.Do(ctx, req)
	require.NoError(t, err)
	require.Equal(t, Failure, resp.Status.Result)
	require.Equal(t, MessageFormat, resp.Status.ErrorCondition)
	require.Contains(t, resp.Status.AdditionalResponse, "already used")
	require.Equal(t, 4, env.engine.calls())

	// 3.x TransactionStatus of a v5 payment, and v5 MessageStatus of a 3.x
	// payment, answer from the same journal.
	st, err := c3.Do(ctx, status5Req("s1", "POS5", &MessageReference{Category: CategoryPayment, ServiceID: "1"}))
	require.NoError(t, err)
	require.Equal(t, Success, st.Status.Result)
	require.Equal(t, r5a.Payment.POITransactionID, st.TransactionStatus.Repeated.Payment.POITransactionID)
	require.Equal(t, int64(1000), st.TransactionStatus.Repeated.Payment.Result.AuthorizedAmount.Minor)

	st, err = c5.Do(ctx, status5Req("s2", "POS3", &MessageReference{Category: CategoryPayment, ServiceID: "2"}))
	require.NoError(t, err)
	require.Equal(t, Success, st.Status.Result)
	require.Equal(t, Success, st.TransactionStatus.Repeated.Status.Result)
	require.Equal(t, r3b.Payment.POITransactionID, st.TransactionStatus.Repeated.Payment.POITransactionID)
	require.Equal(t, int64(4000), st.TransactionStatus.Repeated.Payment.Result.AuthorizedAmount.Minor)

	// Last transaction of the caller's SaleID when no reference is given.
	st, err = c5.Do(ctx, status5Req("s3", "POS5", nil))
	require.NoError(t, err)
	require.Equal(t, Success, st.Status.Result)
	require.Equal(t, r5b.Payment.POITransactionID, st.TransactionStatus.Repeated.Payment.POITransactionID)

	st, err = c5.Do(ctx, status5Req("s4", "POS5", &MessageReference{Category: CategoryPayment, ServiceID: "99"}))
	require.NoError(t, err)
	require.Equal(t, Failure, st.Status.Result)
	require.Equal(t, NotFound, st.Status.ErrorCondition)

	// The journal holds the v5 requests as the model, whatever their
	// envelope, which recovery after a restart reads.
	e, found, err := env.journal.Lookup(ctx, "POS5", "1")
	require.NoError(t, err)
	require.True(t, found)
	require.NotNil(t, e.Request)
	require.Equal(t, int64(1000), e.Request.Payment.Amount.Minor)
}

// TestV5AbortAndBusy: a v5 payment in progress makes a 3.x one Busy, its
// MessageStatus InProgress; a v5 Abort cancels it, and MessageStatus then
// repeats the Aborted outcome.
func TestV5AbortAndBusy(t *testing.T) {
	env := startServer(t, ServerConfig{}, &testEnv{engine: &fakeEngine{started: make(chan string, 1)}})
	ctx := testCtx(t)
	c3, c5 := env.client(JSONCodec{}, nil), env.client5()

	type result struct {
		resp *Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := c5.Do(ctx, paymentReq("10", "BLOCK", 500))
		done <- result{r, err}
	}()
	select {
	case <-env.engine.started:
	case <-ctx.Done():
		t.Fatal("payment did not start")
	}

	busy, err := c3.Do(ctx, paymentReq("11", "KB", 100))
	require.NoError(t, err)
	require.Equal(t, Busy, busy.Status.ErrorCondition)

	st, err := c5.Do(ctx, status5Req("12", "POS1", &MessageReference{Category: CategoryPayment, ServiceID: "10"}))
	require.NoError(t, err)
	require.Equal(t, InProgress, st.Status.ErrorCondition)

	abort := &Request{Header: testHeader(CategoryAbort, "13"), Abort: &AbortRequest{
		MessageReference: MessageReference{Category: CategoryPayment, ServiceID: "10", SaleID: "POS1"}, AbortReason: "Customer left",
	}}
	ar, err := c5.Do(ctx, abort)
	require.NoError(t, err)
	require.Nil(t, ar, "Abort has no response message")

	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("aborted payment did not answer")
	}
	require.NoError(t, r.err)
	require.Equal(t, Failure, r.resp.Status.Result)
	require.Equal(t, Aborted, r.resp.Status.ErrorCondition)

	st, err = c5.Do(ctx, status5Req("14", "POS1", &MessageReference{Category: CategoryPayment, ServiceID: "10"}))
	require.NoError(t, err)
	require.Equal(t, Success, st.Status.Result)
	require.Equal(t, Failure, st.TransactionStatus.Repeated.Status.Result)
	require.Equal(t, Aborted, st.TransactionStatus.Repeated.Status.ErrorCondition)
}

// decodeReply5 decodes a raw v5 answer into its root name and content.
func decodeReply5(t *testing.T, b []byte) (string, *wire5Message) {
	t.Helper()
	root, m, e := decode5(b)
	require.Nil(t, e, string(b))
	return root, m
}

// TestV5Refusals: every failure is a v5 message (a FAIL response or a
// casp.013 rejection), never a 3.x one and never HTTP 500.
func TestV5Refusals(t *testing.T) {
	login, err := JSON5Codec{Now: newTestClock().Now}.EncodeRequest(&Request{Header: testHeader(CategoryLogin, "1"), Login: &LoginRequest{
		DateTime: testEpoch, SaleSoftware: SaleSoftware{ManufacturerID: "m", ApplicationName: "a", SoftwareVersion: "1"}, OperatorLanguage: "en",
	}})
	require.NoError(t, err)
	payment, err := JSON5Codec{Now: newTestClock().Now}.EncodeRequest(paymentReq("2", "KB", 100))
	require.NoError(t, err)

	key, err := NewKey("mykey", 1, "mysupersecretpassphrase")
	require.NoError(t, err)
	tests := []struct {
		name    string
		cfg     ServerConfig
		body    string
		status  int
		root    string
		reason  string         // RejectReason of a rejection
		cond    ErrorCondition // ResponseReason of a FAIL response
		details string
	}{
		{"bad JSON", ServerConfig{}, `{"SaleToPOIServiceRequest": {"Header": `, 200, root5Rejection, rejectParsing, "", "invalid JSON"},
		{"unsupported v5 message", ServerConfig{}, `{"SaleToPOIAdminRequest": {"Header": {}}}`, 200, root5Rejection, rejectParsing, "", "not a supported Nexo v5 message"},
		{"response sent as request", ServerConfig{}, `{"SaleToPOIServiceResponse": {"Header": {"MessageFunction": "SFSP"}}}`, 200, root5Rejection, rejectMessageType, "", "not a request"},
		{"two roots", ServerConfig{}, `{"SaleToPOIAbort": {}, "SaleToPOIServiceRequest": {}}`, 200, root5Rejection, rejectParsing, "", "both"},
		{"wrong type", ServerConfig{}, `{"SaleToPOIServiceRequest": {"Header": {"ExchangeIdentification": 12}}}`, 200, root5Rejection, rejectParsing, "", "ExchangeIdentification"},
		{"other POI", ServerConfig{POIID: "OTHER-1"}, string(payment), 200, root5ServiceResponse, "", NotAllowed, "is not this POI"},
		{"strict without login", ServerConfig{Strict: true}, string(payment), 200, root5ServiceResponse, "", LoggedOut, "Login required"},
		{"key configured", ServerConfig{Key: key}, string(login), 401, root5SessionResponse, "", NotAllowed, "crypto error"},
		{"protected without key", ServerConfig{}, strings.Replace(string(payment), `"Header"`, `"SecurityTrailer":{"ContentType":"AUTH"},"Header"`, 1), 401, root5Rejection, rejectSecurity, "", "crypto error (2)"},
		{"too large", ServerConfig{MaxRequestBytes: 64}, string(payment), 413, root5Rejection, rejectInvalid, "", "request larger than 64 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := startServer(t, tc.cfg, nil)
			status, got, ctype := post(t, env.url, "application/json", []byte(tc.body))
			require.Equal(t, tc.status, status, string(got))
			require.Equal(t, "application/json", ctype)
			root, m := decodeReply5(t, got)
			require.Equal(t, tc.root, root, string(got))
			require.NotNil(t, m.Header)
			// A response echoes the POIID addressed, as in 3.x.
			require.Equal(t, testPOIID, m.Header.InitiatingParty.Identification)
			if tc.reason != "" {
				require.Equal(t, fnRejection, m.Header.MessageFunction)
				require.Equal(t, tc.reason, m.Reject.RejectReason)
				require.Contains(t, m.Reject.AdditionalInformation, tc.details)
				return
			}
			resp, err := JSON5Codec{}.DecodeResponse(got)
			require.NoError(t, err)
			require.Equal(t, Failure, resp.Status.Result)
			require.Equal(t, tc.cond, resp.Status.ErrorCondition)
			require.Contains(t, resp.Status.AdditionalResponse, tc.details)
			require.Equal(t, 0, env.engine.calls())
		})
	}
}

// TestV5ClientRejection: the client turns a casp.013 into a *Error.
func TestV5ClientRejection(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	req := paymentReq("12345678901", "KB", 100) // ExchangeIdentification too long
	_, err := env.client5().Do(testCtx(t), req)
	var ne *Error
	require.ErrorAs(t, err, &ne)
	require.Equal(t, MessageFormat, ne.Condition)
	require.Contains(t, ne.Text, "Header.ExchangeIdentification")
}

// TestV5Observed: v5 exchanges reach the Observer like 3.x ones.
func TestV5Observed(t *testing.T) {
	obs := &fakeObserver{}
	env := startServer(t, ServerConfig{}, &testEnv{obs: obs})
	_, err := env.client5().Do(testCtx(t), paymentReq("1", "DECLINE", 100))
	require.NoError(t, err)
	status, _, _ := post(t, env.url, "application/json", []byte(`{"SaleToPOIServiceRequest": []}`))
	require.Equal(t, http.StatusOK, status)
	want := []observed{{CategoryPayment, Failure, Refusal}, {"", "Reject", MessageFormat}}
	require.Eventually(t, func() bool { return len(obs.all()) == 2 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, want, obs.all())
}

// TestV5EventNotification: a casp.012 from the POS is accepted with no body.
func TestV5EventNotification(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	h := testHeader(CategoryEvent, "1")
	h.Class, h.Type = ClassEvent, TypeNotification
	b, err := JSON5Codec{}.EncodeRequest(&Request{Header: h, Event: &EventNotification{TimeStamp: testEpoch, EventToNotify: "Shutdown"}})
	require.NoError(t, err)
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &m))
	require.Contains(t, m, root5Event)
	status, got, _ := post(t, env.url, "application/json", b)
	require.Equal(t, http.StatusOK, status)
	require.Empty(t, got)
}

// TestV5MessageSecurity: with a shared key, v5 messages are protected both
// ways with the 3.x scheme; anything else is refused with HTTP 401.
func TestV5MessageSecurity(t *testing.T) {
	key, err := NewKey("mykey", 1, "mysupersecretpassphrase")
	require.NoError(t, err)
	other, err := NewKey("mykey", 1, "another passphrase")
	require.NoError(t, err)
	env := startServer(t, ServerConfig{Key: key}, nil)
	ctx := testCtx(t)

	c := env.client5()
	c.Key = key
	resp, err := c.Do(ctx, paymentReq("1", "KB", 1234))
	require.NoError(t, err)
	require.Equal(t, Success, resp.Status.Result)
	require.Equal(t, int64(1234), resp.Payment.Result.AuthorizedAmount.Minor)

	// On the wire: Header in clear, body only in NexoBlob.
	root, wm, err := request5ToWire(paymentReq("2", "KB", 10), protocolVersion5, env.clock.Now())
	require.NoError(t, err)
	sealed, err := key.seal5(root, wm, nil)
	require.NoError(t, err)
	status, got, _ := post(t, env.url, "application/json", sealed)
	require.Equal(t, http.StatusOK, status)
	_, m := decodeReply5(t, got)
	require.NotEmpty(t, m.NexoBlob)
	require.NotNil(t, m.SecurityTrailer)
	require.Equal(t, fnServiceResponse, m.Header.MessageFunction)
	require.Nil(t, m.ServiceResponse, "the body travels only encrypted")
	inner, cerr := key.open5(root5ServiceResponse, m)
	require.Nil(t, cerr)
	require.Equal(t, resp5Success, inner.ServiceResponse.Response.Response)

	// A Header changed in clear no longer matches the protected one.
	var tree map[string]map[string]any
	require.NoError(t, json.Unmarshal(sealed, &tree))
	tree[root]["Header"].(map[string]any)["RecipientParty"] = map[string]any{"Identification": "OTHER-1"}
	tampered, err := json.Marshal(tree)
	require.NoError(t, err)

	// Its body cannot be trusted, so it is refused as a whole (casp.013).
	status, got, _ = post(t, env.url, "application/json", tampered)
	require.Equal(t, http.StatusUnauthorized, status)
	_, m = decodeReply5(t, got)
	require.Equal(t, rejectSecurity, m.Reject.RejectReason)
	require.Contains(t, m.Reject.AdditionalInformation, "crypto error (3)")

	// In clear: refused with a FAIL NotAllowed response, in clear.
	c = env.client5()
	r, err := c.Do(ctx, paymentReq("9", "KB", 10))
	require.Error(t, err)
	require.NotNil(t, r)
	require.Equal(t, NotAllowed, r.Status.ErrorCondition)
	require.Contains(t, r.Status.AdditionalResponse, "crypto error (5)")
	// Under another key: rejected as a whole.
	c.Key = other
	r, err = c.Do(ctx, paymentReq("9", "KB", 10))
	require.Nil(t, r)
	var ne *Error
	require.ErrorAs(t, err, &ne)
	require.Equal(t, NotAllowed, ne.Condition)
	require.Contains(t, ne.Text, "crypto error (4)")
	require.Equal(t, 2, env.engine.calls())
}

// FuzzSecurityTrailerV5 feeds protected v5 envelopes to the opening code.
func FuzzSecurityTrailerV5(f *testing.F) {
	key, err := NewKey("mykey", 1, "mysupersecretpassphrase")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"02_payment.request.json", "06_diagnosis.request.json"} {
		plain, err := os.ReadFile(filepath.Join("testdata", "golden5", name))
		if err != nil {
			f.Fatal(err)
		}
		root, m, e := decode5(plain)
		if e != nil {
			f.Fatal(e)
		}
		sealed, err := key.seal5(root, m, make([]byte, 16))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		root, outer, e := decode5(b)
		if e != nil {
			return
		}
		inner, cerr := key.open5(root, outer)
		if cerr != nil {
			if cerr.Code < cryptoParse || cerr.Code > cryptoUnprotected {
				t.Fatalf("unknown crypto error code %d", cerr.Code)
			}
			return
		}
		if !reflect.DeepEqual(inner.Header, outer.Header) {
			t.Fatal("opened a message whose header does not match")
		}
	})
}

// TestV5ReplaysRefused: protected v5 messages go through the replay window of
// 3.x: the same sealed bytes a second time are refused, and a sealed Payment
// dated outside the window is refused before it runs.
func TestV5ReplaysRefused(t *testing.T) {
	key, err := NewKey("mykey", 1, "mysupersecretpassphrase")
	require.NoError(t, err)
	env := startServer(t, ServerConfig{Key: key}, nil)

	root, wm, err := request5ToWire(paymentReq("1", "KB", 10), protocolVersion5, env.clock.Now())
	require.NoError(t, err)
	sealed, err := key.seal5(root, wm, nil)
	require.NoError(t, err)
	status, _, _ := post(t, env.url, "application/json", sealed)
	require.Equal(t, http.StatusOK, status)
	status, _, _ = post(t, env.url, "application/json", sealed)
	require.Equal(t, http.StatusUnauthorized, status, "a replayed sealed v5 message is refused")

	old := paymentReq("2", "KB", 10)
	old.Payment.SaleTransactionID.TimeStamp = env.clock.Now().Add(-72 * time.Hour)
	root, wm, err = request5ToWire(old, protocolVersion5, env.clock.Now())
	require.NoError(t, err)
	sealed, err = key.seal5(root, wm, nil)
	require.NoError(t, err)
	status, _, _ = post(t, env.url, "application/json", sealed)
	require.Equal(t, http.StatusUnauthorized, status, "a sealed v5 Payment dated outside the window is refused")
}
