package nexo

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// panickyJournal panics in its first Begin, as a bug in a journal would.
type panickyJournal struct {
	*MemJournal
	calls atomic.Int32
}

func (j *panickyJournal) Begin(ctx context.Context, e JournalEntry) (string, error) {
	if j.calls.Add(1) == 1 {
		panic("journal bug")
	}
	return j.MemJournal.Begin(ctx, e)
}

// Review item 7: a panic while a payment's slot was reserved (recovered by
// the HTTP handler) left the POI Busy for good. The slot is released.
func TestPanicInBeginDoesNotLeaveThePOIBusy(t *testing.T) {
	j := &panickyJournal{MemJournal: NewMemJournal()}
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true}, Deps{
		Engine: &fakeEngine{}, Journal: j, Display: &fakeDisplay{}, Diagnoser: fakeDiagnoser{}, Outbox: &fakeOutbox{}, Now: newTestClock().Now,
	}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx := testCtx(t)
	t.Cleanup(func() { _ = srv.Shutdown(ctx) })

	require.Panics(t, func() { srv.dispatch(ctx, paymentReq("P1", "", 100)) })
	r := srv.dispatch(ctx, paymentReq("P2", "", 100))
	require.NotEqual(t, Busy, r.Status.ErrorCondition, "the POI stayed Busy after the panic: %+v", r.Status)
	d := srv.dispatch(ctx, diagnosisReq("D1"))
	require.Equal(t, "OK", d.Diagnosis.GlobalStatus)
}
