package world_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/sim"
)

// The Pledg seed's error.type values ("Errors handling"), each failing the
// purchase with that code; the two timeouts expire it, the others decline it.
// Codes the seed does not list are refused.
func TestPledgSeedErrorTypes(t *testing.T) {
	w := newPVWorld(t, pvProviders())
	seed := map[string]string{
		"invalid_request_error":       "Your settings are malformed",
		"maintenance":                 "The Pledg backend is under maintenance",
		"internal_error":              "The Pledg backend failed",
		"payment_refused":             "The PSP of Pledg failed",
		"bad_gateway":                 "The PSP of the merchant failed (back mode only)",
		"3DS_confirmation_timeout":    "The 3DS payment process could not be completed on time",
		"direct_confirmation_timeout": "The direct (i.e. without 3DS) payment process could not be completed on time",
		"not_eligible":                "The customer is not eligible to this type of payment",
	}
	for code, desc := range seed {
		t.Run(code, func(t *testing.T) {
			before := w.Charges()
			ch, tx := w.pay(t.Context(), "PLEDG", "")
			w.act(tx, "fail", "error", code)
			o := pvAwait(t, ch)
			want := qr.ResultDeclined
			if strings.HasSuffix(code, "_timeout") {
				want = qr.ResultExpired
			}
			require.Equal(t, want, o.Result)
			got := w.mustTx(tx.ClientTransactionID)
			require.Equal(t, code, got.Provider["error"])
			require.Equal(t, "failed", got.Provider["status"])
			require.Contains(t, got.StatusReason, desc)
			require.Equal(t, before, w.Charges())
		})
	}
	t.Run("decline is payment_refused", func(t *testing.T) {
		ch, tx := w.pay(t.Context(), "PLEDG", "")
		w.act(tx, "decline")
		require.Equal(t, qr.ResultDeclined, pvAwait(t, ch).Result)
		require.Equal(t, "payment_refused", w.mustTx(tx.ClientTransactionID).Provider["error"])
	})
	t.Run("codes not in the seed are refused", func(t *testing.T) {
		ch, tx := w.pay(t.Context(), "PLEDG", "")
		for _, code := range []string{"card_declined", "purchase_expired", ""} {
			_, err := w.Sim.ActArgs(tx.TransactionID, "fail", map[string][]string{"error": {code}})
			require.Error(t, err, code)
		}
		w.act(tx, "decline")
		pvAwait(t, ch)
	})
}

// Pledg's transfer mode: the notification is {"signature": JWT} of the seed's
// fields (reference, created, transfer_order_item_uid, merchant_uid,
// purchase_uid, amount_cents) with no status; PPaaS accepts it as the purchase
// validated, once it checked amount_cents against the purchase.
func TestPledgTransferModeNotification(t *testing.T) {
	pc := pvProviders()
	pc.Pledg.Secret = "SECRET"
	w := newPVWorld(t, pc)

	t.Run("from the provider", func(t *testing.T) {
		before := w.Charges()
		ch, tx := w.pay(t.Context(), "PLEDG", "")
		w.act(tx, "transfer")
		require.Equal(t, qr.ResultApproved, pvAwait(t, ch).Result)
		got := w.mustTx(tx.ClientTransactionID)
		require.Equal(t, "transfer", got.Provider["mode"])
		require.Equal(t, "2000", got.Provider["amount_cents"])
		require.True(t, strings.HasPrefix(got.Provider["id"], "tri_"), "the transfer_order_item_uid")
		w.requireChargedOnce(tx.ClientTransactionID, before)
	})

	post := func(claims jwt.MapClaims) int {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("SECRET"))
		require.NoError(t, err)
		resp, err := http.Post(w.Sim.ControlURL()+"/control/providers/pledg/notifications", "application/json",
			strings.NewReader(`{"signature":"`+tok+`"}`))
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	seedClaims := func(reference string, cents int64) jwt.MapClaims {
		return jwt.MapClaims{
			"reference": reference, "created": "2020-09-17 15:00:02.052177",
			"transfer_order_item_uid": "tri_fasdkfiasfsd234nfs7f5d", "merchant_uid": "mer_e821ccca-7a16-45a7-8b00-0a6015e16123",
			"purchase_uid": "pur_6c48d42b-f29b-4f84-bee8-3cb2b964b600", "amount_cents": cents,
		}
	}
	t.Run("the seed's body over the webhook", func(t *testing.T) {
		ch, tx := w.pay(t.Context(), "PLEDG", "")
		require.Equal(t, http.StatusBadRequest, post(seedClaims(tx.ProviderReference, 10000)), "amount_cents must be the purchase's")
		require.Equal(t, ppaas.AwaitingConsumer, w.mustTx(tx.ClientTransactionID).Status)
		require.Equal(t, http.StatusOK, post(seedClaims(tx.ProviderReference, 2000)))
		require.Equal(t, qr.ResultApproved, pvAwait(t, ch).Result)
		require.Equal(t, "tri_fasdkfiasfsd234nfs7f5d", w.mustTx(tx.ClientTransactionID).Provider["id"])
	})
}

