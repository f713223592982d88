package ppaas

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCreateRequestMatchesSeed(t *testing.T) {
	want, err := os.ReadFile("testdata/create_request.json")
	require.NoError(t, err)
	req := CreateRequest{
		PaymentType: "KB", PaymentScenario: ConsumerScan, ScannedPaymentID: "281666027690188713769014",
		ClientTransactionID: "9236613c-ef7e-4a98-bfb6-16048c0e4f9b",
		PaymentAmount:       Amount{Amount: 2000, Currency: "EUR"},
		Order:               Order{OrderID: "628ac1ce-480a-40bd-8533-48a27371cac0", OrderDescription: "Venmo Test"},
	}
	got, err := json.Marshal(req)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(got))
	require.NoError(t, req.Validate())
}

func TestCreateRequestValidate(t *testing.T) {
	ok := CreateRequest{PaymentType: "KB", PaymentScenario: ConsumerScan, ClientTransactionID: "x",
		PaymentAmount: Amount{Amount: 1, Currency: "EUR"}, Order: Order{OrderID: "o"}}
	tests := []struct {
		name string
		mod  func(*CreateRequest)
		ok   bool
	}{
		{"consumerscan without scanned id", func(*CreateRequest) {}, true},
		{"merchantscan without scanned id", func(r *CreateRequest) { r.PaymentScenario = MerchantScan }, false},
		{"merchantscan with scanned id", func(r *CreateRequest) { r.PaymentScenario = MerchantScan; r.ScannedPaymentID = "1" }, true},
		{"bad scenario", func(r *CreateRequest) { r.PaymentScenario = "tap" }, false},
		{"zero amount", func(r *CreateRequest) { r.PaymentAmount.Amount = 0 }, false},
		{"negative amount", func(r *CreateRequest) { r.PaymentAmount.Amount = -5 }, false},
		{"bad currency", func(r *CreateRequest) { r.PaymentAmount.Currency = "EURO" }, false},
		{"no order", func(r *CreateRequest) { r.Order.OrderID = "" }, false},
		{"no client id", func(r *CreateRequest) { r.ClientTransactionID = "" }, false},
		{"no type", func(r *CreateRequest) { r.PaymentType = "" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.mod(&r)
			if tc.ok {
				require.NoError(t, r.Validate())
			} else {
				require.Error(t, r.Validate())
			}
		})
	}
}

func TestDecodeFixtures(t *testing.T) {
	b, err := os.ReadFile("testdata/transaction.json")
	require.NoError(t, err)
	tx, err := DecodeTransaction(b)
	require.NoError(t, err)
	require.Equal(t, AwaitingConsumer, tx.Status)
	require.Equal(t, "https://pay.kb.sim.ppaas.test/p/qr-1", tx.QRCode.Payload)
	require.Equal(t, int64(2000), tx.PaymentAmount.Amount)

	b, err = os.ReadFile("testdata/event.json")
	require.NoError(t, err)
	ev, err := DecodeEvent(b)
	require.NoError(t, err)
	require.Equal(t, Approved, ev.Status)
	require.Equal(t, int64(2), ev.Sequence)
	require.Equal(t, EventTypeStatus, ev.Type)
}

func TestDecodeEventRejects(t *testing.T) {
	for name, in := range map[string]string{
		"not json":       `{`,
		"no event id":    `{"transactionId":"a","status":"approved"}`,
		"no transaction": `{"eventId":"e","status":"approved"}`,
		"negative seq":   `{"eventId":"e","transactionId":"a","status":"approved","sequence":-1}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeEvent([]byte(in))
			require.Error(t, err)
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	b, _ := os.ReadFile("testdata/event.json")
	f.Add(b)
	f.Add([]byte(`{"eventId":"e","transactionId":"a","status":"pending","sequence":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, in []byte) {
		ev, err := DecodeEvent(in)
		if err != nil {
			return
		}
		// Whatever decodes must be usable: an id, a target, a wire status.
		if ev.EventID == "" || (ev.TransactionID == "" && ev.ClientTransactionID == "") || !ev.Status.wire() || ev.Sequence < 0 {
			t.Fatalf("accepted invalid event %+v", ev)
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeEvent(again); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzDecodeTransaction(f *testing.F) {
	b, _ := os.ReadFile("testdata/transaction.json")
	f.Add(b)
	f.Add([]byte(`{"transactionId":"x","status":"approved"}`))
	f.Add([]byte(`{"transactionId":"x","status":"approved","qrCode":{"imagePng":"!!"}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		tx, err := DecodeTransaction(in)
		if err != nil {
			return
		}
		if tx.TransactionID == "" || !tx.Status.wire() {
			t.Fatalf("accepted invalid transaction %+v", tx)
		}
	})
}
