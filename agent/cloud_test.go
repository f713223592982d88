package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"github.com/termagent/termagent/ppaas"
)

// fakeRelay is a websocket relay on loopback: each accepted connection is
// handed to the test.
type fakeRelay struct {
	url   string
	conns chan *websocket.Conn
}

func newFakeRelay(t *testing.T) *fakeRelay {
	r := &fakeRelay{conns: make(chan *websocket.Conn, 8)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		c, err := websocket.Accept(w, req, nil)
		if err != nil {
			return
		}
		r.conns <- c
		<-req.Context().Done() // the test closes the connection
	}))
	t.Cleanup(srv.Close)
	r.url = "ws://" + strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *fakeRelay) dial(ctx context.Context) (*websocket.Conn, error) {
	c, _, err := websocket.Dial(ctx, r.url, nil)
	return c, err
}

func (r *fakeRelay) next(t *testing.T) *websocket.Conn {
	t.Helper()
	select {
	case c := <-r.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the connector did not connect")
		return nil
	}
}

func send(t *testing.T, c *websocket.Conn, f ppaas.CloudFrame) {
	t.Helper()
	b, err := json.Marshal(f)
	require.NoError(t, err)
	require.NoError(t, c.Write(t.Context(), websocket.MessageText, b))
}

func recv(t *testing.T, c *websocket.Conn) ppaas.CloudFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	require.NoError(t, err)
	var f ppaas.CloudFrame
	require.NoError(t, json.Unmarshal(b, &f))
	return f
}

// gatedServe answers each message with {"served":N} once released, or once
// the test ends (a failed test must not leave the connector waiting for it:
// the connector serves with a context that shutdown does not cancel).
type gatedServe struct {
	calls   atomic.Int32
	release chan struct{}
	ended   <-chan struct{}
}

func (g *gatedServe) serve(_ context.Context, body []byte) []byte {
	n := g.calls.Add(1)
	select {
	case <-g.release:
	case <-g.ended:
	}
	return []byte(`{"served":` + string(rune('0'+n)) + `}`)
}

func runConnector(t *testing.T, cc *CloudConnector) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = cc.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestCloudConnectorAtMostOnceAndRedelivery: a request repeated while it is
// served is not served again; its answer, lost with the connection, is sent
// again on the next one until acknowledged; a repeat of an answered,
// unacknowledged request gets the kept answer, not a second run.
func TestCloudConnectorAtMostOnceAndRedelivery(t *testing.T) {
	relay := newFakeRelay(t)
	g := &gatedServe{release: make(chan struct{}), ended: t.Context().Done()}
	cc := NewCloudConnector(CloudConfig{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}, relay.dial, g.serve, nil)
	runConnector(t, cc)

	c1 := relay.next(t)
	req := ppaas.CloudFrame{Type: ppaas.CloudRequest, ID: "R1", Nexo: json.RawMessage(`{"pay":1}`)}
	send(t, c1, req)
	send(t, c1, req) // duplicate delivery while served
	require.Eventually(t, func() bool { return cc.Stats().Duplicates == 1 }, 5*time.Second, time.Millisecond)
	c1.CloseNow() // the connection drops before the answer
	close(g.release)
	require.Eventually(t, func() bool { return cc.Pending() == 1 }, 5*time.Second, time.Millisecond)

	c2 := relay.next(t)
	f := recv(t, c2)
	require.Equal(t, ppaas.CloudAnswer, f.Type)
	require.Equal(t, "R1", f.ID)
	require.JSONEq(t, `{"served":1}`, string(f.Nexo))
	// Not acknowledged yet: a repeat gets the kept answer.
	send(t, c2, req)
	f = recv(t, c2)
	require.Equal(t, "R1", f.ID)
	require.JSONEq(t, `{"served":1}`, string(f.Nexo))
	require.Equal(t, int32(1), g.calls.Load(), "served once")

	send(t, c2, ppaas.CloudFrame{Type: ppaas.CloudAck, ID: "R1"})
	require.Eventually(t, func() bool { return cc.Pending() == 0 }, 5*time.Second, time.Millisecond)
	// Once acknowledged and forgotten, a repeat reaches the Nexo server
	// again, whose ServiceID rule replays the journal (sim's cloud tests).
	send(t, c2, req)
	f = recv(t, c2)
	require.JSONEq(t, `{"served":2}`, string(f.Nexo))
	c2.CloseNow()
}

