package nexo

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReceipts(t *testing.T) {
	ok := &Response{
		Header: Header{Category: CategoryPayment, POIID: "P-1"},
		Status: ResponseStatus{Result: Success},
		Payment: &PaymentResponse{POITransactionID: TransactionID{ID: "POI-9", TimeStamp: testEpoch}, Result: &PaymentResult{
			Type: PaymentNormal, Brand: "KB", AuthorizedAmount: Amount{Minor: 1099, Currency: "EUR"}, ApprovalCode: "ppaas-1", ProviderReference: "prov-1",
		}},
	}
	rs := Receipts(ok, "Café Flore", false)
	require.Len(t, rs, 2)
	require.Equal(t, CashierReceipt, rs[0].DocumentQualifier)
	require.Equal(t, CustomerReceipt, rs[1].DocumentQualifier)
	require.Equal(t, []string{"Café Flore", "PAYMENT", "Date: 2026-03-01 09:00:00 UTC", "Amount: 10.99 EUR", "Wallet: KB",
		"POI transaction: POI-9", "PPaaS transaction: ppaas-1", "Provider reference: prov-1", "Terminal: P-1", "APPROVED", "CUSTOMER COPY"}, rs[1].Lines)
	dup := Receipts(ok, "", true)
	require.Equal(t, "DUPLICATE", dup[0].Lines[0])
	require.Equal(t, rs[0].Lines[1:], dup[0].Lines[1:], "a reprint is the same text without the merchant line here")

	ok.Payment.Result.Type = PaymentRefund
	require.Equal(t, "REFUND", Receipts(ok, "", false)[0].Lines[0])

	failed := &Response{Status: ResponseStatus{Result: Failure}, Payment: &PaymentResponse{}}
	require.Nil(t, Receipts(failed, "", false), "no receipt for a failed payment")
	require.Nil(t, Receipts(nil, "", false))
}

func TestDocumentQualifierValidation(t *testing.T) {
	raw := `{"SaleToPOIRequest":{"MessageHeader":{"MessageClass":"Service","MessageCategory":"TransactionStatus","MessageType":"Request","ServiceID":"1","SaleID":"POS1","POIID":"P"},"TransactionStatusRequest":{"DocumentQualifier":["Receipt"]}}}`
	_, err := JSONCodec{}.DecodeRequest([]byte(raw))
	var ne *Error
	require.ErrorAs(t, err, &ne)
	require.Equal(t, MessageFormat, ne.Condition)
}
