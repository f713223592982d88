package agent

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/store"
)

// A reversal a crash interrupted is finished as a Failure telling the POS to
// send it again, so its ServiceID stops answering InProgress forever.
func TestRecoverFinishesAnInterruptedReversal(t *testing.T) {
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "termagent.db"), store.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer st.Close()
	j := journal{st: st}
	req := &nexo.Request{
		Header:   nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryReversal, Type: nexo.TypeRequest, ServiceID: "R1", SaleID: "POS1", POIID: "DX8000-1"},
		Reversal: &nexo.ReversalRequest{OriginalPOITransactionID: nexo.TransactionID{ID: "tx-42"}, Reason: "MerchantCancel"},
	}
	now := time.Now()
	_, err = j.Begin(t.Context(), nexo.JournalEntry{SaleID: "POS1", ServiceID: "R1", Category: nexo.CategoryReversal, RequestHash: "h", Request: req, State: nexo.TxInProgress, Started: now, Updated: now})
	require.NoError(t, err)

	txns, err := st.UnfinishedTxns(t.Context())
	require.NoError(t, err)
	require.Len(t, txns, 1)
	a := &Agent{poiid: "DX8000-1", log: slog.New(slog.DiscardHandler)}
	a.recover(t.Context(), journal{st: st}, txns)

	e, ok, err := j.Lookup(t.Context(), "POS1", "R1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, nexo.TxDone, e.State)
	resp := e.Response
	require.NotNil(t, resp)
	require.Equal(t, nexo.Failure, resp.Status.Result)
	require.Equal(t, nexo.UnreachableHost, resp.Status.ErrorCondition)
	require.Contains(t, resp.Status.AdditionalResponse, "send the reversal again")
	require.Equal(t, "tx-42", resp.Reversal.OriginalPOITransactionID.ID)
	left, err := st.UnfinishedTxns(t.Context())
	require.NoError(t, err)
	require.Empty(t, left)
}
