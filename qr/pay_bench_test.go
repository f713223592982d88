package qr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/internal/fake"
	"github.com/termagent/termagent/ppaas"
)

// Issue 17: the engine's CPU on a payment's path, without the network or the
// journal: a whole Pay against an in-memory platform whose approval event
// goes through the Subscriber's handling (decode, de-dup, apply, mark, ack)
// in another goroutine as soon as the QR is shown, as the broker's delivery
// would; and each stage on its own.

// benchCreated is a create answer as the simulated platform writes it
// (json.Encoder of a ppaas.Transaction).
func benchCreated(ctid string) []byte {
	now := time.Date(2026, 12, 2, 9, 30, 1, 123456789, time.UTC)
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(ppaas.Transaction{
		TransactionID: "qr-" + ctid, ClientTransactionID: ctid, PaymentType: "KB", PaymentScenario: ppaas.ConsumerScan,
		Status: ppaas.AwaitingConsumer, QRCode: &ppaas.QRCode{Payload: "https://pay.kb.sim.ppaas.test/p/qr-" + ctid},
		ProviderReference: "KB-5f3a9c1e", PaymentAmount: ppaas.Amount{Amount: 1250, Currency: "EUR"},
		Order:     ppaas.Order{OrderID: "sale-" + ctid, OrderDescription: "ref-42"},
		CreatedAt: now, UpdatedAt: now,
		Enrichment: ppaas.Enrichment{MerchantID: "MID-0a1b2c3d4e5f", AcquirerID: "SIMACQ", AcquirerPOIID: "TID-SN0001"},
	})
	return buf.Bytes()
}

// benchApproval is the approval event of the payment ctid as the simulated
// platform publishes it.
func benchApproval(ctid string, n int) []byte {
	b, _ := json.Marshal(ppaas.Event{
		EventID: "0b5d8c1e-2f3a-4a0e-9a8c-" + strconv.Itoa(1000000000000+n), Type: ppaas.EventTypeStatus,
		TransactionID: "qr-" + ctid, ClientTransactionID: ctid, Status: ppaas.Approved, Sequence: 1,
		Time: time.Date(2026, 12, 2, 9, 30, 1, 223456789, time.UTC), ProviderReference: "KB-5f3a9c1e",
		Provider: map[string]string{"paymentType": "KB", "status": "PAID"},
	})
	return b
}

// memPlatform answers every create with benchCreated, encoded beforehand
// for the clientTransactionIds it knows (benchCtids).
type memPlatform map[string][]byte

func newMemPlatform() memPlatform {
	p := memPlatform{}
	for _, ctid := range benchCtids {
		p[ctid] = benchCreated(ctid)
	}
	return p
}

func (p memPlatform) RoundTrip(r *http.Request) (*http.Response, error) {
	req, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	const key = `"clientTransactionId":"`
	i := bytes.Index(req, []byte(key))
	if i < 0 {
		return nil, errors.New("no clientTransactionId")
	}
	ctid, _, _ := bytes.Cut(req[i+len(key):], []byte(`"`))
	body, ok := p[string(ctid)]
	if !ok {
		return nil, errors.New("unknown clientTransactionId")
	}
	return &http.Response{
		StatusCode: http.StatusCreated, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r,
	}, nil
}

type nopRecorder struct{ n atomic.Int64 }

func (r *nopRecorder) Record(context.Context, Transition) error         { r.n.Add(1); return nil }
func (r *nopRecorder) RecordScan(context.Context, string, string) error { return nil }

// benchBroker delivers each payment's approval when its QR is shown.
type benchBroker struct {
	sub *Subscriber
	out chan string
}

func (d *benchBroker) Show(_ context.Context, s display.Screen) error {
	if s.QR != nil {
		d.out <- s.ClientTransactionID
	}
	return nil
}

func (d *benchBroker) run(ctx context.Context, approvals map[string][]byte) {
	for ctid := range d.out {
		if err := d.sub.onMessage(ctx, &benchMessage{payload: approvals[ctid]}); err != nil {
			panic(err)
		}
	}
}

// benchMessage is a delivered PUBLISH whose ack goes nowhere.
type benchMessage struct {
	payload []byte
	acked   bool
}

