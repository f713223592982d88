package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/ppaas"
)

// Unit tests of the adversarial PPaaS knobs against the simulated platform's
// handlers directly (no TLS, no agent): what a device would read on the wire.

const advSerial = "ADV0001"

// capture is a publisher that keeps what it is given.
type capture struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (c *capture) Publish(_ context.Context, _ string, payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, payload)
	return nil
}

// statuses are the status fields of the events published so far, raw.
func (c *capture) statuses() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		var ev struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(m, &ev); err == nil {
			out = append(out, ev.Status)
		}
	}
	return out
}

// advPPaaS is a simulated PPaaS that is built but not listening: its API
// handlers are called as the device (advSerial), its control API directly.
type advPPaaS struct {
	t   *testing.T
	p   *PPaaS
	pub *capture
	api http.Handler // faults in front of the API, as Start wires it
}

func newAdvPPaaS(t *testing.T, pc ProvidersConfig) *advPPaaS {
	t.Helper()
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir, Serial: advSerial})
	require.NoError(t, err)
	p, err := New(Config{CertsDir: dir, Logger: slog.New(slog.DiscardHandler), Payments: PaymentsConfig{Providers: pc}})
	require.NoError(t, err)
	a := &advPPaaS{t: t, p: p, pub: &capture{}}
	p.pay.start(a.pub)
	t.Cleanup(p.pay.close)
	// The mTLS routes wrap handlers in p.device, which wants a certificate;
	// the payment handlers are reached through a mux of their own here.
	mux := http.NewServeMux()
	mux.HandleFunc("POST /qrcode-payment/v1/transactions", p.pay.handleCreate)
	mux.HandleFunc("GET /qrcode-payment/v1/transactions/{id}", p.pay.handleGet)
	mux.HandleFunc("POST /qrcode-payment/v1/transactions/{id}/cancel", p.pay.handleCancel)
	mux.HandleFunc("POST /qrcode-payment/v1/transactions/{id}/refund", p.pay.handleRefund)
	a.api = p.faults.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), deviceKey{}, Device{Serial: advSerial})))
	}))
	return a
}

// call sends an API request as the device and returns status and body.
func (a *advPPaaS) call(method, path string, body any) (int, []byte) {
	a.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(a.t, err)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	rec := httptest.NewRecorder()
	a.api.ServeHTTP(rec, httptest.NewRequest(method, path, rd))
	return rec.Code, rec.Body.Bytes()
}

// control calls the control API.
func (a *advPPaaS) control(method, path, body string) (int, string) {
	a.t.Helper()
	rec := httptest.NewRecorder()
	a.p.control.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec.Code, rec.Body.String()
}

// create makes a KB transaction with this order id and returns its id.
func (a *advPPaaS) create(orderID string, minor int64) string {
	a.t.Helper()
	code, b := a.call(http.MethodPost, "/qrcode-payment/v1/transactions", ppaas.CreateRequest{
		PaymentType: "KB", PaymentScenario: ppaas.ConsumerScan, ClientTransactionID: uuid.NewString(),
		PaymentAmount: ppaas.Amount{Amount: minor, Currency: "EUR"}, Order: ppaas.Order{OrderID: orderID},
	})
	require.Equal(a.t, http.StatusCreated, code, string(b))
	var tx struct {
		TransactionID string `json:"transactionId"`
	}
	require.NoError(a.t, json.Unmarshal(b, &tx))
	return tx.TransactionID
}

// approved creates a transaction and has the consumer pay it.
func (a *advPPaaS) approved(orderID string, minor int64) string {
	a.t.Helper()
	id := a.create(orderID, minor)
	_, err := a.p.Act(id, "pay")
	require.NoError(a.t, err)
	return id
}

func (a *advPPaaS) record(id string) SimTransaction {
	a.t.Helper()
	txs, _ := a.p.Transactions()
	for _, tx := range txs {
		if tx.TransactionID == id {
			return tx
		}
	}
	a.t.Fatalf("no transaction %s", id)
	return SimTransaction{}
}

