package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	simworld "github.com/termagent/termagent/sim/world"
)

// asyncRefundWorld is a world whose refund desk runs in milliseconds and
// whose PPaaS answers refunds {"status":"pending"} until CompleteRefunds.
func asyncRefundWorld(t *testing.T, timing agent.RefundTiming) (*world, string) {
	t.Helper()
	if timing.Wait == 0 {
		timing.Wait, timing.Poll, timing.Every = 300*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	}
	if timing.MaxBackoff == 0 {
		timing.MaxBackoff = 200 * time.Millisecond
	}
	ws, pos := worldrig.Start(t, func(c *simworld.WorldConfig) {
		worldrig.Agent(func(ac *agent.Config) {
			ac.PaymentTimeout, ac.EventWait = 30*time.Second, 10*time.Second
			ac.AdminListen = "127.0.0.1:0"
		})(c)
		c.AgentOptions.Refunds = timing
	})
	w := &world{World: ws, t: t, pos: pos, seen: map[string]bool{}}
	orig := w.paid("P1").Payment.POITransactionID.ID
	require.NoError(t, w.PPaaS.SetRefundMode(sim.RefundMode{Async: true}))
	return w, orig
}

// pendingRefund sends a refund PPaaS accepts and leaves pending.
func (w *world) pendingRefund(serviceID, orig string, minor int64) {
	w.t.Helper()
	r, err := w.pos.Refund(w.t.Context(), serviceID, orig, minor, "EUR")
	require.NoError(w.t, err)
	require.Equal(w.t, nexo.InProgress, r.Status.ErrorCondition, simworld.Describe(r))
}

// faultOnce sets a one-shot fault on the refund calls and waits until the
// desk's re-send has met it.
func (w *world) refundFaultOnce(status int) {
	w.t.Helper()
	w.PPaaS.AddFault(sim.Fault{Suffix: "/refund", Status: status, Count: 1})
	w.waitFor(10*time.Second, "the desk's re-send meets the fault", func() bool { return len(w.faultList()) == 0 }, func() string { return "" })
}

// final waits for serviceID's journal entry to hold a final answer and
// returns it.
func (w *world) final(serviceID string) *nexo.Response {
	w.t.Helper()
	var rep *nexo.Response
	w.waitFor(10*time.Second, serviceID+" journaled final", func() bool {
		st, err := w.pos.Status(w.t.Context(), serviceID)
		if err != nil || st.Status.Result != nexo.Success || st.TransactionStatus == nil || st.TransactionStatus.Repeated == nil {
			return false
		}
		rep = st.TransactionStatus.Repeated
		return true
	}, func() string { st, _ := w.pos.Status(w.t.Context(), serviceID); return simworld.Describe(st) })
	return rep
}

// Review item 1: a 409 to the desk's re-send (the same key still in progress
// at PPaaS) once released the reservation and journaled "refused, nothing was
// refunded" while PPaaS went on to refund; the POS, told so, refunded again.
// The desk must keep the reservation and settle R1 by PPaaS's final word.
func TestRefundDeskConflictOnResendKeepsTheRefund(t *testing.T) {
	w, orig := asyncRefundWorld(t, agent.RefundTiming{})
	w.pendingRefund("R1", orig, 700)
	w.refundFaultOnce(409)

	n, err := w.PPaaS.CompleteRefunds("")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	rep := w.final("R1")
	require.Equal(t, nexo.Success, rep.Status.Result, "R1 was refunded by PPaaS: %s", simworld.Describe(rep))
	require.Equal(t, int64(700), w.simTx(orig).RefundedAmount)

	// What remains is 13.00: a second 13.01 is refused, 13.00 goes through.
	r, err := w.pos.Refund(t.Context(), "R2", orig, 1301, "EUR")
	require.NoError(t, err)
	require.Equal(t, nexo.Refusal, r.Status.ErrorCondition, simworld.Describe(r))
}

