package nexo

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkGetTotals100k computes the totals of a period of 100,000 approved
// payments (MemJournal: the cost is decoding and grouping, not storage).
func BenchmarkGetTotals100k(b *testing.B) {
	j := NewMemJournal()
	ctx := context.Background()
	for i := range 100000 {
		req := paymentReq(fmt.Sprintf("S%d", i), []string{"KB", "PTI", "PLEDG"}[i%3], int64(100+i%900))
		req.Payment.OperatorID = fmt.Sprintf("op%d", i%7)
		h := req.Header
		h.Type = TypeResponse
		res := &PaymentResult{Type: PaymentNormal, Brand: req.Payment.AllowedBrands[0], InstrumentType: InstrumentMobile, AuthorizedAmount: req.Payment.Amount}
		resp := &Response{Header: h, Status: ResponseStatus{Result: Success},
			Payment: &PaymentResponse{POITransactionID: TransactionID{ID: fmt.Sprintf("POI-%d", i), TimeStamp: testEpoch}, Result: res}}
		id, err := j.Begin(ctx, JournalEntry{SaleID: h.SaleID, ServiceID: h.ServiceID, Category: CategoryPayment, Request: req, State: TxInProgress})
		if err != nil {
			b.Fatal(err)
		}
		if err := j.Finish(ctx, Txn{SaleID: h.SaleID, ServiceID: h.ServiceID, POITransactionID: id}, resp, testEpoch); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		_, totals, err := periodTotals(ctx, j, 0, []string{DetailOperatorID}, nil)
		if err != nil || len(totals) != 21 {
			b.Fatalf("totals %d, %v", len(totals), err)
		}
	}
}
