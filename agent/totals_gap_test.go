package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/store"
)

// TestLedgerReportsEvictedEntries: the agent's ledger passes on what the
// journal budget evicted from a period left open for days, so GetTotals and
// Reconciliation can say their totals are incomplete (nexo's
// TestTotalsReportEvictedEntries shows how).
func TestLedgerReportsEvictedEntries(t *testing.T) {
	var now atomic.Pointer[time.Time] // the store's budget goroutine reads the clock too
	now.Store(new(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)))
	advance := func(d time.Duration) { now.Store(new(now.Load().Add(d))) }
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "agent.db"), store.Options{NoSync: true, Now: func() time.Time { return *now.Load() }, JournalMaxBytes: 1 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	var l nexo.LedgerGaps = ledger{st}
	data := json.RawMessage(`"` + strings.Repeat("r", 4096) + `"`)
	for i := range 300 {
		id := fmt.Sprintf("t%04d", i)
		_, err := st.StartTxn(ctx, store.TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, store.Transition{State: "started", Data: data})
		require.NoError(t, err)
		require.NoError(t, st.AppendTxn(ctx, id, store.Transition{State: "done", Final: true, Data: data}))
		advance(5 * time.Minute)
	}
	n, _, err := l.PeriodGap(ctx, 1)
	require.NoError(t, err)
	require.Zero(t, n, "within the ServiceID window nothing that ran is evicted")
	advance(72 * time.Hour)
	_, err = st.EnforceJournalBudget(ctx)
	require.NoError(t, err)
	n, before, err := l.PeriodGap(ctx, 1)
	require.NoError(t, err)
	require.Positive(t, n)
	require.EqualValues(t, n, st.JournalStats().Evicted)
	require.True(t, before.After(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)))
}