// Review item 1: a 400 to a re-send after PPaaS completed the refund is
// settled by the payment's state at PPaaS (refundedAmount covers every
// reserved refund): Success, not "nothing was refunded".
func TestRefundDeskRefusedResendSettledByPPaaSState(t *testing.T) {
	w, orig := asyncRefundWorld(t, agent.RefundTiming{})
	w.pendingRefund("R1", orig, 700)
	// The desk's re-send is held 2 s, PPaaS completes the refund meanwhile,
	// then the re-send is answered 400.
	w.PPaaS.AddFault(sim.Fault{Suffix: "/refund", Status: 400, Latency: 2 * time.Second, Count: 1})
	w.waitFor(10*time.Second, "the desk's re-send meets the fault", func() bool { return len(w.faultList()) == 0 }, func() string { return "" })
	n, err := w.PPaaS.CompleteRefunds("")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	rep := w.final("R1")
	require.Equal(t, nexo.Success, rep.Status.Result, simworld.Describe(rep))
	require.Equal(t, int64(700), w.simTx(orig).RefundedAmount)
	require.Empty(t, w.Agent.TestDegraded())
}

// Review item 1: a 400 to a re-send that PPaaS's state cannot settle is a
// loud manual case: TransactionStatus says "manual action needed", /readyz
// is degraded, and the amount stays reserved (never "nothing was refunded").
func TestRefundDeskUndecidableRefusalIsManual(t *testing.T) {
	w, orig := asyncRefundWorld(t, agent.RefundTiming{})
	w.pendingRefund("R1", orig, 700)
	w.refundFaultOnce(422)

	rep := w.final("R1")
	require.Equal(t, nexo.Failure, rep.Status.Result)
	require.Equal(t, nexo.InProgress, rep.Status.ErrorCondition, simworld.Describe(rep))
	require.Contains(t, rep.Status.AdditionalResponse, "manual action needed")
	require.NotContains(t, rep.Status.AdditionalResponse, "nothing was refunded")
	w.waitFor(5*time.Second, "readyz degraded", func() bool {
		return strings.Contains(w.Agent.TestDegraded(), "manual action needed")
	}, w.Agent.TestDegraded)
	code, body := httpGet(t, w.Agent.AdminURL()+"/readyz")
	require.Equal(t, 503, code, body)
	require.Equal(t, "Maintenance", w.diagnosis().GlobalStatus)
	_, metrics := httpGet(t, w.Agent.AdminURL()+"/metrics")
	require.Contains(t, metrics, "termagent_refunds_manual 1")

	// PPaaS completes R1 after all: the reservation held, so 13.01 is refused.
	_, err := w.PPaaS.CompleteRefunds("")
	require.NoError(t, err)
	r, err := w.pos.Refund(t.Context(), "R2", orig, 1301, "EUR")
	require.NoError(t, err)
	require.Equal(t, nexo.Refusal, r.Status.ErrorCondition, simworld.Describe(r))
	require.Equal(t, int64(700), w.simTx(orig).RefundedAmount)

	// The desk still asks, at its slowest pace: PPaaS's confirmation settles
	// R1 and clears the alert.
	w.waitFor(10*time.Second, "R1 settled once PPaaS confirms", func() bool {
		rep := w.final("R1")
		return rep.Status.Result == nexo.Success
	}, func() string { return simworld.Describe(w.final("R1")) })
	w.waitFor(5*time.Second, "the alert cleared", func() bool { return w.Agent.TestDegraded() == "" }, w.Agent.TestDegraded)
}

// Review item 5: a refund still pending past the age limit is given up to a
// person, loudly, instead of being re-sent forever.
func TestRefundDeskAgeLimitIsManual(t *testing.T) {
	w, orig := asyncRefundWorld(t, agent.RefundTiming{MaxAge: 2 * time.Second})
	w.pendingRefund("R1", orig, 700)
	rep := w.final("R1")
	require.Equal(t, nexo.InProgress, rep.Status.ErrorCondition, simworld.Describe(rep))
	require.Contains(t, rep.Status.AdditionalResponse, "still not completed by PPaaS after")
	require.Contains(t, rep.Status.AdditionalResponse, "manual action needed")
	w.waitFor(5*time.Second, "readyz degraded", func() bool {
		return strings.Contains(w.Agent.TestDegraded(), "1 refund(s)")
	}, w.Agent.TestDegraded)
}

