package sim

import (
	"github.com/termagent/termagent/ppaas"
	"time"
)

// Refund behaviour per provider (issue 14), from each provider's seed (see
// PROVIDERS.md, "Refunds"):
//
//   - PENNYMATIC: blockchain payments cannot be undone ("El cliente ni el
//     operador pueden deshacer las operaciones ya realizadas en la
//     blockchain"): every refund is refused, 422 not_refundable, so a terminal
//     can tell the POS plainly instead of reporting a refund that never comes.
//   - PLEDG: the merchant recredits the virtual card and "about 2 days later,
//     Pledg will be notified of this recredit and will refund the customer":
//     the refund is accepted pending and completes PledgRefundDelay later (or
//     at POST /control/refunds/complete).
//   - PTI, KTWIDGET, KB: refunded at once (PTI reports REFUNDED; KTWidget has
//     no refund status of its own, so PPaaS's refund leaves the widget's
//     status alone), unless the platform's refund mode is async.
//
// A provider that refuses a refund returns the reason; one that refunds later
// returns async and the delay (0: only the control API completes it).
type refunder interface {
	refundPlan(tx *SimTransaction, req ppaas.RefundRequest) (plan refundPlan, refusal string)
}

type refundPlan struct {
	async bool
	delay time.Duration
}

// PledgRefundDelay is how long the simulated Pledg takes to refund the
// customer after the merchant's recredit: the seed's "about 2 days".
const PledgRefundDelay = 48 * time.Hour

const pennymaticRefusal = "PENNYMATIC payments are blockchain transactions and cannot be undone; refund the consumer by other means"

func (*pennymatic) refundPlan(*SimTransaction, ppaas.RefundRequest) (refundPlan, string) {
	return refundPlan{}, pennymaticRefusal
}

func (*pledg) refundPlan(*SimTransaction, ppaas.RefundRequest) (refundPlan, string) {
	return refundPlan{async: true, delay: PledgRefundDelay}, ""
}

// refundPlanLocked is how the provider of tx takes the refund req: the
// platform's refund mode (RefundMode) unless the provider has its own.
func (pm *payments) refundPlanLocked(tx *SimTransaction, req ppaas.RefundRequest) (refundPlan, string) {
	plan := refundPlan{async: pm.refunds.Async, delay: pm.refunds.Delay}
	if r, ok := pm.providers[tx.PaymentType].(refunder); ok {
		own, refusal := r.refundPlan(tx, req)
		if refusal != "" {
			return refundPlan{}, refusal
		}
		if own.async && !plan.async {
			plan = own
		}
	}
	return plan, ""
}
