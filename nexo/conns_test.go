package nexo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// logBuffer is a log destination tests can read while the server writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// junkConn opens a connection that sends one request, reads its answer and
// then stays open; it returns once the server counts it idle.
func junkConn(t *testing.T, srv *Server, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = fmt.Fprintf(c, "POST /nexo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	// The server marks it idle just after the answer is out.
	require.Eventually(t, func() bool { return serverConnState(srv, c) == connIdle }, 5*time.Second, time.Millisecond)
	return c
}

// serverConnState is the state of the server's end of the client's c, -1 if
// the server has no such connection open.
func serverConnState(srv *Server, c net.Conn) int32 {
	srv.conns.mu.Lock()
	defer srv.conns.mu.Unlock()
	for _, cc := range srv.conns.slots {
		if cc != nil && cc.RemoteAddr().String() == c.LocalAddr().String() {
			return cc.state.Load()
		}
	}
	return -1
}

// requireClosed checks that the server closed c.
func requireClosed(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, msg)
}

func plainAddr(env *testEnv) string {
	return strings.TrimSuffix(strings.TrimPrefix(env.url, "http://"), "/nexo")
}

// The hostile review's scenario: peers that hold every connection slot,
// each with a request now and then, no longer lock the POS out: each new
// connection closes the one idle longest.
func TestIdleConnsCannotLockPOSOut(t *testing.T) {
	logs := &logBuffer{}
	env := startServer(t, ServerConfig{MaxConns: 2}, &testEnv{log: slog.New(slog.NewJSONHandler(logs, nil))})
	addr := plainAddr(env)
	pos := &Client{URL: env.url, HTTP: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	var oldest net.Conn
	for round := range 3 {
		// The junk peer fills every slot again.
		for i := range 2 {
			c := junkConn(t, env.srv, addr)
			if round == 0 && i == 0 {
				oldest = c
			}
		}
		resp, err := pos.Do(testCtx(t), diagnosisReq(fmt.Sprint(round+1)))
		requireSuccess(t, resp, err)
		require.LessOrEqual(t, env.srv.Stats().Conns, int64(2), "the limit holds")
		// The POS's connection closes after its answer.
		require.Eventually(t, func() bool { return env.srv.Stats().Conns == 1 }, 5*time.Second, time.Millisecond)
	}
	requireClosed(t, oldest, "the connection idle longest was closed")
	st := env.srv.Stats()
	require.Zero(t, st.ConnsRefused)
	require.GreaterOrEqual(t, st.ConnsEvicted, int64(3), "each junk connection past the limit, and each POS connection, evicted one")
	require.Contains(t, logs.String(), `"msg":"nexo server: too many connections; closing the one idle longest"`)
}

// A connection that has sent nothing for longer than the grace is evicted
// too, long before ReadHeaderTimeout would close it.
func TestSilentConnsEvictedAfterGrace(t *testing.T) {
	env := startServer(t, ServerConfig{MaxConns: 2, ReadHeaderTimeout: time.Minute}, &testEnv{tune: func(s *Server) { s.conns.newGrace = 20 * time.Millisecond }})
	addr := plainAddr(env)
	for range 2 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
	}
	require.Eventually(t, func() bool { return env.srv.Stats().Conns == 2 }, 5*time.Second, 5*time.Millisecond)
	pos := &Client{URL: env.url, HTTP: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	// Refused while the silent connections are within their grace, then
	// served.
	require.Eventually(t, func() bool {
		resp, err := pos.Do(testCtx(t), diagnosisReq("1"))
		return err == nil && resp.Status.Result == Success
	}, 5*time.Second, 10*time.Millisecond)
	require.Positive(t, env.srv.Stats().ConnsEvicted)
}

// A connection with a request in flight is never evicted, even with no grace
// for silent ones: with it and an idle one open, a new connection closes the
// idle one; with every slot busy, the new connection is refused. The payment
// in flight is answered.
func TestBusyConnNeverEvicted(t *testing.T) {
	for _, max := range []int{1, 2} {
		t.Run(fmt.Sprintf("MaxConns=%d", max), func(t *testing.T) {
			engine := &fakeEngine{started: make(chan string, 1), ignore: true, release: make(chan struct{})}
			env := startServer(t, ServerConfig{MaxConns: max}, &testEnv{engine: engine, tune: func(s *Server) { s.conns.newGrace = 0 }})
			addr := plainAddr(env)
			released := false
			defer func() {
				if !released {
					close(engine.release)
				}
			}()
			paid := make(chan error, 1)
			go func() {
				resp, err := env.client(nil, nil).Do(testCtx(t), paymentReq("P1", "BLOCK", 100))
				if err == nil && resp.Status.Result != Success {
					err = fmt.Errorf("payment: %s", resp.Status.Result)
				}
				paid <- err
			}()
			select {
			case <-engine.started:
			case <-time.After(10 * time.Second):
				t.Fatal("payment did not reach the engine")
			}
			if max == 2 {
				junk := junkConn(t, env.srv, addr)
				pos := &Client{URL: env.url, HTTP: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
				resp, err := pos.Do(testCtx(t), diagnosisReq("1"))
				requireSuccess(t, resp, err)
				requireClosed(t, junk, "the idle connection was evicted")
				require.EqualValues(t, 1, env.srv.Stats().ConnsEvicted)
				// The diagnosis's connection closes after its answer.
				require.Eventually(t, func() bool { return env.srv.Stats().Conns == 1 }, 5*time.Second, 5*time.Millisecond)
				junkConn(t, env.srv, addr) // the last slot, idle: a new connection may evict it
				extra := junkConn(t, env.srv, addr)
				require.EqualValues(t, 2, env.srv.Stats().ConnsEvicted)
				// Now the extra's slot is taken too: a request on it, within
				// its grace (an hour from here on), waits for the rest of
				// its body.
				env.srv.conns.mu.Lock()
				env.srv.conns.newGrace = time.Hour
				env.srv.conns.mu.Unlock()
				_, err = fmt.Fprintf(extra, "POST /nexo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{")
				require.NoError(t, err)
				require.Eventually(t, func() bool { return serverConnState(env.srv, extra) == connReading }, 5*time.Second, time.Millisecond)
			}
			// Every slot is busy: the new connection is refused, the busy
			// ones stay.
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			requireClosed(t, c, "a connection past busy slots is closed")
			c.Close()
			require.EqualValues(t, 1, env.srv.Stats().ConnsRefused)
			require.EqualValues(t, 2*(max-1), env.srv.Stats().ConnsEvicted, "no busy connection was evicted")
			released = true
			close(engine.release)
			select {
			case err := <-paid:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("payment not answered")
			}
		})
	}
}

// Over TLS with MaxConns 1, a client forcing HTTP/2 gets one request in
// flight, not one per stream: the others' connections are refused.
func TestTLSConnLimitBoundsRequests(t *testing.T) {
	stls, ctls := testTLS(t)
	inf := &inFlightPeak{gate: make(chan struct{})} // each request held once read
	j := NewMemJournal()
	srv, err := NewServer(ServerConfig{POIID: testPOIID, TLSConfig: stls, MaxConns: 1}, Deps{Engine: &fakeEngine{}, Journal: j, Display: &fakeDisplay{}, Diagnoser: fakeDiagnoser{}, Outbox: &fakeOutbox{}, Ledger: j, Synchroniser: fakeSynchroniser{}, InFlight: inf}, nil)
	require.NoError(t, err)
	srv.conns.newGrace = time.Hour
	ln := serveTest(t, srv)
	t.Cleanup(func() { close(inf.gate) }) // before the server's shutdown waits for its handlers
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: ctls, ForceAttemptHTTP2: true}}
	const n = 20
	failed := postMany(t, hc, "https://"+ln.Addr().String()+"/nexo", n)
	for range n - 1 {
		select {
		case err := <-failed:
			require.Error(t, err, "a request past the limit is refused")
		case <-time.After(10 * time.Second):
			t.Fatal("requests past the limit are not refused")
		}
	}
	require.Eventually(t, func() bool { return inf.now() == 1 }, 5*time.Second, 5*time.Millisecond)
	require.EqualValues(t, 1, inf.peak())
	st := srv.Stats()
	require.EqualValues(t, 1, st.Conns)
	require.EqualValues(t, n-1, st.ConnsRefused)
}

