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

// finishFails is a journal whose final writes fail (a full or broken disk).
type finishFails struct{ *MemJournal }

func (finishFails) Finish(context.Context, Txn, *Response, time.Time) error {
	return errors.New("disk full")
}

// A failure whose final response (and whatever commits with it, such as a
// reversal advice) could not be journaled is not passed on to the POS as if it
// were recorded: the POS is told the outcome is not recorded yet, and
// TransactionStatus keeps saying InProgress. A Success stays a Success (the
// consumer paid; recovery journals it from PPaaS).
func TestFinishFailureIsNotReportedAsRecordedOutcome(t *testing.T) {
	j := finishFails{NewMemJournal()}
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true},
		Deps{Engine: &fakeEngine{}, Journal: j, Now: newTestClock().Now}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ln := serveTest(t, srv)
	env := &testEnv{url: "http://" + ln.Addr().String() + "/nexo"}
	c := env.client(nil, nil)
	ctx := testCtx(t)

	resp, err := c.Do(ctx, paymentReq("F1", "DECLINE", 100))
	requireFailure(t, resp, err, InProgress)
	require.Contains(t, resp.Status.AdditionalResponse, "could not be recorded")
	require.NotNil(t, resp.Payment, "the POS still gets the payment's references")

	st, err := c.Do(ctx, &Request{Header: testHeader(CategoryTransactionStatus, "S1"),
		TransactionStatus: &TransactionStatusRequest{MessageReference: &MessageReference{SaleID: testHeader(CategoryPayment, "F1").SaleID, ServiceID: "F1"}}})
	requireFailure(t, st, err, InProgress)

	ok, err := c.Do(ctx, paymentReq("F2", "KB", 100))
	require.NoError(t, err)
	require.Equal(t, Success, ok.Status.Result)
}

// ownedFinish is a journal that refuses a Success because a reversal owns
// the transaction's outcome (the agent's journal.finish).
type ownedFinish struct{ *MemJournal }

func (ownedFinish) Finish(_ context.Context, _ Txn, resp *Response, _ time.Time) error {
	if resp.Status.Result == Success {
		return fmt.Errorf("journal finish: %w", ErrOutcomeOwned)
	}
	return nil
}

// Review: a Success the journal refused because a queued reversal owns the
// payment was still sent to the POS (a Success "stays a Success"): the POS
// hands the goods over while the reversal refunds the consumer. It is told
// the outcome is not recorded; TransactionStatus tells the reversal's.
func TestSuccessRefusedBecauseAReversalOwnsItIsNotSent(t *testing.T) {
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true},
		Deps{Engine: &fakeEngine{}, Journal: ownedFinish{NewMemJournal()}, Now: newTestClock().Now}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ln := serveTest(t, srv)
	env := &testEnv{url: "http://" + ln.Addr().String() + "/nexo"}
	resp, err := env.client(nil, nil).Do(testCtx(t), paymentReq("O1", "KB", 100))
	requireFailure(t, resp, err, InProgress)
	require.Contains(t, resp.Status.AdditionalResponse, "could not be recorded")
}