// KTWidget's statuses exactly as its seed: pending, authorized (funds blocked:
// pending at PPaaS), success (paid, clearing not finished: approved), completed
// (cleared: a later update of the approved transaction), error and denied with
// the seed's error_type values (ERROR_PAYMENT, ERROR_INPUT, ERROR_SYSTEM).
// Nothing else ever appears as the widget's status.
func TestKTWidgetSeedStatuses(t *testing.T) {
	w := newPVWorld(t, pvProviders())
	seedStatuses := []string{"pending", "authorized", "success", "error", "denied", "completed"}
	onlySeed := func(tx sim.SimTransaction) {
		t.Helper()
		for _, s := range w.rawStatuses(tx.ClientTransactionID) {
			require.Contains(t, seedStatuses, s)
		}
		require.Contains(t, seedStatuses, w.mustTx(tx.ClientTransactionID).Provider["status"])
	}

	t.Run("success is approved", func(t *testing.T) {
		before := w.Charges()
		ch, tx := w.pay(t.Context(), "KTWIDGET", "")
		got := w.act(tx, "authorize")
		require.Equal(t, ppaas.Pending, got.Status, "authorized: funds blocked, processing awaited")
		got = w.act(tx, "complete")
		require.Equal(t, ppaas.Approved, got.Status)
		require.Equal(t, qr.ResultApproved, pvAwait(t, ch).Result)
		testrig.WaitFor(t, 10*time.Second, "len(w.Handler.Events(tx.ClientTransactionID)) >= 3", func() bool { return len(w.Handler.Events(tx.ClientTransactionID)) >= 3 })
		evs := w.Handler.Events(tx.ClientTransactionID)
		require.Equal(t, "success", evs[1].Provider["status"])
		require.Equal(t, ppaas.Approved, evs[1].Status, "the consumer has paid at success")
		require.Equal(t, "completed", evs[2].Provider["status"])
		onlySeed(tx)
		w.requireChargedOnce(tx.ClientTransactionID, before)
	})

	t.Run("ERROR_INPUT", func(t *testing.T) {
		ch, tx := w.pay(t.Context(), "KTWIDGET", "")
		w.act(tx, "input-error")
		require.Equal(t, qr.ResultDeclined, pvAwait(t, ch).Result)
		got := w.mustTx(tx.ClientTransactionID)
		require.Equal(t, "error", got.Provider["status"])
		require.Equal(t, "ERROR_INPUT", got.Provider["error_type"])
		onlySeed(tx)
	})

	t.Run("a cancel at PPaaS invents no widget status", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		ch, tx := w.pay(ctx, "KTWIDGET", "")
		cancel()
		require.Equal(t, qr.ResultAborted, pvAwait(t, ch).Result)
		got := w.mustTx(tx.ClientTransactionID)
		require.Equal(t, ppaas.Cancelled, got.Status)
		require.Equal(t, "pending", got.Provider["status"])
		onlySeed(tx)
	})
}

