package ppaas

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// decodeTransactionJSON and decodeEventJSON are DecodeTransaction and
// DecodeEvent as they were before the plain decoder (decode.go): the
// reference it must agree with.
func decodeTransactionJSON(s *Statuses, b []byte) (Transaction, error) {
	var t Transaction
	if err := json.Unmarshal(b, &t); err != nil {
		return Transaction{}, fmt.Errorf("decode transaction: %w", err)
	}
	if t.TransactionID == "" {
		return Transaction{}, errors.New("decode transaction: transactionId missing")
	}
	if len(t.TransactionID) > MaxIDLen {
		return Transaction{}, fmt.Errorf("decode transaction: transactionId of %d bytes: %w (%d)", len(t.TransactionID), ErrOversized, MaxIDLen)
	}
	t.ClipText()
	t.RawStatus = string(t.Status)
	t.Status = s.State(t.RawStatus)
	return t, nil
}

func decodeEventJSON(s *Statuses, b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	switch {
	case e.EventID == "":
		return Event{}, errors.New("decode event: eventId missing")
	case e.TransactionID == "" && e.ClientTransactionID == "":
		return Event{}, errors.New("decode event: transactionId and clientTransactionId missing")
	case e.Sequence < 0:
		return Event{}, fmt.Errorf("decode event: negative sequence %d", e.Sequence)
	}
	if err := e.checkIDs(); err != nil {
		return Event{}, err
	}
	e.clipText()
	if e.Type == "" {
		e.Type = EventTypeStatus
	}
	e.RawStatus = string(e.Status)
	e.Status = s.State(e.RawStatus)
	return e, nil
}

// platformBodies are bodies as the platform writes them (json.Marshal and
// json.Encoder of this package's types): the plain decoder must take them
// all, or a payment pays for encoding/json again.
func platformBodies(t testing.TB) (txs, events [][]byte) {
	at := time.Date(2026, 12, 2, 9, 30, 1, 123456789, time.UTC)
	full := Transaction{
		TransactionID: "qr-1", ClientTransactionID: "9236613c-ef7e-4a98-bfb6-16048c0e4f9b", PaymentType: "KB",
		PaymentScenario: ConsumerScan, Status: AwaitingConsumer, StatusReason: "waiting for the consumer", Sequence: 3,
		QRCode: &QRCode{Payload: "https://pay.kb.sim.ppaas.test/p/qr-1"}, ProviderReference: "KB-5f3a9c1e",
		PaymentAmount: Amount{Amount: 1250, Currency: "EUR"}, Order: Order{OrderID: "o-1", OrderDescription: "Café crème"},
		RefundedAmount: 250, CreatedAt: at, UpdatedAt: at.Add(time.Second),
		Enrichment: Enrichment{MerchantID: "MID-0a1b2c3d4e5f", AcquirerID: "SIMACQ", AcquirerPOIID: "TID-SN0001"},
	}
	bare := Transaction{TransactionID: "qr-2", Status: Approved}
	for _, tx := range []Transaction{full, bare} {
		b, err := json.Marshal(tx)
		require.NoError(t, err)
		txs = append(txs, b, append(b, '\n'))
	}
	ev := Event{EventID: "5b0f7c1e", Type: EventTypeStatus, TransactionID: "qr-1", ClientTransactionID: "c-1",
		Status: Approved, StatusReason: "paid", Sequence: 2, Time: at, ProviderReference: "KB-1",
		Provider: map[string]string{"paymentType": "KB", "status": "PAID"}}
	for _, e := range []Event{ev, {EventID: "e", TransactionID: "x"}} {
		b, err := json.Marshal(e)
		require.NoError(t, err)
		events = append(events, b)
	}
	for name, into := range map[string]*[][]byte{"testdata/transaction.json": &txs, "testdata/event.json": &events} {
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		*into = append(*into, b)
	}
	return txs, events
}

