package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/store"
)

// stateRecoverManual marks a merchantscan payment recovery could not locate at
// PPaaS for RecoverTiming.Escalate: the entry stays unfinished (recovery keeps
// asking, and a restart asks again) and TransactionStatus answers its
// transition's response, "manual action needed".
const stateRecoverManual = "agent.recover.manual"

// RecoverTiming tunes how recovery asks again about the merchantscan payments
// whose PPaaS id a crash lost and which the device's transaction listing could
// not place yet (agent/recover.go). Zero values take the defaults noted.
type RecoverTiming struct {
	// Every is the first wait before asking again (default 5 s); each
	// inconclusive answer doubles it, up to MaxBackoff (default 2 min), with
	// ±20 % jitter.
	Every, MaxBackoff time.Duration
	// Escalate is how long after the restart a payment still not located is
	// given up to a person: ERROR log, TransactionStatus "manual action
	// needed" (default 10 min); the termagent_recovery_unlocated gauge counts
	// the payments not located all along. It is still asked about, at
	// MaxBackoff, until the listing answers.
	Escalate time.Duration
}

func (t RecoverTiming) withDefaults() RecoverTiming {
	if t.Every <= 0 {
		t.Every = 5 * time.Second
	}
	if t.MaxBackoff <= 0 {
		t.MaxBackoff = 2 * time.Minute
	}
	if t.Escalate <= 0 {
		t.Escalate = 10 * time.Minute
	}
	return t
}

// relocate asks again, with backoff, about the merchantscan payments recovery
// could not locate (recover's unlocated): never by replaying their create
// (that would charge the consumer's code), only through recover, which reads
// the listing. A payment left past RecoverTiming.Escalate is given up to a
// person (escalate) and still asked about. It returns when every payment is
// settled or ctx ends.
func (a *Agent) relocate(ctx context.Context, j journal, left []store.Txn) {
	timing := a.opts.Recover.withDefaults()
	since := time.Now()
	wait := timing.Every
	for len(left) > 0 {
		a.unlocated.Store(int64(len(left)))
		jittered := wait + time.Duration((rand.Float64()*0.4-0.2)*float64(wait))
		timer := time.NewTimer(jittered)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		wait = min(wait*2, timing.MaxBackoff)
		fresh := make([]store.Txn, 0, len(left))
		for _, t := range left {
			if cur, err := j.st.Txn(ctx, t.ID); err == nil {
				t = cur // with the manual mark, if any
			}
			fresh = append(fresh, t)
		}
		left = a.recover(ctx, j, fresh)
		if time.Since(since) >= timing.Escalate {
			for _, t := range left {
				a.escalate(ctx, j, t, time.Since(since))
			}
		}
	}
	a.unlocated.Store(0)
}

// escalate gives an unlocated merchantscan payment up to a person, once: the
// entry stays unfinished, with a mark whose response TransactionStatus gives.
func (a *Agent) escalate(ctx context.Context, j journal, t store.Txn, after time.Duration) {
	if slices.ContainsFunc(t.Transitions, func(tr store.Transition) bool { return tr.State == stateRecoverManual }) {
		return
	}
	log := a.log.With("sale_id", t.SaleID, "service_id", t.ServiceID, "poi_transaction_id", t.ID)
	v := viewQR(t)
	var sale nexo.TransactionID
	var amount nexo.Amount
	if v.payment != nil {
		sale, amount = v.payment.SaleTransactionID, v.payment.Amount
	}
	resp := &nexo.Response{
		Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeResponse,
			SaleID: t.SaleID, ServiceID: t.ServiceID, POIID: a.poiid},
		Status: nexo.ResponseStatus{Result: nexo.Failure, ErrorCondition: nexo.InProgress, AdditionalResponse: fmt.Sprintf(
			"interrupted by an agent restart; whether PPaaS charged the customer's code for %s is unknown (its transaction listing has not answered for %s) — manual action needed: look for clientTransactionId %s at PPaaS; the agent keeps asking and will not charge the code again",
			amount, after.Round(time.Second), t.ID)},
		Payment: &nexo.PaymentResponse{SaleTransactionID: sale, POITransactionID: nexo.TransactionID{ID: t.ID, TimeStamp: t.Started}},
	}
	b, err := responseRecord(resp)
	if err == nil {
		err = j.st.AppendTxn(ctx, t.ID, store.Transition{At: time.Now(), State: stateRecoverManual, Data: b})
	}
	if err != nil {
		log.Error("recover: journal the unlocated merchantscan payment given up; it stays in progress", "err", err)
		return
	}
	log.Error("recover: merchantscan payment not located at PPaaS; manual action needed", "amount", amount.String(), "after", after.Round(time.Second))
}
