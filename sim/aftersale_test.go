package sim

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/ppaas"
)

// Issue 14: any provider's approved transaction can be refunded by the
// provider or charged back later, with an event; anything else is refused.
func TestAfterSaleActions(t *testing.T) {
	for _, tc := range []struct {
		action, raw string
	}{{ActionProviderRefund, "REFUNDED"}, {ActionChargeback, "CHARGED_BACK"}} {
		t.Run(tc.action, func(t *testing.T) {
			pm, err := newPayments(slog.New(slog.DiscardHandler), time.Now, ProviderManual, ProvidersConfig{})
			require.NoError(t, err)
			tx := &SimTransaction{Transaction: ppaas.Transaction{Status: ppaas.Pending, PaymentAmount: ppaas.Amount{Amount: 750, Currency: "EUR"}}}
			handled, err := pm.afterSaleLocked(tx, tc.action)
			require.True(t, handled)
			require.ErrorContains(t, err, "needs an approved transaction")
			tx.Status = ppaas.Approved
			handled, err = pm.afterSaleLocked(tx, tc.action)
			require.True(t, handled)
			require.NoError(t, err)
			require.Equal(t, ppaas.Refunded, tx.Status)
			require.Equal(t, int64(750), tx.RefundedAmount)
			require.Equal(t, tc.raw, tx.Provider["status"])
			handled, _ = pm.afterSaleLocked(tx, "pay")
			require.False(t, handled, "the provider's own actions are its own")
		})
	}
}
