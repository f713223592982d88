package agent

import (
	"errors"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/store"
)

// A journal read of the original payment that fails says only that: the
// refund and after-sale desks read it after sends, where "nothing was
// refunded" would be false in their logs. The refund's own checks, before
// anything is reserved or sent, tell the POS that nothing was refunded.
func TestUnreadableOriginalSaysNothingRefundedOnlyBeforeASend(t *testing.T) {
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "termagent.db"), store.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, st.Close())

	_, err = readRefundable(t.Context(), st, "P1", "POS1")
	var ne *nexo.Error
	require.ErrorAs(t, err, &ne)
	require.Equal(t, nexo.UnavailableService, ne.Condition)
	require.NotContains(t, ne.Text, "nothing was refunded")
	require.Contains(t, ne.Text, "P1")

	told := beforeSend(err)
	require.ErrorAs(t, told, &ne)
	require.Equal(t, nexo.UnavailableService, ne.Condition)
	require.Contains(t, ne.Text, "nothing was refunded")

	other := nexo.Errorf(nexo.NotFound, "no POI transaction")
	require.Same(t, other, beforeSend(other), "other refusals pass unchanged")
	plain := errors.New("x")
	require.Equal(t, plain, beforeSend(plain))
}

// Review: a full Reversal whose original payment the journal cannot read
// fell back to the ordinary reversal, which does not count the refunds
// already reserved on the payment: a partly refunded payment could be
// reversed in full. It is refused instead, nothing sent.
func TestReversalWithTheJournalUnreadableIsRefused(t *testing.T) {
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "termagent.db"), store.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	e := apmEngine{journal: journal{st: st}}
	_, err, handled := e.reverseRefunds(t.Context(), nexo.Txn{SaleID: "POS1"}, nexo.ReversalRequest{OriginalPOITransactionID: nexo.TransactionID{ID: "P1"}})
	require.True(t, handled, "not left to the ordinary reversal")
	var ne *nexo.Error
	require.ErrorAs(t, err, &ne)
	require.Equal(t, nexo.UnavailableService, ne.Condition)
	require.Contains(t, ne.Text, "nothing was refunded")
}
