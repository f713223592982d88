package agent

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
)

// Issue 17: the subscriber skips its event-log read for the events the
// router says the engine de-duplicates: only those of a payment in flight.
// An event of a payment already answered goes to the after-sale desk, and
// the log is read first.
func TestEventRouterDeduplicatesOnlyEventsOfPaymentsInFlight(t *testing.T) {
	st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
	srv := fakePPaaS(t, ppaas.Transaction{TransactionID: "qr-1"})
	var h qr.EventHandler = eventRouter{engine: ppaasEngine(t, st, srv)}
	d, ok := h.(interface{ DeduplicatesEvent(ppaas.Event) bool })
	require.True(t, ok, "the router tells the subscriber which events need no log read")
	require.False(t, d.DeduplicatesEvent(ppaas.Event{EventID: "e1", ClientTransactionID: "c1", TransactionID: "qr-1", Status: ppaas.Approved}),
		"no payment in flight: the event log de-duplicates")
}
