package agent

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/store"
)

// copyTestdata copies a testdata journal to a temporary file and opens it.
func copyTestdata(t *testing.T, name string) *store.Store {
	t.Helper()
	src, err := os.Open(filepath.Join("testdata", name))
	require.NoError(t, err)
	defer src.Close()
	path := filepath.Join(t.TempDir(), "termagent.db")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
	return openAgentStore(t, path)
}

// Journals written before the model record (issue 12) read on, converted
// lazily on read and never rewritten: the Nexo 3.x JSON request and response
// of nexo.started and nexo.done, in the JSON transitions and headers of
// older files (journal-json-transitions.db, written by the code of 96bd22c^)
// and in the binary transitions that followed (journal-nexo-json.db, d5a7e72).
// Both hold: P1 approved with receipts, R1 a failed reversal of P1, X1 a
// payment refused up front, P2 a payment a crash interrupted.
func TestJournalReadsFilesWrittenBefore(t *testing.T) {
	for _, name := range []string{"journal-json-transitions.db", "journal-nexo-json.db"} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			st := copyTestdata(t, name)
			j := journal{st: st}

			e, ok, err := j.Lookup(ctx, "POS1", "P1")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, nexo.TxDone, e.State)
			require.Equal(t, nexo.CategoryPayment, e.Category)
			require.Equal(t, "hash-P1", e.RequestHash, "a duplicate of an old request is still recognised")
			require.NotNil(t, e.Response)
			require.Equal(t, nexo.Success, e.Response.Status.Result)
			require.Equal(t, nexo.Amount{Minor: 1250, Currency: "EUR"}, e.Response.Payment.Result.AuthorizedAmount)
			require.Len(t, e.Response.Payment.Receipts, 2)
			// Re-encoded for any envelope from the model.
			for _, c := range []nexo.Codec{nexo.JSONCodec{}, nexo.XMLCodec{}, nexo.JSON5Codec{}} {
				_, err := c.EncodeResponse(e.Response)
				require.NoError(t, err)
			}
			p1, ok, err := st.TxnByServiceID(ctx, "POS1", "P1")
			require.NoError(t, err)
			require.True(t, ok)
			full := toEntry(p1)
			require.NotNil(t, full.Request)
			require.Equal(t, "op1", full.Request.Payment.OperatorID)
			require.Equal(t, int64(1250), full.Request.Payment.Amount.Minor)

			// The refund path reads the old approved payment.
			r, err := readRefundable(ctx, st, p1.ID, "POS1")
			require.NoError(t, err)
			require.Equal(t, nexo.Amount{Minor: 1250, Currency: "EUR"}, r.paid)

			// A reversal: request read for recovery, response for status.
			r1, ok, err := st.TxnByServiceID(ctx, "POS1", "R1")
			require.NoError(t, err)
			require.True(t, ok)
			re := toEntry(r1)
			require.Equal(t, p1.ID, re.Request.Reversal.OriginalPOITransactionID.ID)
			require.Equal(t, nexo.UnreachableHost, re.Response.Status.ErrorCondition)
			// settle rewrites an old failure in the new record: the last one wins.
			require.NoError(t, j.settle(ctx, r1.ID, afterSettled, "settled later"))
			e, ok, err = j.Lookup(ctx, "POS1", "R1")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "settled later", e.Response.Status.AdditionalResponse)

			// Refused up front: no request, the refusal.
			e, ok, err = j.Lookup(ctx, "POS1", "X1")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, nexo.TxDone, e.State)
			require.Nil(t, toEntry(mustTxn(t, st, "X1")).Request)
			require.Equal(t, nexo.PaymentRestriction, e.Response.Status.ErrorCondition)

			// The interrupted payment: what recovery needs to replay its create.
			e, ok, err = j.Last(ctx, "POS1")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "P2", e.ServiceID)
			require.Equal(t, nexo.TxInProgress, e.State)
			v := viewQR(mustTxn(t, st, "P2"))
			require.NotNil(t, v.method)
			require.Equal(t, "KB_V2", v.method.PaymentType, "the method journaled at Begin")
			create, ok := j.createRequest("x", v)
			require.True(t, ok)
			require.Equal(t, int64(700), create.PaymentAmount.Amount)

			// New entries in the same file are journaled as the model.
			now := time.Now()
			id, err := j.Begin(ctx, nexo.JournalEntry{SaleID: "POS1", ServiceID: "N1", Category: nexo.CategoryPayment, RequestHash: "hash-N1",
				Request: &nexo.Request{Header: nexo.Header{Category: nexo.CategoryPayment, SaleID: "POS1", ServiceID: "N1"},
					Payment: &nexo.PaymentRequest{Amount: nexo.Amount{Minor: 5, Currency: "EUR"}}},
				State: nexo.TxInProgress, Started: now, Updated: now})
			require.NoError(t, err)
			n1 := mustTxn(t, st, "N1")
			require.Equal(t, id, n1.ID)
			require.Equal(t, byte(startedVersion), n1.Transitions[0].Data[0], "a new start is a model record")
			require.Equal(t, int64(5), toEntry(n1).Request.Payment.Amount.Minor)
		})
	}
}

func mustTxn(t *testing.T, st *store.Store, serviceID string) store.Txn {
	t.Helper()
	tx, ok, err := st.TxnByServiceID(t.Context(), "POS1", serviceID)
	require.NoError(t, err)
	require.True(t, ok)
	return tx
}
