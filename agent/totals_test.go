package agent

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
)

func TestCompareWithPlatform(t *testing.T) {
	eur := func(m int64) nexo.Amount { return nexo.Amount{Minor: m, Currency: "EUR"} }
	tx := func(st ppaas.State, amount, refunded int64) ppaas.Transaction {
		return ppaas.Transaction{TransactionID: "qr-1", ClientTransactionID: "poi-1", Status: st,
			PaymentAmount: ppaas.Amount{Amount: amount, Currency: "EUR"}, RefundedAmount: refunded}
	}
	jp := func(amount int64, reversed bool) *nexo.JournaledPayment {
		return &nexo.JournaledPayment{POITransactionID: "poi-1", PlatformID: "qr-1", Brand: "KB", Amount: eur(amount), Reversed: reversed}
	}
	for name, c := range map[string]struct {
		jp   *nexo.JournaledPayment
		tx   ppaas.Transaction
		want string
	}{
		"agree":                     {jp(100, false), tx(ppaas.Approved, 100, 0), ""},
		"agree reversed":            {jp(100, true), tx(ppaas.Refunded, 100, 100), ""},
		"declined nowhere":          {nil, tx(ppaas.Declined, 100, 0), ""},
		"approved only on platform": {nil, tx(ppaas.Approved, 100, 0), "but the journal has no approved payment"},
		"not approved on platform":  {jp(100, false), tx(ppaas.Cancelled, 100, 0), "is cancelled on the platform"},
		"amount":                    {jp(100, false), tx(ppaas.Approved, 120, 0), "is 1.00 EUR in the journal but 1.20 EUR"},
		"refund not in journal":     {jp(100, false), tx(ppaas.Refunded, 100, 100), "no reversal in the journal"},
		"reversal not refunded":     {jp(100, true), tx(ppaas.Approved, 100, 0), "reversed in the journal has 0.00 EUR refunded"},
	} {
		got := compareWithPlatform(c.jp, c.tx)
		if c.want == "" {
			require.Empty(t, got, name)
		} else {
			require.Contains(t, got, c.want, name)
		}
	}
}
