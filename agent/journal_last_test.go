package agent

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
)

// statusOf asks h, the Nexo server's handler, for the TransactionStatus of
// POS1's last transaction, or of the one named (ServiceID), in Nexo 3.x
// JSON, as a POS does.
func statusOf(t *testing.T, h http.Handler, serviceID string, named ...string) *nexo.Response {
	t.Helper()
	ts := &nexo.TransactionStatusRequest{}
	if len(named) > 0 {
		ts.MessageReference = &nexo.MessageReference{Category: nexo.CategoryPayment, SaleID: "POS1", ServiceID: named[0]}
	}
	raw, err := nexo.JSONCodec{}.EncodeRequest(&nexo.Request{
		Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryTransactionStatus, Type: nexo.TypeRequest,
			ServiceID: serviceID, SaleID: "POS1", POIID: "DX8000-1"},
		TransactionStatus: ts})
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodPost, "/nexo", bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	resp, err := nexo.JSONCodec{}.DecodeResponse(w.Body.Bytes())
	require.NoError(t, err)
	return resp
}

// repeated is the outcome a TransactionStatus response repeats (nil when it
// repeats none: InProgress, NotFound).
func repeated(r *nexo.Response) *nexo.Response {
	if r.TransactionStatus == nil {
		return nil
	}
	return r.TransactionStatus.Repeated
}

// statusServer is a Nexo server over an after-sale rig's journal that keeps
// the last entries (Last), as the agent runs it.
func statusServer(t *testing.T) (*afterSaleRig, http.Handler) {
	t.Helper()
	r := newAfterSaleRig(t, false)
	r.j.last = newLastEntries()
	srv, err := nexo.NewServer(nexo.ServerConfig{POIID: "DX8000-1", AllowPlainHTTP: true}, nexo.Deps{Engine: nexo.NewRouter(), Journal: r.j}, nil)
	require.NoError(t, err)
	return r, srv.Handler()
}

// Issue 17: TransactionStatus keeps the last finished entry of each SaleID
// decoded (the journal's lastEntries) and its JSON encoded (the Nexo
// server's), yet what it reports is always the journal's truth: an
// after-sale update, an unknown outcome settled later and a new payment
// started are told by the next TransactionStatus, never the outcome kept
// from before.
func TestTransactionStatusNeverRepeatsAStaleOutcome(t *testing.T) {
	r, h := statusServer(t)
	ctx := t.Context()

	id := beginPayment(t, r.j, "S1", 1234)
	resp := statusOf(t, h, "Q1")
	require.Equal(t, nexo.InProgress, resp.Status.ErrorCondition, "pending: InProgress, nothing kept")
	require.Zero(t, r.j.last.len())

	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S1"}, successResponse(t, "S1", id, 1234), time.Now()))
	first := statusOf(t, h, "Q2")
	require.Equal(t, nexo.Success, repeated(first).Status.Result)
	require.Empty(t, repeated(first).Status.AdditionalResponse)
	e1, ok, err := r.j.Last(ctx, "POS1")
	require.NoError(t, err)
	require.True(t, ok)
	e2, _, _ := r.j.Last(ctx, "POS1")
	require.Same(t, e1.Response, e2.Response, "an unchanged entry is not decoded again")
	e3, _, _ := r.j.Lookup(ctx, "POS1", "S1")
	require.Same(t, e1.Response, e3.Response, "nor when named")
	require.Equal(t, first, statusOf(t, h, "Q2"), "and repeated the same")
	require.Equal(t, first, statusOf(t, h, "Q2", "S1"))

	// A chargeback after the sale: the entry gains a transition.
	handled, err := r.j.after.event(ctx, ppaas.Event{EventID: "e1", Type: ppaas.EventTypeStatus, TransactionID: "qr-1", ClientTransactionID: id,
		Status: ppaas.Refunded, StatusReason: "charged back by the card holder", Provider: map[string]string{"status": "CHARGED_BACK"}}, false)
	require.NoError(t, err)
	require.True(t, handled)
	after := repeated(statusOf(t, h, "Q3"))
	require.Equal(t, nexo.Success, after.Status.Result)
	require.Contains(t, after.Status.AdditionalResponse, "charged back by the card holder after the sale: 12.34 EUR")
	require.NotEmpty(t, after.Payment.Receipts)
	require.Equal(t, after, repeated(statusOf(t, h, "Q3", "S1")), "named, the same truth")

	// A new payment whose outcome is unknown, settled later.
	id2 := beginPayment(t, r.j, "S2", 999)
	require.Equal(t, nexo.InProgress, statusOf(t, h, "Q4").Status.ErrorCondition, "the new payment, pending, not the last one kept")
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id2, SaleID: "POS1", ServiceID: "S2"},
		failureResponse(t, "S2", id2, nexo.UnreachableHost, "outcome unknown; a reversal is queued"), time.Now()))
	unknown := repeated(statusOf(t, h, "Q5"))
	require.Equal(t, nexo.UnreachableHost, unknown.Status.ErrorCondition)
	require.Equal(t, "outcome unknown; a reversal is queued", unknown.Status.AdditionalResponse)
	text := settledText("", ppaas.Refunded)
	require.NoError(t, r.j.settle(ctx, id2, afterSettled, text))
	settled := repeated(statusOf(t, h, "Q6"))
	require.Equal(t, nexo.Failure, settled.Status.Result)
	require.Equal(t, text, settled.Status.AdditionalResponse)
	require.Equal(t, settled, repeated(statusOf(t, h, "Q7")))
	require.Equal(t, after, repeated(statusOf(t, h, "Q8", "S1")), "the first payment, named, is still charged back")
	require.Equal(t, settled, repeated(statusOf(t, h, "Q9", "S2")))
	require.Equal(t, settled, repeated(statusOf(t, h, "Q9")))

	// Settled again by the same advice's redelivery: nothing changes; a
	// ServiceID never used is not found.
	require.NoError(t, r.j.settle(ctx, id2, afterSettled, text))
	require.Equal(t, settled, repeated(statusOf(t, h, "Q10", "S2")))
	require.Equal(t, nexo.NotFound, statusOf(t, h, "Q11", "S3").Status.ErrorCondition)
}