func (m *benchMessage) Duplicate() bool   { return false }
func (m *benchMessage) Qos() byte         { return 1 }
func (m *benchMessage) Retained() bool    { return false }
func (m *benchMessage) Topic() string     { return "ppaas/devices/SN0001/events" }
func (m *benchMessage) MessageID() uint16 { return 1 }
func (m *benchMessage) Payload() []byte   { return m.payload }
func (m *benchMessage) Ack()              { m.acked = true }

func benchEngine(b *testing.B) (*Engine, *benchBroker) {
	b.Helper()
	c := NewClient(&http.Client{Transport: newMemPlatform()}, "https://ppaas.test", Retry{})
	br := &benchBroker{out: make(chan string, 1)}
	e, err := NewEngine(Config{PushEvents: func() bool { return true }}, c, &nopRecorder{}, nopAdvisor{}, br)
	if err != nil {
		b.Fatal(err)
	}
	br.sub, err = NewSubscriber(SubscriberConfig{BrokerURL: "tcp://127.0.0.1:1", Serial: "SN0001", Credentials: staticCreds{},
		Events: &fake.EventLog{}, Handler: e})
	if err != nil {
		b.Fatal(err)
	}
	approvals := map[string][]byte{}
	for i, ctid := range benchCtids {
		approvals[ctid] = benchApproval(ctid, i)
	}
	go br.run(b.Context(), approvals)
	b.Cleanup(func() { close(br.out) })
	return e, br
}

// benchCtids are the payments' clientTransactionIds, used in turn.
var benchCtids = func() []string {
	ids := make([]string, 0, 256)
	for i := range cap(ids) {
		ids = append(ids, "9236613c-ef7e-4a98-bfb6-"+strconv.Itoa(100000000000+i))
	}
	return ids
}()

type staticCreds struct{}

func (staticCreds) Token(context.Context) (string, error) { return "t", nil }
func (staticCreds) Invalidate(string)                     {}

// BenchmarkPayInMemory is one whole payment: create, QR shown, approval event
// applied in the subscriber's goroutine, outcome.
func BenchmarkPayInMemory(b *testing.B) {
	e, _ := benchEngine(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		out, err := e.Pay(ctx, PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 1250, Currency: "EUR"},
			OrderID: "sale-1", OrderDescription: "ref-42", ClientTransactionID: benchCtids[i%len(benchCtids)]})
		if err != nil || out.Result != ResultApproved {
			b.Fatalf("pay: %v %+v", err, out)
		}
		i++
	}
}

// BenchmarkPayInMemoryGoroutine is BenchmarkPayInMemory with each Pay in a
// goroutine of its own, as the Nexo server runs its engine: the stack the
// payment grows is part of its cost.
func BenchmarkPayInMemoryGoroutine(b *testing.B) {
	e, _ := benchEngine(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	type result struct {
		out Outcome
		err error
	}
	done := make(chan result, 1)
	for b.Loop() {
		ctid := benchCtids[i%len(benchCtids)]
		go func() {
			out, err := e.Pay(ctx, PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 1250, Currency: "EUR"},
				OrderID: "sale-1", OrderDescription: "ref-42", ClientTransactionID: ctid})
			done <- result{out, err}
		}()
		r := <-done
		if r.err != nil || r.out.Result != ResultApproved {
			b.Fatalf("pay: %v %+v", r.err, r.out)
		}
		i++
	}
}

func BenchmarkDecodeCreated(b *testing.B) {
	body := benchCreated("9236613c-ef7e-4a98-bfb6-16048c0e4f9b")
	s, err := ppaas.ParseStatuses("")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.DecodeTransaction(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeApproval(b *testing.B) {
	body := benchApproval("9236613c-ef7e-4a98-bfb6-16048c0e4f9b", 1)
	s, err := ppaas.ParseStatuses("")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.DecodeEvent(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateCall is the client's create against the in-memory platform
// (the request built and sent, the answer read and decoded).
func BenchmarkCreateCall(b *testing.B) {
	c := NewClient(&http.Client{Transport: newMemPlatform()}, "https://ppaas.test", Retry{})
	cr := ppaas.CreateRequest{PaymentType: "KB", PaymentScenario: ppaas.ConsumerScan, ClientTransactionID: benchCtids[0],
		PaymentAmount: ppaas.Amount{Amount: 1250, Currency: "EUR"}, Order: ppaas.Order{OrderID: "sale-1", OrderDescription: "ref-42"}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Create(ctx, cr); err != nil {
			b.Fatal(err)
		}
	}
}
