package agent

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
)

// The journal's QR transitions are written without encoding/json but must be
// its bytes exactly: recovery and journaledEvent read them with it, and files
// written before hold them.
func TestMarshalTransitionIsJSONMarshal(t *testing.T) {
	now := time.Now()
	for _, tr := range []qr.Transition{
		{},
		{ClientTransactionID: "0b7c6f0e-8f1e-4a53-9d0c-3c2f8f8e1a11", From: "", To: ppaas.Created, At: now, Source: "agent"},
		{ClientTransactionID: "c", TransactionID: "qr-1", From: ppaas.Created, To: ppaas.Approved, At: now.UTC(), Source: "event", EventID: "ev<1>&\"", Sequence: 7, Reason: "line\nbreak \u2028 \xff"},
		{ClientTransactionID: "c", To: qr.Unknown, At: time.Date(2026, 3, 1, 10, 1, 0, 0, time.FixedZone("CET", 3600)), Source: "agent", Reason: "create: Post \"https://x/y\": EOF", Sequence: -1},
	} {
		want, err := json.Marshal(tr)
		require.NoError(t, err)
		got, err := marshalTransition(tr)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
		var back qr.Transition
		require.NoError(t, json.Unmarshal(got, &back))
	}
	_, err := marshalTransition(qr.Transition{At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.Error(t, err, "a time encoding/json refuses is refused")
}

func FuzzMarshalTransition(f *testing.F) {
	f.Add("c", "qr-1", "created", "approved", int64(1772355660), int64(5), 3600, "event", "ev-1", int64(3), "")
	f.Add("<&>", "\xff", "\u2028", "", int64(0), int64(0), 0, "", "", int64(-9), "\x00\t")
	f.Fuzz(func(t *testing.T, ctid, id, from, to string, sec, nsec int64, off int, source, eventID string, seq int64, reason string) {
		tr := qr.Transition{ClientTransactionID: ctid, TransactionID: id, From: ppaas.State(from), To: ppaas.State(to),
			At: time.Unix(sec, nsec).In(time.FixedZone("z", off)), Source: source, EventID: eventID, Sequence: seq, Reason: reason}
		want, werr := json.Marshal(tr)
		got, gerr := marshalTransition(tr)
		require.Equal(t, werr == nil, gerr == nil, "%v / %v", werr, gerr)
		require.Equal(t, string(want), string(got))
	})
}

// The outbox events of a payment's final write are PPaaS's wire: written
// without encoding/json, they must be its bytes exactly.
func TestMarshalResultIsJSONMarshal(t *testing.T) {
	now := time.Now().UTC()
	for _, r := range []TransactionResult{
		{},
		{POITransactionID: "id", SaleID: "POS1", ServiceID: "1002", Category: "Payment", Result: "Success", Amount: 1099, Currency: "EUR", Brand: "KB", ProviderReference: "KB-1", Time: now},
		{POITransactionID: "id", SaleID: "<&>", ServiceID: "\xff", Category: "Reversal", Result: "Failure", ErrorCondition: "Refusal", AdditionalResponse: "declined \"by\" the provider\n", Amount: -5, Time: now.Local()},
	} {
		want, err := json.Marshal(r)
		require.NoError(t, err)
		got, err := marshalResult(r)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
	_, err := marshalResult(TransactionResult{Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.Error(t, err)
}

func TestMarshalReceiptIsJSONMarshal(t *testing.T) {
	now := time.Now().UTC()
	for _, d := range []DigitalReceipt{
		{},
		{POITransactionID: "id", SaleID: "POS1", ServiceID: "1002", Category: "Payment", Receipts: []ReceiptDocument{}, Time: now},
		{POITransactionID: "id", SaleID: "POS1", ServiceID: "1002", Category: "Payment", Time: now, Receipts: []ReceiptDocument{
			{DocumentQualifier: "CashierReceipt", Lines: []string{"Shop <&>", "PAYMENT", "Amount: 10.99 EUR", "\u2028\xff"}},
			{DocumentQualifier: "CustomerReceipt"},
			{DocumentQualifier: "", Lines: []string{}},
		}},
	} {
		want, err := json.Marshal(d)
		require.NoError(t, err)
		got, err := marshalReceipt(d)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
	_, err := marshalReceipt(DigitalReceipt{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.Error(t, err)
}

func FuzzMarshalResultAndReceipt(f *testing.F) {
	f.Add("id", "POS1", "1002", "Payment", "Success", "", "", int64(1099), "EUR", "KB", "KB-1", int64(1772355660), "line one", "line two")
	f.Add("<", "&", ">", "\xff", "\u2028", "Refusal", "no", int64(0), "", "", "", int64(0), "", "\x00")
	f.Fuzz(func(t *testing.T, id, sale, service, cat, result, cond, add string, amount int64, cur, brand, ref string, sec int64, l1, l2 string) {
		at := time.Unix(sec, 0).UTC()
		r := TransactionResult{POITransactionID: id, SaleID: sale, ServiceID: service, Category: cat, Result: result, ErrorCondition: cond,
			AdditionalResponse: add, Amount: amount, Currency: cur, Brand: brand, ProviderReference: ref, Time: at}
		want, werr := json.Marshal(r)
		got, gerr := marshalResult(r)
		require.Equal(t, werr == nil, gerr == nil)
		require.Equal(t, string(want), string(got))
		d := DigitalReceipt{POITransactionID: id, SaleID: sale, ServiceID: service, Category: cat, Time: at,
			Receipts: []ReceiptDocument{{DocumentQualifier: cond, Lines: []string{l1, l2}}, {DocumentQualifier: add}}}
		want, werr = json.Marshal(d)
		got, gerr = marshalReceipt(d)
		require.Equal(t, werr == nil, gerr == nil)
		require.Equal(t, string(want), string(got))
	})
}

func BenchmarkJournalEncoders(b *testing.B) {
	now := time.Now()
	tr := qr.Transition{ClientTransactionID: "0b7c6f0e-8f1e-4a53-9d0c-3c2f8f8e1a11", TransactionID: "qr-0b7c6f0e", From: ppaas.Created, To: ppaas.Approved, At: now, Source: "event", EventID: "ev-1234567890", Sequence: 3}
	r := TransactionResult{POITransactionID: tr.ClientTransactionID, SaleID: "POS1", ServiceID: "1002", Category: "Payment", Result: "Success", Amount: 1099, Currency: "EUR", Brand: "KB", ProviderReference: "KB-1234", Time: now.UTC()}
	lines := []string{"PAYMENT", "Date: 2026-03-01 10:01:00 UTC", "Amount: 10.99 EUR", "Wallet: KB", "POI transaction: " + tr.ClientTransactionID, "PPaaS transaction: qr-0b7c6f0e", "Provider reference: KB-1234", "Terminal: M400-12345678", "APPROVED"}
	d := DigitalReceipt{POITransactionID: r.POITransactionID, SaleID: "POS1", ServiceID: "1002", Category: "Payment", Time: r.Time,
		Receipts: []ReceiptDocument{{DocumentQualifier: "CashierReceipt", Lines: append(lines, "MERCHANT COPY")}, {DocumentQualifier: "CustomerReceipt", Lines: append(lines, "CUSTOMER COPY")}}}
	for _, c := range []struct {
		name string
		fn   func() ([]byte, error)
	}{
		{"transition/json", func() ([]byte, error) { return json.Marshal(tr) }},
		{"transition/jsonw", func() ([]byte, error) { return marshalTransition(tr) }},
		{"result/json", func() ([]byte, error) { return json.Marshal(r) }},
		{"result/jsonw", func() ([]byte, error) { return marshalResult(r) }},
		{"receipt/json", func() ([]byte, error) { return json.Marshal(d) }},
		{"receipt/jsonw", func() ([]byte, error) { return marshalReceipt(d) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