// pipeConn is one end of a net.Pipe, closed at the test's end.
func pipeConn(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}

// The limit on its own: which connection goes, which never does, and the
// slots' accounting.
func TestConnLimitEviction(t *testing.T) {
	l := newConnLimit(3, slog.New(slog.DiscardHandler))
	l.newGrace = time.Second
	t0 := time.Now()
	var cs []*countedConn
	for i := range 3 {
		c := l.admit(pipeConn(t), t0.Add(time.Duration(i)*time.Millisecond))
		require.NotNil(t, c)
		cs = append(cs, c)
	}
	// 0 serves a request (its body read: claimed); 1 and 2 are between
	// requests, 2 idle longest.
	l.track(cs[0], http.StateActive)
	require.True(t, cs[0].claim())
	for _, i := range []int{2, 1} {
		l.track(cs[i], http.StateActive)
		l.track(cs[i], http.StateIdle)
	}
	require.Same(t, cs[2], l.slots[cs[2].slot])
	d := l.admit(pipeConn(t), time.Now())
	require.NotNil(t, d)
	require.Equal(t, connEvicted, cs[2].state.Load(), "the one idle longest goes")
	require.False(t, cs[2].claim(), "an evicted connection serves nothing more")
	require.EqualValues(t, 3, l.open.Load())

	// 1 goes idle → active through a pipelined request (no ConnState hook):
	// claimConn protects it. d is new, within its grace.
	require.True(t, claimConn(context.WithValue(context.Background(), connKey{}, cs[1])))
	require.Nil(t, l.admit(pipeConn(t), time.Now()), "every slot busy or just accepted: refused")
	require.EqualValues(t, 1, l.refused.Load())

	// Past its grace, the silent d goes.
	e := l.admit(pipeConn(t), time.Now().Add(2*time.Second))
	require.NotNil(t, e)
	require.Equal(t, connEvicted, d.state.Load())
	require.Equal(t, connActive, cs[0].state.Load())
	require.Equal(t, connActive, cs[1].state.Load())
	require.EqualValues(t, 2, l.evicted.Load())

	// Closing frees a slot (once) for a connection without eviction.
	require.NoError(t, cs[0].Close())
	_ = cs[0].Close()
	require.EqualValues(t, 2, l.open.Load())
	require.NotNil(t, l.admit(pipeConn(t), time.Now()))
	require.EqualValues(t, 2, l.evicted.Load())
	require.EqualValues(t, 3, l.open.Load())
	require.Len(t, l.free, 0)
}