func TestPlainDecodingTakesPlatformBodies(t *testing.T) {
	txs, events := platformBodies(t)
	for _, b := range txs {
		var tx Transaction
		require.True(t, tx.decodePlain(b), "%s", b)
		checkTransaction(t, b)
	}
	for _, b := range events {
		var e Event
		require.True(t, e.decodePlain(b), "%s", b)
		checkEvent(t, b)
	}
}

// Bodies the plain decoder must leave to encoding/json (or decode the same).
var oddBodies = []string{
	``, ` `, `null`, `[]`, `{}`, `{`, `}`, `{"transactionId":"x"`, `{"transactionId":"x"}x`, `{"transactionId":"x"}}`,
	`{"transactionId":"x",}`, `{,"transactionId":"x"}`, `{"transactionId" "x"}`, `{"transactionId":"x""status":"approved"}`,
	`{"transactionId":"\u0078"}`, `{"transactionId":"a\"b"}`, `{"transaction\u0049d":"x"}`, `{"TransactionId":"x"}`,
	`{"transactionid":"x","status":"approved"}`, `{"transactionId":"x","transactionId":"y"}`, `{"transactionId":null}`,
	`{"transactionId":"x","qrCode":null}`, `{"transactionId":"x","qrCode":{}}`, `{"transactionId":"x","qrCode":{"payload":"p","imagePng":"iVBORw0K"}}`,
	`{"transactionId":"x","qrCode":{"imagePng":""}}`, `{"transactionId":"x","qrCode":{"payload":"a"},"qrCode":{"payload":"b"}}`,
	`{"transactionId":"x","paymentAmount":{"amount":1,"amount":2}}`, `{"transactionId":"x","paymentAmount":{"amount":1.0}}`,
	`{"transactionId":"x","paymentAmount":{"amount":1e2}}`, `{"transactionId":"x","paymentAmount":{"amount":01}}`,
	`{"transactionId":"x","paymentAmount":{"amount":-0}}`, `{"transactionId":"x","paymentAmount":{"amount":-}}`,
	`{"transactionId":"x","paymentAmount":{"amount":9223372036854775807}}`, `{"transactionId":"x","paymentAmount":{"amount":9223372036854775808}}`,
	`{"transactionId":"x","paymentAmount":{"amount":999999999999999999}}`, `{"transactionId":"x","paymentAmount":{"amount":"1"}}`,
	`{"transactionId":"x","sequence":-3}`, `{"transactionId":"x","sequence":+3}`, `{"transactionId":"x","refundedAmount":12 }`,
	`{"transactionId":"x","createdAt":"2025-01-02T03:04:05Z"}`, `{"transactionId":"x","createdAt":"2025-01-02T03:04:05.5+02:00"}`,
	`{"transactionId":"x","createdAt":"2025-01-02 03:04:05Z"}`, `{"transactionId":"x","createdAt":"2025-13-02T03:04:05Z"}`,
	`{"transactionId":"x","createdAt":""}`, `{"transactionId":"x","createdAt":null}`, `{"transactionId":"x","createdAt":1}`,
	`{"transactionId":"x","status":"AUTHORIZED"}`, `{"transactionId":"x","status":"Charged-Back"}`, `{"transactionId":"x","status":1}`,
	`{"transactionId":"x","extra":{"a":[1,2,{"b":null}]}}`, `{"transactionId":"x","RawStatus":"approved"}`, `{"transactionId":"x","-":"a"}`,
	"{\"transactionId\":\"x\xff\"}", "{\"transactionId\":\"x\xc3\xa9\"}", "{\"transactionId\":\"x\x01\"}", "\ufeff{\"transactionId\":\"x\"}",
	"\t{\r\n\"transactionId\" :\t\"x\" }\n", `{"transactionId":""}`, `{"eventId":"e","transactionId":"x"}`,
	`{"eventId":"e","clientTransactionId":"c","sequence":-1}`, `{"eventId":"","transactionId":"x"}`, `{"eventId":"e"}`,
	`{"eventId":"e","transactionId":"x","provider":{}}`, `{"eventId":"e","transactionId":"x","provider":null}`,
	`{"eventId":"e","transactionId":"x","provider":{"a":"1","a":"2"}}`, `{"eventId":"e","transactionId":"x","provider":{"a":1}}`,
	`{"eventId":"e","transactionId":"x","provider":{"a":null}}`, `{"eventId":"e","transactionId":"x","provider":{"\u0061":"b"}}`,
	`{"eventId":"e","transactionId":"x","provider":{"é":"ü"}}`, `{"eventId":"e","transactionId":"x","type":""}`,
	`{"eventId":"e","transactionId":"x","type":"refund.status","time":"2025-01-02T03:04:06.123456789Z"}`,
	`{"eventId":"e","transactionId":"x","time":"2025-01-02T03:04:06.123456789+25:00"}`,
}

