package world

import (
	"context"

	"github.com/termagent/termagent/nexo"
)

// RefundRequest builds a referenced refund (issue 14): a Payment of type
// Refund of minor units of the payment whose POI transaction id is original.
// The same serviceID again is the same refund (a retry): the POI answers it
// once.
func (p *POS) RefundRequest(serviceID, original string, minor int64, currency string) *nexo.Request {
	h := p.header(nexo.CategoryPayment, serviceID)
	return &nexo.Request{Header: h, Payment: &nexo.PaymentRequest{
		SaleTransactionID:        nexo.TransactionID{ID: "REFUND-" + h.ServiceID, TimeStamp: p.now().UTC()},
		Type:                     nexo.PaymentRefund,
		Amount:                   nexo.Amount{Minor: minor, Currency: currency},
		OriginalPOITransactionID: nexo.TransactionID{ID: original},
	}}
}

// Refund sends a referenced refund and waits for its response.
func (p *POS) Refund(ctx context.Context, serviceID, original string, minor int64, currency string) (*nexo.Response, error) {
	return p.Client.Do(ctx, p.RefundRequest(serviceID, original, minor, currency))
}

// ReversalRequest builds a Reversal of the payment original; amount (a
// decimal in the payment's currency, e.g. "5.00") makes it partial, empty
// reverses the whole payment.
func (p *POS) ReversalRequest(serviceID, original, amount, reason string) *nexo.Request {
	return &nexo.Request{Header: p.header(nexo.CategoryReversal, serviceID), Reversal: &nexo.ReversalRequest{
		OriginalPOITransactionID: nexo.TransactionID{ID: original},
		Reason:                   reason,
		ReversedAmount:           amount,
	}}
}