// PTI's providerResponseCategory SOFT_DECLINE, its providerResponseCode values,
// and a TRANSACTION_MONITORING DENY after AUTHORIZED (the authorization is
// reversed: refunded at PPaaS, a late event the terminal does not take for a new
// outcome).
func TestPTISeedValues(t *testing.T) {
	w := newPVWorld(t, pvProviders())

	for _, tc := range []struct{ code, want string }{{"", "PAYMENT_INSTRUMENT_PROBLEM"}, {"CVV_CHECK_FAILED", "CVV_CHECK_FAILED"}} {
		t.Run("SOFT_DECLINE "+tc.want, func(t *testing.T) {
			ch, tx := w.pay(t.Context(), "PTI", "")
			var args []string
			if tc.code != "" {
				args = []string{"code", tc.code}
			}
			w.act(tx, "soft-decline", args...)
			require.Equal(t, qr.ResultDeclined, pvAwait(t, ch).Result)
			got := w.mustTx(tx.ClientTransactionID)
			require.Equal(t, "REFUSED", got.Provider["status"])
			require.Equal(t, "SOFT_DECLINE", got.Provider["providerResponseCategory"])
			require.Equal(t, tc.want, got.Provider["providerResponseCode"])
		})
	}
	t.Run("codes not in the seed are refused", func(t *testing.T) {
		ch, tx := w.pay(t.Context(), "PTI", "")
		_, err := w.Sim.ActArgs(tx.TransactionID, "soft-decline", map[string][]string{"code": {"INSUFFICIENT_FUNDS"}})
		require.Error(t, err)
		_, err = w.Sim.ActArgs(tx.TransactionID, "monitoring-deny", map[string][]string{"code": {"TOO_RISKY"}})
		require.Error(t, err)
		w.act(tx, "decline", "code", "BLOCKED_COUNTRY")
		require.Equal(t, qr.ResultDeclined, pvAwait(t, ch).Result)
		require.Equal(t, "HARD_DECLINE", w.mustTx(tx.ClientTransactionID).Provider["providerResponseCategory"])
	})

	t.Run("TRANSACTION_MONITORING DENY after AUTHORIZED", func(t *testing.T) {
		before := w.Charges()
		ch, tx := w.pay(t.Context(), "PTI", "")
		w.act(tx, "pay")
		require.Equal(t, qr.ResultApproved, pvAwait(t, ch).Result)
		journal := w.Rec.States(tx.ClientTransactionID)

		got := w.act(tx, "monitoring-deny", "code", "TRANSACTION_VELOCITY_VIOLATION")
		require.Equal(t, ppaas.Refunded, got.Status)
		require.Equal(t, got.PaymentAmount.Amount, got.RefundedAmount)
		testrig.WaitFor(t, 10*time.Second, "len(w.Handler.Events(tx.ClientTransactionID)) == 4", func() bool { return len(w.Handler.Events(tx.ClientTransactionID)) == 4 })
		evs := w.Handler.Events(tx.ClientTransactionID)
		require.Equal(t, "TRANSACTION_MONITORING", evs[2].Provider["resourceType"])
		require.Equal(t, "DENY", evs[2].Provider["status"])
		require.Equal(t, "TRANSACTION_VELOCITY_VIOLATION", evs[2].Provider["complianceProviderResponseCode"])
		require.Equal(t, "CANCELED", evs[3].Provider["status"])
		require.Equal(t, "PAYMENT_PROCESSOR", evs[3].Provider["resourceType"])
		require.Equal(t, journal, w.Rec.States(tx.ClientTransactionID), "late events do not change the outcome")
		w.requireChargedOnce(tx.ClientTransactionID, before)
	})

	t.Run("TRANSACTION_MONITORING DENY before authorization", func(t *testing.T) {
		ch, tx := w.pay(t.Context(), "PTI", "")
		w.act(tx, "review")
		w.act(tx, "monitoring-deny")
		require.Equal(t, qr.ResultDeclined, pvAwait(t, ch).Result)
		require.Equal(t, "FRAUD_SUSPICION", w.mustTx(tx.ClientTransactionID).Provider["complianceProviderResponseCode"])
	})
}