func rawStatus(t *testing.T, b []byte) string {
	t.Helper()
	var v struct {
		Status      string `json:"status"`
		Transaction *struct {
			Status string `json:"status"`
		} `json:"transaction"`
	}
	require.NoError(t, json.Unmarshal(b, &v), string(b))
	if v.Transaction != nil {
		return v.Transaction.Status
	}
	return v.Status
}

func refund(clientRefundID string, minor int64) ppaas.RefundRequest {
	return ppaas.RefundRequest{ClientRefundID: clientRefundID, Amount: ppaas.Amount{Amount: minor, Currency: "EUR"}}
}

func TestFaultAimedAtAPathSuffixAndAPayment(t *testing.T) {
	a := newAdvPPaaS(t, ProvidersConfig{})
	one := a.approved("ORDER-ONE", 1000)
	other := a.approved("ORDER-OTHER", 1000)
	path := func(id, op string) string { return "/qrcode-payment/v1/transactions/" + id + op }

	// A refund fault aimed at one payment leaves its cancel, its status
	// reads and the other payment's refund alone; with a count it is used
	// up, and the rule after it takes over.
	a.p.AddFault(Fault{OrderID: "ORDER-ONE", Suffix: "/refund", Status: http.StatusNotFound, Count: 2})
	a.p.AddFault(Fault{Suffix: "/refund", Status: http.StatusUnprocessableEntity, Count: 1})
	code, _ := a.call(http.MethodGet, path(one, ""), nil)
	require.Equal(t, http.StatusOK, code, "status read of the aimed payment")
	code, _ = a.call(http.MethodPost, path(one, "/cancel"), map[string]string{})
	require.Equal(t, http.StatusConflict, code, "cancel of the aimed payment reaches PPaaS (already decided)")
	code, _ = a.call(http.MethodPost, path(other, "/refund"), refund("r-other", 1000))
	require.Equal(t, http.StatusUnprocessableEntity, code, "the other payment's refund gets the second rule")
	for range 2 {
		code, b := a.call(http.MethodPost, path(one, "/refund"), refund("r-one", 1000))
		require.Equal(t, http.StatusNotFound, code)
		require.JSONEq(t, `{"error":"not_found","message":"injected fault: Not Found"}`, string(b), "the payment API's own error body")
	}
	require.Equal(t, ppaas.Approved, a.record(one).Status, "a faulted refund never reached PPaaS")
	code, _ = a.call(http.MethodPost, path(one, "/refund"), refund("r-one", 1000))
	require.Equal(t, http.StatusOK, code, "both rules used up")
	require.Equal(t, ppaas.Refunded, a.record(one).Status)

	// A transaction id aims likewise; a GET-only rule is a 4xx on status reads.
	a.p.AddFault(Fault{Transaction: other, Method: http.MethodGet, Status: http.StatusBadRequest})
	code, _ = a.call(http.MethodGet, path(other, ""), nil)
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = a.call(http.MethodGet, path(one, ""), nil)
	require.Equal(t, http.StatusOK, code)
	code, _ = a.call(http.MethodPost, path(other, "/cancel"), map[string]string{})
	require.Equal(t, http.StatusConflict, code)

	// An order id that names no transaction yet matches nothing, and a
	// payment fault never matches create (no transaction in the path).
	a.p.ClearFaults()
	a.p.AddFault(Fault{OrderID: "ORDER-LATER", Status: http.StatusServiceUnavailable})
	later := a.create("ORDER-LATER", 500)
	code, _ = a.call(http.MethodGet, path(later, ""), nil)
	require.Equal(t, http.StatusServiceUnavailable, code, "resolved at the request, after the transaction exists")
	code, _ = a.call(http.MethodGet, path(one, ""), nil)
	require.Equal(t, http.StatusOK, code)
}