// Review item 5: the refunds of one payment pending at once are bounded; one
// more is refused clearly, nothing sent.
func TestRefundPendingCapPerPayment(t *testing.T) {
	w, orig := asyncRefundWorld(t, agent.RefundTiming{MaxPending: 2})
	w.pendingRefund("R1", orig, 100)
	w.pendingRefund("R2", orig, 100)
	r, err := w.pos.Refund(t.Context(), "R3", orig, 100, "EUR")
	require.NoError(t, err)
	require.Equal(t, nexo.Refusal, r.Status.ErrorCondition, simworld.Describe(r))
	require.Contains(t, r.Status.AdditionalResponse, "2 refunds of POI transaction")
	require.Contains(t, r.Status.AdditionalResponse, "nothing was refunded")
	require.Equal(t, int64(200), w.simTx(orig).RefundPending)
}

// Review item 2: a Reversal of a refund's POI id once replayed a create under
// the refund's id (when the refund named a brand), cancelled that stray
// transaction and answered Success while the refund stood. A refund is never
// reversed.
func TestReversalOfARefundIsRefused(t *testing.T) {
	w := startWorld(t, nil)
	orig := w.paid("P1").Payment.POITransactionID.ID
	for _, brands := range [][]string{{"KB"}, nil} {
		sid := "R" + strings.Join(brands, "")
		req := w.pos.RefundRequest(sid, orig, 300, "EUR")
		req.Payment.AllowedBrands = brands
		r, err := w.pos.Client.Do(t.Context(), req)
		require.NoError(t, err)
		require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
		refundID := r.Payment.POITransactionID.ID

		rv, err := w.pos.Reverse(t.Context(), refundID, "MerchantCancel")
		require.NoError(t, err)
		require.Equal(t, nexo.Failure, rv.Status.Result, "brands %v: %s", brands, simworld.Describe(rv))
		require.Equal(t, nexo.Refusal, rv.Status.ErrorCondition)
		require.Contains(t, rv.Status.AdditionalResponse, "a refund cannot be reversed")
		_, stray := w.PPaaS.Transaction(refundID)
		require.False(t, stray, "PPaaS has a transaction under the refund's id")
	}
	tx := w.simTx(orig)
	require.Equal(t, int64(600), tx.RefundedAmount)
}

// Review item 3: a full Reversal of an approved payment whose PPaaS refund
// is pending (Pledg: always) was answered Failure/UnreachableHost for good,
// tracked by nothing, and not counted in what remains refundable. It is a
// refund of the whole payment: InProgress while pending, nothing more
// refundable meanwhile, Success with the reversed amount once PPaaS confirms.
func TestFullReversalPendingAtPPaaSIsARefund(t *testing.T) {
	w, orig := asyncRefundWorld(t, agent.RefundTiming{})
	rv, err := w.pos.Client.Do(t.Context(), w.pos.ReversalRequest("V1", orig, "", "CustCancel"))
	require.NoError(t, err)
	require.Equal(t, nexo.InProgress, rv.Status.ErrorCondition, simworld.Describe(rv))
	require.Equal(t, int64(2000), w.simTx(orig).RefundPending)

	r, err := w.pos.Refund(t.Context(), "R1", orig, 500, "EUR")
	require.NoError(t, err)
	require.Equal(t, nexo.Refusal, r.Status.ErrorCondition, simworld.Describe(r))
	require.Equal(t, int64(2000), w.simTx(orig).RefundPending, "nothing more was sent to PPaaS")

	_, err = w.PPaaS.CompleteRefunds("")
	require.NoError(t, err)
	rep := w.final("V1")
	require.Equal(t, nexo.Success, rep.Status.Result, simworld.Describe(rep))
	require.NotNil(t, rep.Reversal)
	require.Equal(t, "20.00", rep.Reversal.ReversedAmount)
	require.Equal(t, int64(2000), w.simTx(orig).RefundedAmount)
}