func FuzzPlainDecoding(f *testing.F) {
	txs, events := platformBodies(f)
	for _, b := range append(txs, events...) {
		f.Add(b)
	}
	for _, s := range oddBodies {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkTransaction(t, b)
		checkEvent(t, b)
	})
}

func TestPlainDecodingOddBodies(t *testing.T) {
	for _, s := range oddBodies {
		checkTransaction(t, []byte(s))
		checkEvent(t, []byte(s))
	}
}

// checkTransaction: what the plain decoder takes, encoding/json decodes to
// the same value; DecodeTransaction answers as before (value and error).
func checkTransaction(t testing.TB, b []byte) {
	t.Helper()
	var got Transaction
	if got.decodePlain(b) {
		var want Transaction
		require.NoError(t, json.Unmarshal(b, &want), "plain decoder took what encoding/json refuses: %q", b)
		require.True(t, reflect.DeepEqual(want, got), "%q:\nencoding/json %#v\nplain         %#v", b, want, got)
	}
	for _, spec := range []string{"-", "", "AUTHORIZED=approved,RETRO=charged_back"} {
		s1, s2 := statusesPair(t, spec)
		want, wantErr := decodeTransactionJSON(s1, b)
		got, gotErr := s2.DecodeTransaction(b)
		require.Equal(t, fmt.Sprint(wantErr), fmt.Sprint(gotErr), "%q", b)
		require.True(t, reflect.DeepEqual(want, got), "%q:\nbefore %#v\nnow    %#v", b, want, got)
		require.Equal(t, s1.UnknownCount(), s2.UnknownCount())
	}
}

func checkEvent(t testing.TB, b []byte) {
	t.Helper()
	var got Event
	if got.decodePlain(b) {
		var want Event
		require.NoError(t, json.Unmarshal(b, &want), "plain decoder took what encoding/json refuses: %q", b)
		require.True(t, reflect.DeepEqual(want, got), "%q:\nencoding/json %#v\nplain         %#v", b, want, got)
	}
	for _, spec := range []string{"-", "", "AUTHORIZED=approved,RETRO=charged_back"} {
		s1, s2 := statusesPair(t, spec)
		want, wantErr := decodeEventJSON(s1, b)
		got, gotErr := s2.DecodeEvent(b)
		require.Equal(t, fmt.Sprint(wantErr), fmt.Sprint(gotErr), "%q", b)
		require.True(t, reflect.DeepEqual(want, got), "%q:\nbefore %#v\nnow    %#v", b, want, got)
		require.Equal(t, s1.UnknownCount(), s2.UnknownCount())
	}
}

// statusesPair is two Statuses of spec ("-": nil, no configuration).
func statusesPair(t testing.TB, spec string) (*Statuses, *Statuses) {
	if spec == "-" {
		return nil, nil
	}
	s1, err := ParseStatuses(spec)
	require.NoError(t, err)
	s2, _ := ParseStatuses(spec)
	return s1, s2
}