// TestCloudRequestIDReusedForAnotherMessage: a relay that reuses an id (after
// its own restart) for another message gets that message served, not the
// kept answer of the earlier one.
func TestCloudRequestIDReusedForAnotherMessage(t *testing.T) {
	relay := newFakeRelay(t)
	g := &gatedServe{release: make(chan struct{}), ended: t.Context().Done()}
	close(g.release)
	cc := NewCloudConnector(CloudConfig{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}, relay.dial, g.serve, nil)
	runConnector(t, cc)

	c := relay.next(t)
	send(t, c, ppaas.CloudFrame{Type: ppaas.CloudRequest, ID: "R1", Nexo: json.RawMessage(`{"pay":1}`)})
	f := recv(t, c)
	require.JSONEq(t, `{"served":1}`, string(f.Nexo))
	// Not acknowledged; the same id now carries another message.
	send(t, c, ppaas.CloudFrame{Type: ppaas.CloudRequest, ID: "R1", Nexo: json.RawMessage(`{"status":1}`)})
	f = recv(t, c)
	require.Equal(t, "R1", f.ID)
	require.JSONEq(t, `{"served":2}`, string(f.Nexo), "served, not answered with the other message's answer")
	require.Equal(t, int32(2), g.calls.Load())
	c.CloseNow()
}

// TestCloudConnectorPendingBound: kept answers are bounded, oldest dropped.
func TestCloudConnectorPendingBound(t *testing.T) {
	cc := NewCloudConnector(CloudConfig{MaxPending: 2}, nil, nil, nil)
	for _, id := range []string{"A", "B", "C"} {
		cc.answer(t.Context(), id, []byte(`{}`))
	}
	require.Equal(t, 2, cc.Pending())
	require.Equal(t, 1, cc.Stats().Dropped)
	require.Equal(t, []string{"B", "C"}, cc.order)
	cc.mu.Lock()
	cc.forget("B")
	cc.mu.Unlock()
	require.Equal(t, []string{"C"}, cc.order)
}

// TestCloudBackoff: full jitter in [d/2, d], doubling from MinBackoff,
// capped at MaxBackoff.
func TestCloudBackoff(t *testing.T) {
	cc := NewCloudConnector(CloudConfig{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}, nil, nil, nil)
	for attempt, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		want *= time.Millisecond
		for range 50 {
			d := cc.backoff(attempt)
			require.GreaterOrEqual(t, d, want/2)
			require.LessOrEqual(t, d, want)
		}
	}
	require.LessOrEqual(t, cc.backoff(1000), time.Second)
}

// TestCloudURLValidated: cloud_url must be wss:// and needs the device
// certificate.
func TestCloudURLValidated(t *testing.T) {
	for _, tc := range []struct {
		url, grant, want string
	}{
		{"", GrantClientCredentials, ""},
		{"wss://relay.example/retail/v1/relay", GrantClientCredentials, ""},
		{"ws://relay.example/x", GrantClientCredentials, "wss://"},
		{"https://relay.example/x", GrantClientCredentials, "wss://"},
		{"wss://", GrantClientCredentials, "wss://"},
		{"wss://relay.example/x", GrantDemoCustomToken, "device certificate"},
	} {
		c := Config{CloudURL: tc.url, Grant: tc.grant}
		errs := c.validateCloud()
		if tc.want == "" {
			require.Empty(t, errs, tc.url)
			continue
		}
		require.Len(t, errs, 1, tc.url)
		require.ErrorContains(t, errs[0], "cloud_url")
		require.ErrorContains(t, errs[0], tc.want)
	}
}

