package world_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

// act is a consumer or provider action on the transaction the terminal shows,
// after the terminal reached a screen.
type act struct {
	after  string // screen state to await before acting ("" = act at once)
	action string
	args   url.Values
}

// TestProvidersThroughAgent runs each modelled provider's characteristic
// story through a real agent: the POS pays with AllowedPaymentBrand = the
// provider, the consumer acts through the simulator, and the POS gets the Nexo
// answer with exactly the charges it should (never two).
func TestProvidersThroughAgent(t *testing.T) {
	tests := []struct {
		brand     string
		name      string
		acts      []act
		screens   []string // seen in order after the QR (besides the final one)
		result    nexo.Result
		condition nexo.ErrorCondition
		charges   int
		after     []act // later provider updates once answered
		raw       string
	}{
		{brand: "KB", name: "approved", acts: []act{{action: "pay"}}, result: nexo.Success, charges: 1, raw: "generic"},
		{brand: "KB", name: "declined", acts: []act{{action: "decline"}}, result: nexo.Failure, condition: nexo.Refusal},
		{brand: "PENNYMATIC", name: "paid then confirmed later", acts: []act{{action: "connect"}, {action: "pay"}},
			screens: []string{"confirming"}, result: nexo.Success, charges: 1},
		{brand: "PENNYMATIC", name: "never confirmed", acts: []act{{action: "pay"}, {after: "confirming", action: "reject"}},
			result: nexo.Failure, condition: nexo.Refusal},
		{brand: "PLEDG", name: "three payers", acts: []act{{action: "shares", args: url.Values{"n": {"3"}}}, {action: "pay-share"},
			{after: "pending", action: "forge"}, {action: "pay-share"}, {action: "pay-share"}}, result: nexo.Success, charges: 1},
		{brand: "PLEDG", name: "deadline missed", acts: []act{{action: "pay-share"}}, screens: []string{"pending"},
			result: nexo.Failure, condition: nexo.Cancel},
		{brand: "KTWIDGET", name: "callback retried", acts: []act{{action: "pay"}}, result: nexo.Success, charges: 1},
		{brand: "KTWIDGET", name: "denied", acts: []act{{action: "decline"}}, result: nexo.Failure, condition: nexo.Refusal},
		{brand: "PTI", name: "authorized, captured, then charged back", acts: []act{{action: "review"}, {after: "pending", action: "authorize"}},
			result: nexo.Success, charges: 1, after: []act{{action: "capture"}, {action: "chargeback"}}},
		{brand: "PTI", name: "refused", acts: []act{{action: "decline"}}, result: nexo.Failure, condition: nexo.Refusal},
	}
	for _, tc := range tests {
		t.Run(tc.brand+"/"+tc.name, func(t *testing.T) {
			t.Parallel()
			w, pos := startWorld(t, func(c *world.WorldConfig) {
				c.PPaaS.Payments.Providers = sim.ProvidersConfig{
					Pennymatic: sim.PennymaticConfig{ConfirmDelay: 150 * time.Millisecond},
					Pledg:      sim.PledgConfig{Shares: 2, Deadline: 1500 * time.Millisecond},
					KTWidget:   sim.KTWidgetConfig{RetryScale: 0.001, LostAcks: 3, ClearingDelay: 30 * time.Millisecond},
				}
				if tc.name == "never confirmed" {
					c.PPaaS.Payments.Providers.Pennymatic.ConfirmDelay = -1 // only reject or confirm decide
				}
			})
			done := payAsync(t, pos, pos.PaymentRequest("P1", 4200, "EUR", tc.brand))
			qrScreen := awaitScreen(t, w, "awaiting_consumer")
			require.NotEmpty(t, qrScreen.QRPayload, "the terminal shows %s's QR", tc.brand)
			id := qrScreen.TransactionID
			for _, a := range tc.acts {
				if a.after != "" {
					awaitScreen(t, w, a.after)
				}
				_, err := w.PPaaS.ActArgs(id, a.action, a.args)
				require.NoError(t, err, a.action)
			}
			for _, s := range tc.screens {
				awaitScreen(t, w, s)
			}
			r := <-done
			require.NoError(t, r.err)
			require.Equal(t, tc.result, r.resp.Status.Result, world.Describe(r.resp))
			if tc.result == nexo.Success {
				res := r.resp.Payment.Result
				require.NotNil(t, res)
				require.Equal(t, tc.brand, res.Brand)
				require.Equal(t, int64(4200), res.AuthorizedAmount.Minor)
				// The platform's enrichment (sim/enrich.go): acquirer, merchant, terminal.
				require.Equal(t, sim.SimAcquirerID, res.AcquirerID)
				require.NotEmpty(t, res.MerchantID)
				require.Equal(t, "TID-"+w.Agent.Serial(), res.AcquirerPOIID)
				require.NotEmpty(t, res.ProviderReference)
			} else {
				require.Equal(t, tc.condition, r.resp.Status.ErrorCondition, world.Describe(r.resp))
			}
			for _, a := range tc.after {
				_, err := w.PPaaS.ActArgs(id, a.action, a.args)
				require.NoError(t, err, a.action)
			}
			txs, charges := w.PPaaS.Transactions()
			require.Len(t, txs, 1, "one transaction at PPaaS")
			require.Equal(t, tc.charges, txs[0].Charges, "charges on the transaction")
			require.Equal(t, tc.charges, charges[w.Agent.Serial()], "charges for the terminal")
			if len(tc.after) > 0 {
				require.Equal(t, ppaas.Refunded, txs[0].Status, "the provider's later updates reached PPaaS")
			}
			// Whatever arrived later (retried callbacks, later updates), the
			// POS's answer stands.
			st, err := pos.Status(t.Context(), "P1")
			require.NoError(t, err)
			require.NotNil(t, st.TransactionStatus.Repeated, world.Describe(st))
			require.Equal(t, tc.result, st.TransactionStatus.Repeated.Status.Result, world.Describe(st))
		})
	}
}
