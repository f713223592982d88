package nexo

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// slowJournal holds Begin until released, as a journal waiting for fsync does.
type slowJournal struct {
	*MemJournal
	entered chan string
	release chan struct{}
}

func (j *slowJournal) Begin(ctx context.Context, e JournalEntry) (string, error) {
	j.entered <- e.ServiceID
	<-j.release
	return j.MemJournal.Begin(ctx, e)
}

// Issue 17: the server's lock is not held through the durable journal write
// that starts a payment, so Diagnosis, Abort and the ServiceID/Busy answers
// to other requests do not wait for the disk; their answers are the same as
// once the entry is written.
func TestJournalBeginOutsideTheServerLock(t *testing.T) {
	j := &slowJournal{MemJournal: NewMemJournal(), entered: make(chan string, 1), release: make(chan struct{})}
	clock := newTestClock()
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true}, Deps{
		Engine: &fakeEngine{}, Journal: j, Display: &fakeDisplay{}, Diagnoser: fakeDiagnoser{}, Outbox: &fakeOutbox{}, Now: clock.Now,
	}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx := testCtx(t)
	t.Cleanup(func() { _ = srv.Shutdown(ctx) })

	paid := make(chan *Response, 1)
	go func() { paid <- srv.dispatch(ctx, paymentReq("P1", "BLOCK", 100)) }()
	require.Equal(t, "P1", <-j.entered, "the payment is in its journal write")

	answer := func(req *Request) *Response { t.Helper(); return answerWithin(t, srv, ctx, req) }
	d := answer(diagnosisReq("D1"))
	require.Equal(t, Success, d.Status.Result)
	require.Equal(t, "Busy", d.Diagnosis.GlobalStatus, "the reserved slot is busy")

	same := answer(paymentReq("P1", "BLOCK", 100))
	require.Equal(t, InProgress, same.Status.ErrorCondition, "the same request again: still in progress")
	other := answer(paymentReq("P1", "BLOCK", 200))
	require.Equal(t, MessageFormat, other.Status.ErrorCondition, "another request with the ServiceID: refused as reused")
	busy := answer(paymentReq("P2", "BLOCK", 100))
	require.Equal(t, Busy, busy.Status.ErrorCondition)

	require.Nil(t, answer(abortReq("A1", "P1")))
	close(j.release)
	select {
	case r := <-paid:
		require.Equal(t, Aborted, r.Status.ErrorCondition, "aborted while its journal entry was written: it ends Aborted")
	case <-time.After(10 * time.Second):
		t.Fatal("the payment never finished")
	}
	e, ok, err := j.Lookup(ctx, "POS1", "P1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, TxDone, e.State, "the outcome is journaled")
}

// Issue 12: a payment refused up front (Prechecker) is journaled compactly,
// durably too: that write does not hold the server's lock either. While it
// waits for the disk Diagnosis answers (the POI is not busy: a refusal takes
// no slot), and the same ServiceID gets the in-progress / reused answers.
func TestRefusalJournaledOutsideTheServerLock(t *testing.T) {
	j := &slowJournal{MemJournal: NewMemJournal(), entered: make(chan string, 1), release: make(chan struct{})}
	var calls atomic.Int64
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true}, Deps{
		Engine: NewRouter(refusingBrand{countingBrand{brandEngine{"KB"}, &calls}}), Journal: j, Diagnoser: fakeDiagnoser{}, Now: newTestClock().Now,
	}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx := testCtx(t)
	t.Cleanup(func() { _ = srv.Shutdown(ctx) })

	refund := func(amount int64) *Request {
		r := paymentReq("R1", "KB", amount)
		r.Payment.Type = PaymentRefund
		return r
	}
	refused := make(chan *Response, 1)
	go func() { refused <- srv.dispatch(ctx, refund(100)) }()
	require.Equal(t, "R1", <-j.entered, "the refusal is in its journal write")

	answer := func(req *Request) *Response { t.Helper(); return answerWithin(t, srv, ctx, req) }
	d := answer(diagnosisReq("D1"))
	require.Equal(t, Success, d.Status.Result)
	require.Equal(t, "OK", d.Diagnosis.GlobalStatus, "a refusal takes no slot")
	require.Equal(t, InProgress, answer(refund(100)).Status.ErrorCondition, "the same request again: still in progress")
	require.Equal(t, MessageFormat, answer(refund(200)).Status.ErrorCondition, "another request with the ServiceID: refused as reused")

	close(j.release)
	select {
	case r := <-refused:
		require.Equal(t, PaymentRestriction, r.Status.ErrorCondition)
	case <-time.After(10 * time.Second):
		t.Fatal("the refusal never came")
	}
	e, ok, err := j.Lookup(ctx, "POS1", "R1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, TxDone, e.State, "the refusal is journaled")
	require.Zero(t, calls.Load(), "the engine never ran")
}

// answerWithin dispatches req and fails the test if the answer waits (for a
// journal write another request is in) longer than 5 s.
func answerWithin(t *testing.T, srv *Server, ctx context.Context, req *Request) *Response {
	t.Helper()
	ch := make(chan *Response, 1)
	go func() { ch <- srv.dispatch(ctx, req) }()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("%s waited for the journal write", req.Header.Category)
		return nil
	}
}