// The cache keeps at most maxLastEntries SaleIDs, however many ask.
func TestLastEntriesBounded(t *testing.T) {
	r := newAfterSaleRig(t, false)
	r.j.last = newLastEntries()
	ctx := t.Context()
	for i := range maxLastEntries + 8 {
		sale := "POS" + strconv.Itoa(i)
		now := time.Now()
		id, err := r.j.Begin(ctx, nexo.JournalEntry{SaleID: sale, ServiceID: "S", Category: nexo.CategoryPayment, RequestHash: "h",
			State: nexo.TxInProgress, Started: now, Updated: now})
		require.NoError(t, err)
		resp := failureResponse(t, "S", id, nexo.Refusal, "declined")
		resp.Header.SaleID = sale
		require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: sale, ServiceID: "S"}, resp, now))
		e, ok, err := r.j.Last(ctx, sale)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "declined", e.Response.Status.AdditionalResponse)
		require.LessOrEqual(t, r.j.last.len(), maxLastEntries)
	}
	require.Equal(t, maxLastEntries, r.j.last.len())
}

// Readers asking (the last transaction, one named, a reprint) while
// payments finish share the kept entries and their JSON without a race
// (go test -race), and once the writes stop every answer is the last
// payment's.
func TestTransactionStatusKeptUnderConcurrentWrites(t *testing.T) {
	r, h := statusServer(t)
	ctx := t.Context()
	ask := func(ts *nexo.TransactionStatusRequest) (*nexo.Response, error) {
		raw, err := nexo.JSONCodec{}.EncodeRequest(&nexo.Request{
			Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryTransactionStatus, Type: nexo.TypeRequest,
				ServiceID: "Q", SaleID: "POS1", POIID: "DX8000-1"},
			TransactionStatus: ts})
		if err != nil {
			return nil, err
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/nexo", bytes.NewReader(raw)))
		return nexo.JSONCodec{}.DecodeResponse(w.Body.Bytes())
	}
	asks := []*nexo.TransactionStatusRequest{{}, {DocumentQualifiers: []string{nexo.CustomerReceipt}},
		{MessageReference: &nexo.MessageReference{Category: nexo.CategoryPayment, SaleID: "POS1", ServiceID: "S0"}}}

	id := beginPayment(t, r.j, "S0", 100)
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S0"}, successResponse(t, "S0", id, 100), time.Now()))
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				resp, err := ask(asks[(g+i)%len(asks)])
				if err != nil {
					errs <- err
					return
				}
				if resp.Status.Result != nexo.Success && resp.Status.ErrorCondition != nexo.InProgress {
					errs <- &nexo.Error{Condition: resp.Status.ErrorCondition, Text: resp.Status.AdditionalResponse}
					return
				}
			}
		}()
	}
	const n = 8
	for i := 1; i <= n; i++ {
		svc := "S" + strconv.Itoa(i)
		id := beginPayment(t, r.j, svc, int64(100+i))
		require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: svc}, successResponse(t, svc, id, int64(100+i)), time.Now()))
	}
	close(stop)
	for range 4 {
		require.NoError(t, <-errs)
	}
	resp, err := ask(&nexo.TransactionStatusRequest{})
	require.NoError(t, err)
	require.Equal(t, "S"+strconv.Itoa(n), repeated(resp).Header.ServiceID)
	require.Equal(t, int64(100+n), repeated(resp).Payment.Result.AuthorizedAmount.Minor)
	resp, err = ask(asks[2])
	require.NoError(t, err)
	require.Equal(t, "S0", repeated(resp).Header.ServiceID)
}
