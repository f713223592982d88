package nexo

import (
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countingInFlight is an InFlight that records how many requests are being
// served and how many ended.
type countingInFlight struct {
	mu         sync.Mutex
	now, ended int
}

func (c *countingInFlight) Begin() { c.mu.Lock(); c.now++; c.mu.Unlock() }
func (c *countingInFlight) End()   { c.mu.Lock(); c.now--; c.ended++; c.mu.Unlock() }

func (c *countingInFlight) get() (now, ended int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now, c.ended
}

// Issue 17: a request is in flight from its arrival until its answer is
// written: while the engine runs, and no longer once the POS has its answer.
// Exchange (the cloud relay) counts the same way.
func TestInFlightFromArrivalUntilTheAnswerIsWritten(t *testing.T) {
	inflight := &countingInFlight{}
	engine := &fakeEngine{started: make(chan string, 1), ignore: true, release: make(chan struct{})}
	journal := NewMemJournal()
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true}, Deps{
		Engine: engine, Journal: journal, Display: &fakeDisplay{}, Diagnoser: fakeDiagnoser{},
		Outbox: &fakeOutbox{}, InFlight: inflight, Now: newTestClock().Now,
	}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ln := serveTest(t, srv)
	c := &Client{URL: "http://" + ln.Addr().String() + "/nexo", HTTP: testHTTPClient(), Codec: JSONCodec{}}

	answered := make(chan error, 1)
	go func() {
		_, err := c.Do(testCtx(t), paymentReq("S1", "BLOCK", 1000))
		answered <- err
	}()
	select {
	case <-engine.started:
	case <-time.After(10 * time.Second):
		t.Fatal("payment did not reach the engine")
	}
	now, ended := inflight.get()
	require.Equal(t, 1, now, "the payment is in flight while its engine runs")
	require.Zero(t, ended)
	close(engine.release)
	select {
	case err := <-answered:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("payment not answered")
	}
	require.Eventually(t, func() bool { now, ended := inflight.get(); return now == 0 && ended == 1 }, 5*time.Second, time.Millisecond)

	require.NotEmpty(t, srv.Exchange(testCtx(t), []byte(`{"nonsense":true}`)))
	now, ended = inflight.get()
	require.Equal(t, 0, now)
	require.Equal(t, 2, ended, "Exchange counts as a request too")
}

func testHTTPClient() *http.Client { return &http.Client{Timeout: 10 * time.Second} }

type panickingObserver struct{}

func (panickingObserver) ObserveRequest(MessageCategory, Result, ErrorCondition, time.Duration) {
	panic("observer")
}

// A request whose handling panics after its arrival (here the observer) is
// still counted out: the forwarder must not find the POS busy for ever.
func TestInFlightEndsWhenTheHandlerPanics(t *testing.T) {
	inflight := &countingInFlight{}
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true}, Deps{
		Engine: &fakeEngine{}, Journal: NewMemJournal(), Display: &fakeDisplay{}, Diagnoser: fakeDiagnoser{},
		Outbox: &fakeOutbox{}, Observer: panickingObserver{}, InFlight: inflight, Now: newTestClock().Now,
	}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ln := serveTest(t, srv)
	c := &Client{URL: "http://" + ln.Addr().String() + "/nexo", HTTP: testHTTPClient(), Codec: JSONCodec{}}
	_, _ = c.Do(testCtx(t), &Request{Header: testHeader(CategoryDiagnosis, "D1"), Diagnosis: &DiagnosisRequest{}})
	require.Eventually(t, func() bool { now, ended := inflight.get(); return now == 0 && ended == 1 }, 5*time.Second, time.Millisecond)
}

// endWaitsForTheAnswer is an InFlight whose End waits (up to a bound) until
// the POS holds its answer, and records whether it did.
type endWaitsForTheAnswer struct {
	answered chan struct{}
	mu       sync.Mutex
	before   []bool // per End: the answer was already with the POS
}

func (e *endWaitsForTheAnswer) Begin() {}
func (e *endWaitsForTheAnswer) End() {
	got := false
	select {
	case <-e.answered:
		got = true
	case <-time.After(2 * time.Second):
	}
	e.mu.Lock()
	e.before = append(e.before, got)
	e.mu.Unlock()
}

// Issue 17: the forwarder's deliveries wait for InFlight to end, so that
// they are not ahead of the POS's answer on the terminal's CPUs. The answer
// must then be on the wire before End, not buffered until net/http finishes
// the request after the handler returns.
func TestAnswerIsWrittenBeforeInFlightEnds(t *testing.T) {
	inflight := &endWaitsForTheAnswer{answered: make(chan struct{})}
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true}, Deps{
		Engine: &fakeEngine{}, Journal: NewMemJournal(), Display: &fakeDisplay{}, Diagnoser: fakeDiagnoser{},
		Outbox: &fakeOutbox{}, InFlight: inflight, Now: newTestClock().Now,
	}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ln := serveTest(t, srv)
	c := &Client{URL: "http://" + ln.Addr().String() + "/nexo", HTTP: testHTTPClient(), Codec: JSONCodec{}}

	resp, err := c.Do(testCtx(t), paymentReq("S1", "OK", 1000))
	require.NoError(t, err)
	require.Equal(t, Success, resp.Status.Result)
	close(inflight.answered)
	require.Eventually(t, func() bool {
		inflight.mu.Lock()
		defer inflight.mu.Unlock()
		return len(inflight.before) == 1
	}, 5*time.Second, time.Millisecond)
	inflight.mu.Lock()
	defer inflight.mu.Unlock()
	require.True(t, inflight.before[0], "the POS had its answer before the request stopped counting as in flight")
}