// The per-request bookkeeping (ConnState and the handler's claim), over TLS
// too, allocates nothing.
func TestConnTrackingAllocatesNothing(t *testing.T) {
	l := newConnLimit(1, slog.New(slog.DiscardHandler))
	cc := l.admit(pipeConn(t), time.Now())
	tc := tls.Server(cc, &tls.Config{})
	require.Same(t, cc, counted(tc))
	ctx := withConn(context.Background(), tc)
	allocs := testing.AllocsPerRun(1000, func() {
		l.track(tc, http.StateActive)
		if !claimConn(ctx) {
			panic("not claimed")
		}
		l.track(tc, http.StateIdle)
	})
	require.Zero(t, allocs)
	require.Equal(t, connIdle, cc.state.Load())
}

// Review D: peers that send a POST's headers and withhold the body held
// "busy" slots for ReadTimeout, and the POS was refused. A request still
// arriving is evictable once it has taken the grace; a request read whole is
// not.
func TestHalfSentBodiesCannotLockPOSOut(t *testing.T) {
	env := startServer(t, ServerConfig{MaxConns: 2, ReadTimeout: time.Minute}, &testEnv{tune: func(s *Server) { s.conns.newGrace = 50 * time.Millisecond }})
	addr := plainAddr(env)
	var junk []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = fmt.Fprintf(c, "POST /nexo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{")
		require.NoError(t, err)
		require.Eventually(t, func() bool { return serverConnState(env.srv, c) == connReading }, 5*time.Second, time.Millisecond)
		junk = append(junk, c)
	}
	pos := &Client{URL: env.url, HTTP: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	require.Eventually(t, func() bool {
		resp, err := pos.Do(testCtx(t), diagnosisReq("1"))
		return err == nil && resp.Status.Result == Success
	}, 5*time.Second, 10*time.Millisecond, "the POS is served once the half-sent requests have had their grace")
	require.Positive(t, env.srv.Stats().ConnsEvicted)
	requireClosed(t, junk[0], "the stalled request's connection is closed")
}

// Review D: a keep-alive connection whose next request was still arriving
// (its headers not complete) counted as idle, and a new connection evicted
// it: the POS's request was lost unanswered. Its first bytes now mark it
// arriving, within the grace.
func TestRequestArrivingOnIdleConnIsKept(t *testing.T) {
	env := startServer(t, ServerConfig{MaxConns: 1}, &testEnv{})
	addr := plainAddr(env)
	pos := junkConn(t, env.srv, addr) // one request answered, keep-alive idle
	_, err := fmt.Fprintf(pos, "POST /nexo HTTP/1.1\r\nHost: x\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return serverConnState(env.srv, pos) == connReading }, 5*time.Second, time.Millisecond)
	other, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer other.Close()
	requireClosed(t, other, "the newcomer is refused: the only slot has a request arriving")
	require.Zero(t, env.srv.Stats().ConnsEvicted)
	body := `{"SaleToPOIRequest":{"MessageHeader":{"ProtocolVersion":"3.0","MessageClass":"Service","MessageCategory":"Diagnosis","MessageType":"Request","ServiceID":"D1","SaleID":"POS1","POIID":"` + testPOIID + `"},"DiagnosisRequest":{}}}`
	_, err = fmt.Fprintf(pos, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	require.NoError(t, err)
	require.NoError(t, pos.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(pos), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(b), `"Result":"Success"`)
}

// Review D: a request on a connection evicted while it was arriving (marked,
// its close still to come) got net/http's empty 200 OK. It gets no answer:
// the connection is aborted.
func TestEvictedConnectionGetsNoAnswer(t *testing.T) {
	env := startServer(t, ServerConfig{MaxConns: 2}, &testEnv{})
	pos := junkConn(t, env.srv, plainAddr(env))
	env.srv.conns.mu.Lock()
	for _, cc := range env.srv.conns.slots {
		if cc != nil && cc.RemoteAddr().String() == pos.LocalAddr().String() {
			cc.state.Store(connEvicted) // as evictLocked does, the Close still to come
		}
	}
	env.srv.conns.mu.Unlock()
	_, err := fmt.Fprintf(pos, "POST /nexo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	require.NoError(t, err)
	requireClosed(t, pos, "no answer, the connection aborted")
}
