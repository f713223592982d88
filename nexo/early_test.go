package nexo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// slowFinish is a journal whose final write completes only once the response
// has been encoded (or gives up after a bound): it proves the encoding runs
// during the write, not after it. fail makes the write fail then.
type slowFinish struct {
	*MemJournal
	encoded chan struct{}
	early   chan bool // whether the encoding was ready during the write
	fail    bool
}

func (j slowFinish) Finish(ctx context.Context, txn Txn, resp *Response, at time.Time) error {
	select {
	case <-j.encoded:
		j.early <- true
	case <-time.After(2 * time.Second):
		j.early <- false
	}
	if j.fail {
		return errors.New("disk full")
	}
	return j.MemJournal.Finish(ctx, txn, resp, at)
}

// The response of a payment is encoded while its outcome is journaled, and
// what the POS receives is that outcome: the journaled one when the write
// succeeds, the "not recorded" failure (encoded anew) when it fails.
func TestResponseEncodedDuringJournalWrite(t *testing.T) {
	for _, tc := range []struct {
		name      string
		brand     string
		fail      bool
		result    Result
		condition ErrorCondition
	}{
		{"approved", "KB", false, Success, ""},
		{"declined", "DECLINE", false, Failure, Refusal},
		{"declined, write failed", "DECLINE", true, Failure, InProgress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := slowFinish{MemJournal: NewMemJournal(), encoded: make(chan struct{}, 1), early: make(chan bool, 1), fail: tc.fail}
			srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true},
				Deps{Engine: &fakeEngine{}, Journal: j, Now: newTestClock().Now}, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			srv.earlyEncoded = func() { j.encoded <- struct{}{} }
			ln := serveTest(t, srv)
			c := (&testEnv{url: "http://" + ln.Addr().String() + "/nexo"}).client(nil, nil)

			resp, err := c.Do(testCtx(t), paymentReq("E1", tc.brand, 100))
			require.NoError(t, err)
			require.True(t, <-j.early, "the response was not encoded while the journal wrote")
			require.Equal(t, tc.result, resp.Status.Result)
			require.Equal(t, tc.condition, resp.Status.ErrorCondition)
			require.NotNil(t, resp.Payment)
			require.NotEmpty(t, resp.Payment.POITransactionID.ID)
		})
	}
}

// finishPanics is a journal whose final write panics (a bug in a journal).
type finishPanics struct{ *MemJournal }

func (finishPanics) Finish(context.Context, Txn, *Response, time.Time) error {
	panic("journal bug")
}

// A panic while the outcome is journaled is answered as any handler panic,
// after the early encoding is over (it writes the exchange the answer uses:
// -race tells).
func TestEarlyEncodingOverBeforeAPanicIsAnswered(t *testing.T) {
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true},
		Deps{Engine: &fakeEngine{}, Journal: finishPanics{NewMemJournal()}, Now: newTestClock().Now}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ln := serveTest(t, srv)
	c := (&testEnv{url: "http://" + ln.Addr().String() + "/nexo"}).client(nil, nil)
	for i := range 20 {
		resp, err := c.Do(testCtx(t), paymentReq(fmt.Sprintf("P%d", i), "KB", 100))
		require.NoError(t, err)
		require.Equal(t, Failure, resp.Status.Result)
		require.Equal(t, UnavailableService, resp.Status.ErrorCondition)
	}
}
