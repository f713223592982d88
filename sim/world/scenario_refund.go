package world

import (
	"context"
	"fmt"

	"github.com/termagent/termagent/nexo"
)

// Scenario steps for refunds (issue 14):
//
//	{"pos": "refund", "serviceId": "R1", "original": "P1", "amount": "5.00", "expect": {…}}
//	{"pos": "reverse", "serviceId": "V1", "original": "P1", "amount": "2.50", "expect": {…}}
//
// refund sends a referenced refund of amount (in the original payment's
// currency) of the pay step original (default the last); reverse with an
// amount or an original sends a Reversal with ReversedAmount (a partial
// reversal). serviceId is the request's own (default generated): the same
// serviceId and amount again resend the identical request, as a POS retrying.

// refundsAmount reports whether s is a refund step (or a partial reversal),
// which takes an amount.
func refundsAmount(s *Step) bool {
	return s.POS == "refund" || s.POS == "reverse"
}

// refundStepProblem is what is wrong with a refund step's fields, or "".
func refundStepProblem(s *Step, paid map[string]bool) string {
	switch {
	case s.Original != "" && s.POS != "refund" && s.POS != "reverse":
		return "only a refund or reverse step takes it"
	case s.POS == "refund" && s.Amount == "":
		return "a refund needs an amount (major units, in the original payment's currency)"
	case s.POS == "reverse" && s.Amount != "" && s.Original == "":
		return "a partial reversal (reverse with an amount) names its original pay step"
	case s.Original != "" && !paid[s.Original]:
		return fmt.Sprintf("%q is not the serviceId of an earlier pay step", s.Original)
	case s.Amount != "" && (s.POS == "refund" || s.POS == "reverse"):
		if _, err := parseMajor(s.Amount, "BHD"); err != nil { // three decimals: any currency's syntax
			return fmt.Sprintf("amount: %v", err)
		}
	}
	return ""
}

// refundStep sends a refund or partial reversal step's request.
func (r *scenarioRun) refundStep(ctx context.Context, s *Step) (*nexo.Response, error) {
	orig := s.Original
	if orig == "" {
		orig = r.last
	}
	poi := r.paidTxn(orig)
	if poi == "" {
		return nil, fmt.Errorf("payment %q has no successful response to refund", orig)
	}
	pay := r.requests[orig]
	if pay == nil || pay.Payment == nil {
		return nil, fmt.Errorf("payment %q: no request known", orig)
	}
	currency := pay.Payment.Amount.Currency
	sid := s.ServiceID
	if sid == "" {
		sid = NewServiceID()
	}
	key := "refund:" + s.POS + ":" + sid + ":" + s.Amount // the same step again: the same request
	req := r.requests[key]
	if req == nil {
		if s.POS == "refund" {
			minor, err := parseMajor(s.Amount, currency)
			if err != nil {
				return nil, fmt.Errorf("refund amount: %w", err)
			}
			req = r.pos.RefundRequest(sid, poi, minor, currency)
		} else {
			req = r.pos.ReversalRequest(sid, poi, s.Amount, "MerchantCancel")
		}
		r.requests[key] = req
	}
	return r.pos.Client.Do(ctx, req)
}