func TestFaultValidate(t *testing.T) {
	for _, tc := range []struct {
		f    Fault
		want string
	}{
		{Fault{Status: 503}, "set path, suffix, transactionId or orderId"},
		{Fault{Path: "x", Status: 503}, "path must start with /"},
		{Fault{Suffix: "refund", Status: 503}, "suffix must start with /"},
		{Fault{Suffix: "/refund", Status: 42}, "HTTP status code"},
		{Fault{OrderID: "O"}, "set status, reset or latency"},
		{Fault{Path: "/a", Status: 503, Count: -1}, "must not be negative"},
	} {
		require.ErrorContains(t, tc.f.Validate(), tc.want, "%+v", tc.f)
	}
	require.NoError(t, Fault{OrderID: "O", Suffix: "/cancel", Status: 404}.Validate())
}

func TestFaultControlAPI(t *testing.T) {
	a := newAdvPPaaS(t, ProvidersConfig{})
	code, body := a.control(http.MethodPost, "/control/faults", `{"suffix":"/refund","orderId":"ORDER-S1","status":404,"count":2}`)
	require.Equal(t, http.StatusCreated, code, body)
	code, body = a.control(http.MethodGet, "/control/faults", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"suffix":"/refund"`)
	require.Contains(t, body, `"orderId":"ORDER-S1"`)
	for _, bad := range []string{`{"status":404}`, `{"suffix":"/refund"}`, `{"path":"/a","status":404,"sufix":"/x"}`, `{`} {
		code, body = a.control(http.MethodPost, "/control/faults", bad)
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", bad, body)
	}
}

func TestStatusSpellingsRewriteAnswersAndEvents(t *testing.T) {
	a := newAdvPPaaS(t, ProvidersConfig{})
	require.NoError(t, a.p.SetStatusSpellings(map[ppaas.State]string{
		ppaas.AwaitingConsumer: "WAITING_FOR_SCAN", ppaas.Approved: "AUTHORIZED", ppaas.Refunded: "REFUNDED",
	}))
	code, b := a.call(http.MethodPost, "/qrcode-payment/v1/transactions", ppaas.CreateRequest{
		PaymentType: "KB", PaymentScenario: ppaas.ConsumerScan, ClientTransactionID: uuid.NewString(),
		PaymentAmount: ppaas.Amount{Amount: 1200, Currency: "EUR"}, Order: ppaas.Order{OrderID: "O1"},
	})
	require.Equal(t, http.StatusCreated, code)
	require.Equal(t, "WAITING_FOR_SCAN", rawStatus(t, b), "create answer")
	var created struct {
		TransactionID string `json:"transactionId"`
	}
	require.NoError(t, json.Unmarshal(b, &created))
	id := created.TransactionID
	_, err := a.p.Act(id, "pay")
	require.NoError(t, err)

	path := "/qrcode-payment/v1/transactions/" + id
	_, b = a.call(http.MethodGet, path, nil)
	require.Equal(t, "AUTHORIZED", rawStatus(t, b), "status read")
	code, b = a.call(http.MethodPost, path+"/cancel", map[string]string{})
	require.Equal(t, http.StatusConflict, code)
	require.Equal(t, "AUTHORIZED", rawStatus(t, b), "the transaction in a cancel's 409 body")
	code, b = a.call(http.MethodPost, path+"/refund", refund("r1", 1200))
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "REFUNDED", rawStatus(t, b), "the refund answer")
	require.Equal(t, ppaas.Refunded, a.record(id).Status, "PPaaS's own record keeps the true status")

	// Events are spelled as they are decided: pending was not rewritten.
	require.Eventually(t, func() bool { return len(a.pub.statuses()) == 3 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"pending", "AUTHORIZED", "REFUNDED"}, a.pub.statuses())

	// An entirely unknown spelling, over the control API; {} restores.
	code, body := a.control(http.MethodPost, "/control/payments/statuses", `{"pending":"NEW_STATUS_2027"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"pending":"NEW_STATUS_2027"}`, body)
	id2 := a.approved("O2", 100)
	require.Eventually(t, func() bool { return len(a.pub.statuses()) == 5 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"NEW_STATUS_2027", "approved"}, a.pub.statuses()[3:])
	code, _ = a.control(http.MethodPost, "/control/payments/statuses", `{}`)
	require.Equal(t, http.StatusOK, code)
	_, b = a.call(http.MethodGet, "/qrcode-payment/v1/transactions/"+id2, nil)
	require.Equal(t, "approved", rawStatus(t, b))

	code, _ = a.control(http.MethodPost, "/control/payments/statuses", `{"approved":" "}`)
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = a.control(http.MethodPost, "/control/payments/statuses", `["approved"]`)
	require.Equal(t, http.StatusBadRequest, code)
}

func TestAsyncRefundCompletesLater(t *testing.T) {
	a := newAdvPPaaS(t, ProvidersConfig{})
	require.NoError(t, a.p.SetRefundMode(RefundMode{Async: true}))
	id := a.approved("O1", 2000)
	path := "/qrcode-payment/v1/transactions/" + id

	code, b := a.call(http.MethodPost, path+"/refund", refund("r1", 2000))
	require.Equal(t, http.StatusOK, code)
	var ref ppaas.Refund
	require.NoError(t, json.Unmarshal(b, &ref))
	require.Equal(t, "pending", ref.Status, "shared contract 3: accepted, not done")
	require.NotEmpty(t, ref.RefundID)

	_, b = a.call(http.MethodGet, path, nil)
	got, err := ppaas.DecodeTransaction(b)
	require.NoError(t, err)
	require.Equal(t, ppaas.Approved, got.Status, "stays approved until the refund completes")
	require.Zero(t, got.RefundedAmount)
	require.Equal(t, int64(2000), a.record(id).RefundPending)
	require.Equal(t, 1, a.p.NetCharges(advSerial), "a pending refund gave nothing back yet")

	// The same clientRefundId is the same refund; a second one would exceed
	// the amount paid, counting the pending one.
	_, b = a.call(http.MethodPost, path+"/refund", refund("r1", 2000))
	var again ppaas.Refund
	require.NoError(t, json.Unmarshal(b, &again))
	require.Equal(t, ref.RefundID, again.RefundID)
	require.Equal(t, "pending", again.Status)
	code, _ = a.call(http.MethodPost, path+"/refund", refund("r2", 1))
	require.Equal(t, http.StatusUnprocessableEntity, code)

	// Completed by the control API: refunded, with its event.
	code, body := a.control(http.MethodPost, "/control/refunds/complete", `{"transactionId":"`+id+`"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"completed":1}`, body)
	_, b = a.call(http.MethodGet, path, nil)
	got, err = ppaas.DecodeTransaction(b)
	require.NoError(t, err)
	require.Equal(t, ppaas.Refunded, got.Status)
	require.Equal(t, int64(2000), got.RefundedAmount)
	require.Zero(t, a.record(id).RefundPending)
	require.Zero(t, a.p.NetCharges(advSerial))
	require.Eventually(t, func() bool { s := a.pub.statuses(); return len(s) > 0 && s[len(s)-1] == "refunded" }, 5*time.Second, 5*time.Millisecond)
	_, b = a.call(http.MethodPost, path+"/refund", refund("r1", 2000))
	require.NoError(t, json.Unmarshal(b, &again))
	require.Equal(t, "refunded", again.Status, "the repeated call tells the refund is done")
	n, err := a.p.CompleteRefunds("")
	require.NoError(t, err)
	require.Zero(t, n, "nothing left pending")
	_, err = a.p.CompleteRefunds("qr-nope")
	require.ErrorIs(t, err, ErrNoTransaction)

	// With a delay, over the control API: a partial refund completes by
	// itself and leaves the transaction approved.
	code, body = a.control(http.MethodPost, "/control/payments/refunds", `{"mode":"async","delayMs":30}`)
	require.Equal(t, http.StatusOK, code, body)
	id2 := a.approved("O2", 1000)
	_, b = a.call(http.MethodPost, "/qrcode-payment/v1/transactions/"+id2+"/refund", refund("p1", 400))
	require.Equal(t, "pending", rawStatus(t, b))
	require.Eventually(t, func() bool { return a.record(id2).RefundedAmount == 400 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, ppaas.Approved, a.record(id2).Status)
	require.Zero(t, a.record(id2).RefundPending)

	// Back to synchronous: answered refunded at once.
	code, _ = a.control(http.MethodPost, "/control/payments/refunds", `{"mode":"sync"}`)
	require.Equal(t, http.StatusOK, code)
	_, b = a.call(http.MethodPost, "/qrcode-payment/v1/transactions/"+id2+"/refund", refund("p2", 600))
	require.Equal(t, "refunded", rawStatus(t, b))
	require.Equal(t, ppaas.Refunded, a.record(id2).Status)

	for _, bad := range []string{`{"mode":"later"}`, `{"mode":"async","delayMs":-1}`, `{"mode":"async","delay":5}`} {
		code, body = a.control(http.MethodPost, "/control/payments/refunds", bad)
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", bad, body)
	}
}

func TestPaymentRecordsByOrder(t *testing.T) {
	a := newAdvPPaaS(t, ProvidersConfig{})
	id := a.approved("ORDER-S1", 1250)
	tx, ok := a.p.PaymentByOrder(advSerial, "ORDER-S1")
	require.True(t, ok)
	require.Equal(t, id, tx.TransactionID)
	require.Equal(t, 1, tx.Charges)
	_, ok = a.p.PaymentByOrder("OTHER", "ORDER-S1")
	require.False(t, ok, "another terminal's order ids are its own")
	_, ok = a.p.PaymentByOrder(advSerial, "ORDER-S2")
	require.False(t, ok)

	code, body := a.control(http.MethodGet, "/control/payments/by-order/ORDER-S1", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, id)
	code, _ = a.control(http.MethodGet, "/control/payments/by-order/ORDER-S2", "")
	require.Equal(t, http.StatusNotFound, code)

	a.create("ORDER-S3", 100) // never charged: counts nowhere
	code, body = a.control(http.MethodGet, "/control/transactions", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"netCharges":{"`+advSerial+`":1}`)
}

func TestPennymaticConfirmingStatus(t *testing.T) {
	a := newAdvPPaaS(t, ProvidersConfig{Pennymatic: PennymaticConfig{ConfirmDelay: time.Hour, PaidStatus: pennymaticConfirming}})
	code, b := a.call(http.MethodPost, "/qrcode-payment/v1/transactions", ppaas.CreateRequest{
		PaymentType: "PENNYMATIC", PaymentScenario: ppaas.ConsumerScan, ClientTransactionID: uuid.NewString(),
		PaymentAmount: ppaas.Amount{Amount: 320, Currency: "EUR"}, Order: ppaas.Order{OrderID: "P1"},
	})
	require.Equal(t, http.StatusCreated, code, string(b))
	var created struct {
		TransactionID string `json:"transactionId"`
	}
	require.NoError(t, json.Unmarshal(b, &created))
	tx, err := a.p.Act(created.TransactionID, "pay")
	require.NoError(t, err)
	require.Equal(t, ppaas.State("confirming"), tx.Status, "paid, not confirmed: shared contract 2")
	require.Equal(t, "false", tx.Provider["isconfirmed"])
	tx, err = a.p.Act(created.TransactionID, "confirm")
	require.NoError(t, err)
	require.Equal(t, ppaas.Approved, tx.Status)

	// A cancel of a confirming payment is taken, and Pennymatic's record
	// says the consumer is owed a refund: the harm a terminal must avoid.
	code, b = a.call(http.MethodPost, "/qrcode-payment/v1/transactions", ppaas.CreateRequest{
		PaymentType: "PENNYMATIC", PaymentScenario: ppaas.ConsumerScan, ClientTransactionID: uuid.NewString(),
		PaymentAmount: ppaas.Amount{Amount: 500, Currency: "EUR"}, Order: ppaas.Order{OrderID: "P3"},
	})
	require.Equal(t, http.StatusCreated, code)
	require.NoError(t, json.Unmarshal(b, &created))
	_, err = a.p.Act(created.TransactionID, "pay")
	require.NoError(t, err)
	code, b = a.call(http.MethodPost, "/qrcode-payment/v1/transactions/"+created.TransactionID+"/cancel", map[string]string{})
	require.Equal(t, http.StatusOK, code, string(b))
	rec := a.record(created.TransactionID)
	require.Equal(t, ppaas.Cancelled, rec.Status)
	require.Equal(t, "owed", rec.Provider["refund"])

	_, err = New(Config{CertsDir: t.TempDir(), Payments: PaymentsConfig{Providers: ProvidersConfig{Pennymatic: PennymaticConfig{PaidStatus: "paid"}}}})
	require.Error(t, err)
}

func TestAgentClock(t *testing.T) {
	var c AgentClock
	require.WithinDuration(t, time.Now(), c.Now(), time.Second)
	c.Set(48 * time.Hour)
	require.WithinDuration(t, time.Now().Add(48*time.Hour), c.Now(), time.Second)
	c.Jump(-50 * time.Hour)
	require.Equal(t, -2*time.Hour, c.Offset())
	require.WithinDuration(t, time.Now().Add(-2*time.Hour), c.Now(), time.Second)
	// Durations measured across a jump include it (the monotonic reading
	// moves with the wall clock).
	before := c.Now()
	c.Jump(time.Hour)
	require.InDelta(t, time.Hour.Seconds(), c.Now().Sub(before).Seconds(), 1)

	a := newAdvPPaaS(t, ProvidersConfig{})
	code, body := a.control(http.MethodPost, "/control/agent/clock", `{"offsetMs":1000}`)
	require.Equal(t, http.StatusNotFound, code, "no in-process agent registered: %s", body)
	var clk AgentClock
	a.p.SetAgentClock(&clk)
	code, body = a.control(http.MethodPost, "/control/agent/clock", `{"offsetMs":-3600000}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"offsetMs":-3600000`)
	require.Equal(t, -time.Hour, clk.Offset())
	code, _ = a.control(http.MethodGet, "/control/agent/clock", "")
	require.Equal(t, http.StatusOK, code)
	code, _ = a.control(http.MethodPost, "/control/agent/clock", `{}`)
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = a.control(http.MethodDelete, "/control/agent/clock", "")
	require.Equal(t, http.StatusMethodNotAllowed, code)
}

func TestNetCharges(t *testing.T) {
	// Net charges: a full refund takes one charge back, a partial one none.
	full := &SimTransaction{Transaction: ppaas.Transaction{PaymentAmount: ppaas.Amount{Amount: 100}, RefundedAmount: 100}, Charges: 1}
	part := &SimTransaction{Transaction: ppaas.Transaction{PaymentAmount: ppaas.Amount{Amount: 100}, RefundedAmount: 50}, Charges: 1}
	double := &SimTransaction{Transaction: ppaas.Transaction{PaymentAmount: ppaas.Amount{Amount: 100}, RefundedAmount: 100}, Charges: 2}
	require.Equal(t, 0, netCharges(full))
	require.Equal(t, 1, netCharges(part))
	require.Equal(t, 1, netCharges(double), "a double charge refunded once still stands once")
}