// TestCloudConnectorPingDropsASilentRelay: a relay that stops answering
// pings is taken for dead and the connector connects again.
func TestCloudConnectorPingDropsASilentRelay(t *testing.T) {
	relay := newFakeRelay(t) // never reads: pings go unanswered
	cc := NewCloudConnector(CloudConfig{Ping: 20 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}, relay.dial, nil, nil)
	runConnector(t, cc)
	first := relay.next(t)
	defer first.CloseNow()
	second := relay.next(t)
	defer second.CloseNow()
	require.Eventually(t, func() bool { return cc.Stats().Connects >= 2 }, 5*time.Second, time.Millisecond)
}

// TestCloudConnectorKeepsReadingWhenSaturated: with every slot taken by a
// slow exchange and the queue full, the connector still reads the
// connection: the relay's pings are answered (the connection is not
// dropped under the payments in flight), a queued request waits for a slot,
// and one beyond both bounds is answered Busy at once, without being served.
func TestCloudConnectorKeepsReadingWhenSaturated(t *testing.T) {
	relay := newFakeRelay(t)
	g := &gatedServe{release: make(chan struct{}), ended: t.Context().Done()}
	busy := func(body []byte, why string) []byte {
		b, _ := json.Marshal(map[string]string{"busy": why, "req": string(body)})
		return b
	}
	cc := NewCloudConnector(CloudConfig{MaxInFlight: 2, MaxQueued: 1, Busy: busy, Ping: 20 * time.Millisecond,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}, relay.dial, g.serve, nil)
	runConnector(t, cc)

	c := relay.next(t)
	defer c.CloseNow()
	frames := make(chan ppaas.CloudFrame, 16)
	go func() { // the relay reads (answers the connector's pings) until closed or the test ends
		for {
			_, b, err := c.Read(t.Context())
			if err != nil {
				return
			}
			var f ppaas.CloudFrame
			if json.Unmarshal(b, &f) == nil {
				select {
				case frames <- f:
				case <-t.Context().Done():
					return
				}
			}
		}
	}()
	next := func() ppaas.CloudFrame {
		t.Helper()
		select {
		case f := <-frames:
			return f
		case <-time.After(10 * time.Second):
			t.Fatal("no frame from the connector: it stopped reading")
			return ppaas.CloudFrame{}
		}
	}
	for _, id := range []string{"R1", "R2", "R3"} {
		send(t, c, ppaas.CloudFrame{Type: ppaas.CloudRequest, ID: id, Nexo: json.RawMessage(`{"pay":"` + id + `"}`)})
	}
	require.Eventually(t, func() bool { return g.calls.Load() == 2 }, 5*time.Second, time.Millisecond)
	send(t, c, ppaas.CloudFrame{Type: ppaas.CloudRequest, ID: "R4", Nexo: json.RawMessage(`{"pay":"R4"}`)})
	f := next()
	require.Equal(t, "R4", f.ID)
	var refusal map[string]string
	require.NoError(t, json.Unmarshal(f.Nexo, &refusal))
	require.Contains(t, refusal["busy"], "serving 2 requests and has 1 waiting")
	require.JSONEq(t, `{"pay":"R4"}`, refusal["req"])

	pongs := cc.Stats().Pongs
	require.Eventually(t, func() bool { return cc.Stats().Pongs >= pongs+5 }, 10*time.Second, time.Millisecond,
		"pings answered while every slot is taken")
	require.Equal(t, 1, cc.Stats().Connects, "the connection is kept")
	require.Equal(t, int32(2), g.calls.Load(), "the queued request waits for a slot")

	close(g.release)
	got := map[string]bool{}
	for range 3 {
		got[next().ID] = true
	}
	require.Equal(t, map[string]bool{"R1": true, "R2": true, "R3": true}, got)
	st := cc.Stats()
	require.Equal(t, 3, st.Served)
	require.Equal(t, 1, st.Refused)
	require.Equal(t, 1, st.Connects)
}
