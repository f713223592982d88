package agent_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/nexo"
	simworld "github.com/termagent/termagent/sim/world"
	"github.com/termagent/termagent/store"
)

// Issue 17, wired: while the POS's payment is in flight (waiting for the
// consumer), the running agent's forwarder holds a queued record; once the
// payment is answered, the record goes.
func TestE2EForwarderWaitsForThePaymentInFlight(t *testing.T) {
	w, pos := worldrig.Start(t, func(c *simworld.WorldConfig) {
		c.AgentOptions.Forwarder.MaxYield = time.Hour // only the payment's end releases it
	})
	ww := &world{World: w, t: t, pos: pos, seen: map[string]bool{}}
	done := ww.payAsync("Y1", 1250)
	s := ww.awaitQR()
	yields := w.Agent.TestForwarderStats().Yields
	key := uuid.New()
	_, err := w.Agent.TestStore().Append(t.Context(), store.Event{Kind: store.KindReceipt, Key: key, Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return w.Agent.TestForwarderStats().Yields > yields }, 10*time.Second, time.Millisecond)
	ingested := func() bool {
		ev, _ := w.PPaaS.Ingested()
		for _, e := range ev {
			if e.Key == key.String() {
				return true
			}
		}
		return false
	}
	require.False(t, ingested(), "held while the payment is in flight")

	_, err = w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := ww.answer(done, 15*time.Second)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	require.Eventually(t, ingested, 10*time.Second, time.Millisecond, "delivered once the payment was answered")
}
