package agent

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
)

// Recovery locates a merchantscan payment whose PPaaS id a crash lost in the
// device's listing and acts on the status listed. On a platform that spells
// approved its own way (ppaas_statuses AUTHORIZED=approved) the listing used
// to decode with no spellings: the paid payment read as pending, was answered
// Failure and its reversal queued — the customer charged, the sale refused.
func TestRecoveryReadsTheListingsConfiguredSpellings(t *testing.T) {
	started := time.Now().Add(-3 * time.Hour)
	p, srv := newWalletPlatform(t)
	st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
	id := beginMerchantScan(t, st, "M1", started)
	p.made(ppaas.Transaction{TransactionID: "qr-orig", ClientTransactionID: id, Status: "AUTHORIZED", PaymentType: "KB", PaymentScenario: ppaas.MerchantScan,
		PaymentAmount: ppaas.Amount{Amount: 4200, Currency: "EUR"}}, started.Add(2*time.Second))
	statuses, err := ppaas.ParseStatuses("AUTHORIZED=approved")
	require.NoError(t, err)
	e, err := qr.NewEngine(qr.Config{Brands: map[string]qr.Method{"KB": walletMethod}},
		qr.NewClient(srv.Client(), srv.URL, qr.Retry{Attempts: 1}).WithStatuses(statuses), journal{st: st}, advisor{st: st}, nil)
	require.NoError(t, err)

	a := &Agent{poiid: "DX8000-1", log: slog.New(slog.DiscardHandler)}
	txns, err := st.UnfinishedTxns(t.Context())
	require.NoError(t, err)
	require.Empty(t, a.recover(t.Context(), journal{st: st, qr: e, restarted: time.Now()}, txns))

	je, ok, err := journal{st: st}.Lookup(t.Context(), "POS1", "M1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, nexo.TxDone, je.State)
	require.Equal(t, nexo.Success, je.Response.Status.Result, je.Response.Status.AdditionalResponse)
	require.Equal(t, int64(4200), je.Response.Payment.Result.AuthorizedAmount.Minor)
	_, queued := queuedAdvice(t, st, id)
	require.False(t, queued, "a reversal of the paid payment was queued")
	creates, refunds, cancels := p.counts()
	require.Zero(t, creates+refunds+cancels)
	require.Zero(t, statuses.UnknownCount())
}
