package nexo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testPOIID = "M400-12345678"

var testEpoch = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// testClock is a settable clock.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(testEpoch.UnixNano())
	return c
}
func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeEngine approves, declines, blocks or panics depending on the brand.
type fakeEngine struct {
	mu      sync.Mutex
	n       int
	started chan string // receives the SaleTransactionID of each Pay, if not nil
	ignore  bool        // BLOCK ignores ctx when set
	release chan struct{}
}

func (f *fakeEngine) Pay(ctx context.Context, txn Txn, req PaymentRequest) (PaymentResult, error) {
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	if txn.SaleID == "" || txn.ServiceID == "" || txn.POITransactionID == "" {
		return PaymentResult{}, Errorf(UnavailableService, "engine called without the journaled transaction: %+v", txn)
	}
	if f.started != nil {
		f.started <- req.SaleTransactionID.ID
	}
	brand := ""
	if len(req.AllowedBrands) > 0 {
		brand = req.AllowedBrands[0]
	}
	switch brand {
	case "DECLINE":
		return PaymentResult{}, Errorf(Refusal, "declined by provider")
	case "PANIC":
		panic("engine exploded")
	case "PLAINERR":
		return PaymentResult{}, errors.New("socket reset")
	case "BLOCK":
		if f.ignore {
			<-f.release
			return PaymentResult{}, nil
		}
		<-ctx.Done()
		if errors.Is(context.Cause(ctx), ErrAborted) {
			return PaymentResult{}, Errorf(Aborted, "cancelled at provider")
		}
		return PaymentResult{}, ctx.Err()
	}
	res := PaymentResult{
		POITransactionID:  TransactionID{ID: fmt.Sprintf("POI-TX-%d", n), TimeStamp: testEpoch.Add(5 * time.Second)},
		Brand:             brand,
		InstrumentType:    req.InstrumentType,
		AcquirerID:        "PPaaS",
		ProviderReference: fmt.Sprintf("prov-%d", n),
		ApprovalCode:      "A1B2C3",
	}
	if req.ScannedCode != "" { // the scanned-code golden: a platform that enriched the payment
		res.MerchantID, res.AcquirerPOIID = "MERCHANT-"+req.ScannedCode[:4], "ACQ-POI-1"
	}
	return res, nil
}

func (f *fakeEngine) Reverse(_ context.Context, _ Txn, req ReversalRequest) (ReversalResult, error) {
	if req.OriginalPOITransactionID.ID != "POI-TX-1" {
		return ReversalResult{}, Errorf(NotFound, "unknown transaction")
	}
	res := ReversalResult{POITransactionID: TransactionID{ID: "POI-REV-1", TimeStamp: testEpoch.Add(time.Minute)}}
	if req.ReversedAmount != "" { // refunds: a partial reversal of the EUR golden payment
		minor, err := ParseAmount("ReversedAmount", req.ReversedAmount, "EUR")
		if err != nil {
			return ReversalResult{}, err
		}
		res.ReversedAmount = Amount{Minor: minor, Currency: "EUR"}
	}
	return res, nil
}

type fakeDisplay struct {
	mu    sync.Mutex
	shown []DisplayOutput
}

func (d *fakeDisplay) Show(_ context.Context, o []DisplayOutput) error {
	if len(o) > 0 && len(o[0].Text) > 0 && o[0].Text[0] == "PANIC" {
		panic("display exploded")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.shown = append(d.shown, o...)
	return nil
}

type fakeDiagnoser struct{}

func (fakeDiagnoser) Diagnose(context.Context) (Health, error) {
	return Health{Hosts: []HostStatus{{AcquirerID: "ppaas-auth", Reachable: true}, {AcquirerID: "ppaas-mqtt", Reachable: false}}, OutboxDepth: 3}, nil
}

// fakeSynchroniser is a platform that has every payment but those of brand
// "LOST".
type fakeSynchroniser struct{}

func (fakeSynchroniser) Synchronise(_ context.Context, _, _ time.Time, ps []JournaledPayment) ([]string, error) {
	var diffs []string
	for _, p := range ps {
		if p.Brand == "LOST" {
			diffs = append(diffs, "payment "+p.POITransactionID+" is unknown to the platform")
		}
	}
	return diffs, nil
}

type fakeOutbox struct {
	mu     sync.Mutex
	events []PendingEvent
}

func (o *fakeOutbox) EnqueueEvent(_ context.Context, ev PendingEvent) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, ev)
	return nil
}

type testEnv struct {
	srv     *Server
	url     string
	engine  *fakeEngine
	journal *MemJournal
	clock   *testClock
	display *fakeDisplay
	outbox  *fakeOutbox
	obs     Observer
	log     *slog.Logger  // discarded when nil
	tune    func(*Server) // when set, called before the server serves
}

// startServer runs a Server on 127.0.0.1:0 (plain HTTP unless cfg has TLS).
func startServer(t testing.TB, cfg ServerConfig, env *testEnv) *testEnv {
	t.Helper()
	if env == nil {
		env = &testEnv{}
	}
	if env.engine == nil {
		env.engine = &fakeEngine{}
	}
	if env.journal == nil {
		env.journal = NewMemJournal()
	}
	if env.clock == nil {
		env.clock = newTestClock()
	}
	env.display, env.outbox = &fakeDisplay{}, &fakeOutbox{}
	if cfg.POIID == "" {
		cfg.POIID = testPOIID
	}
	if cfg.TLSConfig == nil {
		cfg.AllowPlainHTTP = true
	}
	if env.log == nil {
		env.log = slog.New(slog.DiscardHandler)
	}
	srv, err := NewServer(cfg, Deps{
		Engine: env.engine, Journal: env.journal, Display: env.display,
		Diagnoser: fakeDiagnoser{}, Outbox: env.outbox, Observer: env.obs, Now: env.clock.Now,
		Ledger: env.journal, Synchroniser: fakeSynchroniser{},
	}, env.log)
	require.NoError(t, err)
	if env.tune != nil {
		env.tune(srv)
	}
	ln := serveTest(t, srv)
	env.srv = srv
	scheme := "http"
	if cfg.TLSConfig != nil {
		scheme = "https"
	}
	env.url = scheme + "://" + ln.Addr().String() + "/nexo"
	return env
}

func (e *testEnv) client(codec Codec, key *Key) *Client {
	return &Client{URL: e.url, HTTP: &http.Client{Timeout: 10 * time.Second}, Codec: codec, Key: key}
}

func testHeader(cat MessageCategory, serviceID string) Header {
	return Header{ProtocolVersion: "3.0", Class: ClassService, Category: cat, Type: TypeRequest, ServiceID: serviceID, SaleID: "POS1", POIID: testPOIID}
}

func paymentReq(serviceID, brand string, minor int64) *Request {
	return &Request{
		Header: testHeader(CategoryPayment, serviceID),
		Payment: &PaymentRequest{
			SaleTransactionID: TransactionID{ID: "ORD-" + serviceID, TimeStamp: testEpoch},
			Type:              PaymentNormal,
			Amount:            Amount{Minor: minor, Currency: "EUR"},
			AllowedBrands:     []string{brand},
		},
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (f *fakeEngine) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// serveTest serves srv on a free loopback port until the test ends, and
// checks it shuts down cleanly.
func serveTest(t testing.TB, srv *Server) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		require.NoError(t, <-served)
	})
	return ln
}
