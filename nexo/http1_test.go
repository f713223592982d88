package nexo

import (
	"crypto/tls"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The Nexo listener speaks HTTP/1.1 only: a client forcing HTTP/2 gets
// HTTP/1.1, one offering only "h2" fails the handshake.
func TestTLSHTTP1Only(t *testing.T) {
	stls, ctls := testTLS(t)
	env := startServer(t, ServerConfig{TLSConfig: stls}, nil)
	addr := strings.TrimSuffix(strings.TrimPrefix(env.url, "https://"), "/nexo")
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ctls.Clone(), ForceAttemptHTTP2: true}}
	resp, err := hc.Post("https://"+addr+"/nexo", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "HTTP/1.1", resp.Proto)

	for _, c := range []struct {
		offer []string
		want  string // "" for a failed handshake
	}{{[]string{"h2", "http/1.1"}, "http/1.1"}, {[]string{"h2"}, ""}, {nil, ""}} {
		cfg := ctls.Clone()
		cfg.NextProtos = c.offer
		conn, err := tls.Dial("tcp", addr, cfg)
		switch {
		case c.offer == nil:
			require.NoError(t, err, "no ALPN")
			require.Empty(t, conn.ConnectionState().NegotiatedProtocol)
			conn.Close()
		case c.want == "":
			require.ErrorContains(t, err, "no application protocol", "%v", c.offer)
		default:
			require.NoError(t, err)
			require.Equal(t, c.want, conn.ConnectionState().NegotiatedProtocol)
			conn.Close()
		}
	}
}

// A client forcing HTTP/2 and sharing one connection for 20 requests gets
// one of them served at a time (HTTP/2 would run them all at once, each with
// its body buffer allocated, over the one connection MaxConns allows).
func TestTLSOneConnectionOneRequest(t *testing.T) {
	stls, ctls := testTLS(t)
	inf := &inFlightPeak{gate: make(chan struct{})} // each request held once read
	j := NewMemJournal()
	srv, err := NewServer(ServerConfig{POIID: testPOIID, TLSConfig: stls, MaxConns: 1}, Deps{Engine: &fakeEngine{}, Journal: j, Display: &fakeDisplay{}, Diagnoser: fakeDiagnoser{}, Outbox: &fakeOutbox{}, Ledger: j, Synchroniser: fakeSynchroniser{}, InFlight: inf}, nil)
	require.NoError(t, err)
	ln := serveTest(t, srv)
	t.Cleanup(func() { close(inf.gate) }) // before the server's shutdown waits for its handlers
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: ctls, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}}
	_ = postMany(t, hc, "https://"+ln.Addr().String()+"/nexo", 20)
	require.Eventually(t, func() bool { return inf.now() >= 1 }, 5*time.Second, time.Millisecond)
	// Over HTTP/2 the other 19 arrive within milliseconds.
	require.Never(t, func() bool { return inf.now() > 1 }, 300*time.Millisecond, 5*time.Millisecond)
	require.EqualValues(t, 1, inf.peak())
	require.EqualValues(t, 1, srv.Stats().Conns)
}

// inFlightPeak is an InFlight recording the most requests in flight at once.
type inFlightPeak struct {
	mu      sync.Mutex
	n, most int
	gate    chan struct{} // when set, Begin waits for it to close
}

func (f *inFlightPeak) Begin() {
	f.mu.Lock()
	f.n++
	f.most = max(f.most, f.n)
	f.mu.Unlock()
	if f.gate != nil {
		<-f.gate
	}
}

func (f *inFlightPeak) End() { f.mu.Lock(); f.n--; f.mu.Unlock() }

func (f *inFlightPeak) now() int  { f.mu.Lock(); defer f.mu.Unlock(); return f.n }
func (f *inFlightPeak) peak() int { f.mu.Lock(); defer f.mu.Unlock(); return f.most }

// postMany sends n small POSTs to url over hc at once, each on its own
// goroutine; each one's error (nil once answered) arrives on the channel.
// The server's handlers may hold them (inFlightPeak.gate).
func postMany(t *testing.T, hc *http.Client, url string, n int) <-chan error {
	t.Helper()
	errs := make(chan error, n)
	for range n {
		req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, url, strings.NewReader("{}"))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		go func() {
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	return errs
}
