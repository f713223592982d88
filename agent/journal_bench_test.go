package agent

import (
	"os"
	"testing"

	"github.com/google/uuid"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/store"
)

// BenchmarkJournalPrep measures what Journal.Begin and Journal.Finish do
// before their store write, for the golden approved payment: the started
// record and the payment's id; the final response's record, its transaction
// result and its digital receipt.
func BenchmarkJournalPrep(b *testing.B) {
	reqBody, err := os.ReadFile("../nexo/testdata/golden/02_payment.request.json")
	if err != nil {
		b.Fatal(err)
	}
	respBody, err := os.ReadFile("../nexo/testdata/golden/02_payment.response.json")
	if err != nil {
		b.Fatal(err)
	}
	req, err := nexo.JSONCodec{}.DecodeRequest(reqBody)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := nexo.JSONCodec{}.DecodeResponse(respBody)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("begin", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := appendStarted(make([]byte, 0, 384), req.Header.Category, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", nil, req); err != nil {
				b.Fatal(err)
			}
			_ = uuid.NewString()
		}
	})
	j := journal{receipts: true}
	t := store.Txn{TxnRef: store.TxnRef{ID: "6f1c2a9e-0d4b-4c61-9a57-2b8e3f1d7c40", SaleID: "POS1", ServiceID: "1002"}}
	b.Run("finish", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := responseRecord(resp); err != nil {
				b.Fatal(err)
			}
			if _, ok := resultEvent(t.ID, resp); !ok {
				b.Fatal("no result event")
			}
			if len(j.receiptEvents(t, resp)) != 1 {
				b.Fatal("no receipt event")
			}
		}
	})
}
