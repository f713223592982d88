package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim"
	simworld "github.com/termagent/termagent/sim/world"
)

// journalBytes is the size of the data journaled for POI transaction id.
func (w *world) journalBytes(id string) int {
	w.t.Helper()
	txn, err := w.Agent.TestStore().Txn(w.t.Context(), id)
	require.NoError(w.t, err)
	n := 0
	for _, tr := range txn.Transitions {
		n += len(tr.State) + len(tr.Data)
	}
	return n
}

// The hostile review: a platform writing a providerReference and a
// statusReason of hundreds of kilobytes made an approved answer of 601 KB
// (200,000-byte strings) or one the POS could not read at all (450 KB: over
// its client's 1 MiB bound), TransactionStatus likewise. Now the POS reads a
// Success whose reference fits its Nexo field, a decline quoting at most
// 200 bytes of the reason, TransactionStatus repeats both, and the journal
// keeps them small. Each character of the strings is two or three bytes, so
// every cut falls inside one.
func TestHugePlatformTextReachesThePOSBounded(t *testing.T) {
	for _, c := range []struct {
		name string
		size int  // bytes of the reason and of the reference
		mqtt bool // events pushed (else polled)
	}{
		{"200KB pushed", 200_000, true},
		{"450KB polled", 450_000, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := startWorld(t, func(cfg *agent.Config) {
				if !c.mqtt {
					cfg.MQTTURL = ""
				}
			})
			reason := strings.Repeat("é", c.size/2)
			ref := "R" + strings.Repeat("€", c.size/3)
			w.PPaaS.SetDecisionText(sim.DecisionText{Reason: reason, Reference: ref})

			r := w.paid("PT1")
			res := r.Payment.Result
			b, err := json.Marshal(r)
			require.NoError(t, err)
			t.Logf("approved: response %d bytes, ProviderReference %d bytes, journal %d bytes", len(b), len(res.ProviderReference), w.journalBytes(res.POITransactionID.ID))
			require.Less(t, len(b), 16<<10)
			require.True(t, utf8.ValidString(res.ProviderReference))
			require.LessOrEqual(t, utf8.RuneCountInString(res.ProviderReference), 35, "Max35Text")
			require.True(t, strings.HasPrefix(res.ProviderReference, "R€€"), res.ProviderReference)
			for _, rc := range r.Payment.Receipts {
				for _, l := range rc.Lines {
					require.LessOrEqual(t, len(l), 128, "receipt line %q", l)
				}
			}
			require.Less(t, w.journalBytes(res.POITransactionID.ID), 16<<10)
			st := w.status("PT1")
			require.Equal(t, res.ProviderReference, st.Payment.Result.ProviderReference)

			ch := w.payAsync("PT2", 2000)
			s := w.awaitQR()
			_, err = w.PPaaS.Act(s.TransactionID, "decline")
			require.NoError(t, err)
			d := w.answer(ch, 20*time.Second)
			require.Equal(t, nexo.Failure, d.Status.Result, simworld.Describe(d))
			ar := d.Status.AdditionalResponse
			t.Logf("declined: AdditionalResponse %d bytes, journal %d bytes", len(ar), w.journalBytes(d.Payment.POITransactionID.ID))
			require.True(t, utf8.ValidString(ar))
			require.Contains(t, ar, "declined by the provider: éé")
			require.LessOrEqual(t, len(ar), len("declined by the provider: ")+ppaas.MaxTextLen+len("…"))
			require.Less(t, w.journalBytes(d.Payment.POITransactionID.ID), 16<<10)
			ds := w.status("PT2")
			require.Equal(t, ar, ds.Status.AdditionalResponse)
		})
	}
}

// The hostile review: 400 events with 30 KB ids, each naming an unknown
// transaction by its PPaaS id, took the store file from 32 KiB to 33.6 MB
// (every id marked seen, one commit each). An event naming an id over
// ppaas.MaxIDLen is refused now: counted, acked, nothing stored.
func TestOversizedEventIDsAreRefusedUnstored(t *testing.T) {
	dir := t.TempDir()
	w := startWorld(t, func(c *agent.Config) { c.DataDir = dir })
	<-w.Agent.Subscribed()
	path := filepath.Join(dir, "termagent.db")
	before := fileSize(t, path)
	commits := w.Agent.StoreDiskStats().Commits
	const n = 400
	for i := range n {
		ev := ppaas.Event{EventID: fmt.Sprintf("%06d", i) + strings.Repeat("e", 30_000), Type: ppaas.EventTypeStatus,
			TransactionID: fmt.Sprintf("unknown-%d", i), Status: ppaas.Approved, Sequence: 1, Time: time.Now()}
		if i%2 == 1 { // the event id fits, the transaction's does not
			ev.EventID, ev.TransactionID = uuid.NewString(), strings.Repeat("t", 30_000)
		}
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		require.NoError(t, w.PPaaS.PublishEvent(t.Context(), w.Agent.Serial(), b))
	}
	w.waitFor(30*time.Second, "every oversized event refused", func() bool { return w.Agent.TestOversized() == n },
		func() string { return fmt.Sprint(w.Agent.TestOversized()) })
	r := w.paid("PTF1") // and the POS still pays
	require.Equal(t, nexo.Success, r.Status.Result)
	after := fileSize(t, path)
	t.Logf("%d events with 30 KB ids: store file %d -> %d bytes, %d commits (one payment's among them)", n, before, after, w.Agent.StoreDiskStats().Commits-commits)
	require.Less(t, after-before, int64(1<<20))
}

// An event naming an unknown transaction by its PPaaS id only cost a durable
// commit each (the after-sale desk flushed the journal in case its index was
// queued): a platform could make the agent fsync at its rate. Only an id
// this run queued an index for is flushed for now; the others' marks are
// deferred writes, committed together.
func TestUnknownTransactionEventsCostNoCommitEach(t *testing.T) {
	w := startWorld(t, nil)
	<-w.Agent.Subscribed()
	w.paid("PTU1")
	st := w.Agent.TestStore()
	commits := w.Agent.StoreDiskStats().Commits
	const n = 400
	var last string
	for range n {
		last = uuid.NewString()
		ev := ppaas.Event{EventID: last, Type: ppaas.EventTypeStatus, TransactionID: uuid.NewString(),
			Status: ppaas.Refunded, Sequence: 2, Time: time.Now()}
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		require.NoError(t, w.PPaaS.PublishEvent(t.Context(), w.Agent.Serial(), b))
	}
	w.waitFor(30*time.Second, "the last event marked seen", func() bool {
		seen, err := st.EventSeen(context.Background(), last)
		return err == nil && seen
	}, func() string { return "" })
	got := w.Agent.StoreDiskStats().Commits - commits
	t.Logf("%d events for unknown transactions: %d commits", n, got)
	require.Less(t, got, int64(n/4))
	r := w.paid("PTU2")
	require.Equal(t, nexo.Success, r.Status.Result)
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size()
}
