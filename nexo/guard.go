package nexo

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/termagent/termagent/mtls"
)

// This file holds what bounds the server against a hostile peer: the
// logged-in SaleIDs, the connections, the replay window of protected
// messages and the TLS parameters.

// sessions are the logged-in SaleIDs, at most max, oldest logged out first.
// The caller holds Server.mu.
type sessions struct {
	max     int
	at      map[string]session
	seq     uint64
	evicted uint64
}

// session is one logged-in SaleID: when it logged in (for eviction) and the
// Login's OperatorID, ShiftNumber and TotalsGroupID (for totals).
type session struct {
	seq   uint64
	group TotalsGroup
}

func newSessions(max int) sessions { return sessions{max: max, at: map[string]session{}} }

func (s *sessions) has(saleID string) bool { _, ok := s.at[saleID]; return ok }

// group is the totals group saleID logged in with.
func (s *sessions) group(saleID string) (TotalsGroup, bool) {
	e, ok := s.at[saleID]
	return e.group, ok
}

// login records saleID; when that makes one too many it logs the oldest out
// and returns it.
func (s *sessions) login(saleID string, g TotalsGroup) (evicted string, ok bool) {
	s.seq++
	s.at[saleID] = session{seq: s.seq, group: g}
	if len(s.at) <= s.max {
		return "", false
	}
	// A scan of at most MaxLoggedIn+1 entries, on the rare Login past the cap.
	var oldest uint64
	for id, e := range s.at {
		if evicted == "" || e.seq < oldest {
			evicted, oldest = id, e.seq
		}
	}
	delete(s.at, evicted)
	s.evicted++
	return evicted, true
}

func (s *sessions) logout(saleID string) { delete(s.at, saleID) }

// nonceCache remembers the nonces of protected messages already served, at
// most max of them for at most window each, oldest forgotten first: a map
// and a circular queue of max entries, both allocated at their full size
// with the first nonce (a server without message security never pays for
// them), so the cache never grows afterwards (about 52 bytes per nonce: 210
// KiB for 4,096, 850 KiB for 16,384). A nonce is kept as a 64-bit hash under
// a random per-process seed: two distinct nonces collide with probability
// 2⁻⁶⁴, and a collision could only refuse a fresh message, never admit a
// replay. Only messages whose MAC verified get in, so a forger cannot flush
// it.
type nonceCache struct {
	mu      sync.Mutex
	max     int
	window  time.Duration
	seed    maphash.Seed
	seen    map[uint64]int64 // nonce hash → when (Unix nanoseconds); nil until the first nonce
	queue   []nonceAt
	head, n int // oldest entry, entries queued
}

type nonceAt struct {
	key uint64
	at  int64
}

func newNonceCache(max int, window time.Duration) *nonceCache {
	return &nonceCache{max: max, window: window, seed: maphash.MakeSeed()}
}

// add records nonce at now; it reports false if the nonce was already seen
// within the window.
func (c *nonceCache) add(nonce [ivLen]byte, now time.Time) bool {
	key := maphash.Comparable(c.seed, nonce)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen, c.queue = make(map[uint64]int64, c.max), make([]nonceAt, c.max)
	}
	t := now.UnixNano()
	if at, ok := c.seen[key]; ok && t-at < int64(c.window) {
		return false
	}
	// Forget what left the window, and the oldest when full.
	for c.n > 0 && (c.n == c.max || t-c.queue[c.head].at >= int64(c.window)) {
		old := c.queue[c.head]
		if at, ok := c.seen[old.key]; ok && at == old.at { // not re-added since
			delete(c.seen, old.key)
		}
		c.head, c.n = (c.head+1)%c.max, c.n-1
	}
	c.seen[key] = t
	c.queue[(c.head+c.n)%c.max] = nonceAt{key, t}
	c.n++
	return true
}

func (c *nonceCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

const cryptoReplay = 6 // a protected message already served, or too old

// checkReplay refuses a protected message whose nonce was already served.
// It runs after the MAC verified.
func (s *Server) checkReplay(t *wireSecurityTrailer) *cryptoError {
	raw, err := base64.StdEncoding.DecodeString(t.Nonce)
	if err != nil || len(raw) != ivLen {
		return &cryptoError{cryptoParse, "Nonce is not valid base64 of the right size"}
	}
	if !s.nonces.add([ivLen]byte(raw), s.now()) {
		return &cryptoError{cryptoReplay, "replayed message (its Nonce was already used)"}
	}
	return nil
}

// checkFresh refuses a protected Payment or Login too far from the POI's
// clock, so that a replay is refused once its nonce is forgotten: a Payment
// whose SaleTransactionID.TimeStamp is more than ServiceIDWindow away (within
// it, the ServiceID is still reserved and a replay gets the stored response,
// never a second payment), a Login whose DateTime is more than ReplayWindow
// away.
func (s *Server) checkFresh(req *Request) *cryptoError {
	var (
		at     time.Time
		field  string
		window time.Duration
	)
	switch {
	case req.Payment != nil:
		at, field, window = req.Payment.SaleTransactionID.TimeStamp, "SaleTransactionID.TimeStamp", s.cfg.ServiceIDWindow
	case req.Login != nil:
		at, field, window = req.Login.DateTime, "LoginRequest.DateTime", s.cfg.ReplayWindow
	default:
		return nil
	}
	if d := s.now().Sub(at); d > window || d < -window {
		return &cryptoError{cryptoReplay, fmt.Sprintf("%s is more than %s away from the POI's clock (replayed message?)", field, window)}
	}
	return nil
}

// connLimit bounds the connections open at once to max. A connection
// accepted at the limit evicts the open one idle longest: one between two
// requests, one accepted more than newGrace ago that has not sent a request
// yet, or one whose request began arriving more than newGrace ago and is
// still not read whole (headers sent, body withheld). Only when every open
// connection has a request read whole in flight, or is within newGrace, is
// the new one closed at once. So peers that merely hold connections (the
// Nexo TLS asks for no client certificate) or half-send requests cannot lock
// a POS out, and a connection serving a request is never closed under it.
//
// A connection's state is kept in atomics that ConnState (StateActive,
// StateIdle), its own Read and serveNexo update without a lock or an
// allocation; mu is
// taken once per connection accepted and once per connection closed, and an
// eviction scans the at most max open connections under it.
type connLimit struct {
	max      int
	newGrace time.Duration
	log      *slog.Logger

	mu    sync.Mutex
	slots []*countedConn // max entries; nil when free
	free  []int          // indexes of the free slots

	open    atomic.Int64
	refused atomic.Int64
	evicted atomic.Int64
}

// defaultNewGrace is how long an accepted connection may stay silent before
// it can be evicted: a POS sends its request as soon as it has connected
// (and, over TLS, shaken hands), and ReadHeaderTimeout closes a silent
// connection anyway.
const defaultNewGrace = time.Second

// A countedConn's states.
const (
	connNew     int32 = iota // accepted, no request yet
	connReading              // a request arriving: bytes after idle, or its headers read, its body not yet
	connActive               // a request read whole and being served
	connIdle                 // between two requests
	connEvicted              // closed to make room; it serves nothing more
)

func newConnLimit(max int, log *slog.Logger) *connLimit {
	l := &connLimit{max: max, newGrace: defaultNewGrace, log: log, slots: make([]*countedConn, max), free: make([]int, max)}
	for i := range l.free {
		l.free[i] = max - 1 - i
	}
	return l
}

func (l *connLimit) wrap(ln net.Listener) net.Listener { return &limitListener{Listener: ln, l: l} }

type limitListener struct {
	net.Listener
	l *connLimit
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if cc := ll.l.admit(c, time.Now()); cc != nil {
			return cc, nil
		}
		_ = c.Close()
	}
}

// admit takes a slot for c, evicting a connection if none is free; it
// returns nil when c must be closed.
func (l *connLimit) admit(c net.Conn, now time.Time) *countedConn {
	l.mu.Lock()
	var victim *countedConn
	if len(l.free) == 0 {
		if victim = l.evictLocked(now); victim == nil {
			l.mu.Unlock()
			if n := l.refused.Add(1); n%100 == 1 { // a flood must not flood the log too
				l.log.Warn("nexo server: too many connections; closing new ones", "max", l.max, "refused_total", n)
			}
			return nil
		}
	}
	cc := &countedConn{Conn: c, l: l, slot: l.free[len(l.free)-1]}
	cc.since.Store(now.UnixNano())
	l.free = l.free[:len(l.free)-1]
	l.slots[cc.slot] = cc
	l.open.Add(1)
	l.mu.Unlock()
	if victim != nil {
		_ = victim.Conn.Close() // its slot is already released
		if n := l.evicted.Add(1); n%100 == 1 {
			l.log.Warn("nexo server: too many connections; closing the one idle longest", "max", l.max, "evicted_total", n,
				"idle", now.Sub(time.Unix(0, victim.since.Load())).Round(time.Millisecond), "remote", victim.RemoteAddr().String())
		}
	}
	return cc
}

// evictLocked picks the open connection idle longest, marks it evicted and
// releases its slot; it returns nil when none can go. The caller holds mu.
func (l *connLimit) evictLocked(now time.Time) *countedConn {
	silent := now.Add(-l.newGrace).UnixNano()
	// A failed CompareAndSwap is a connection whose request has just
	// started: look again, at most max times.
	for range l.max {
		var (
			victim *countedConn
			state  int32
			since  int64
		)
		for _, c := range l.slots {
			if c == nil {
				continue
			}
			st, at := c.state.Load(), c.since.Load()
			if st == connIdle || (st == connNew || st == connReading) && at <= silent {
				if victim == nil || at < since {
					victim, state, since = c, st, at
				}
			}
		}
		if victim == nil {
			return nil
		}
		if victim.state.CompareAndSwap(state, connEvicted) {
			l.releaseLocked(victim)
			return victim
		}
	}
	return nil
}

func (l *connLimit) releaseLocked(c *countedConn) {
	if c.slot < 0 {
		return
	}
	l.slots[c.slot] = nil
	l.free = append(l.free, c.slot)
	c.slot = -1
	l.open.Add(-1)
}

// track follows a connection's HTTP/1 state (http.Server.ConnState).
func (l *connLimit) track(c net.Conn, st http.ConnState) {
	cc := counted(c)
	if cc == nil {
		return
	}
	switch st {
	case http.StateActive: // its headers are read; serveNexo claims it once the body is
		cc.arriving(connNew)
	case http.StateIdle:
		cc.since.Store(time.Now().UnixNano())
		if !cc.state.CompareAndSwap(connActive, connIdle) {
			cc.state.CompareAndSwap(connReading, connIdle) // a request no handler claimed (404)
		}
	}
}

// counted is the countedConn under c (the conn itself, or under its TLS).
func counted(c net.Conn) *countedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	cc, _ := c.(*countedConn)
	return cc
}

type countedConn struct {
	net.Conn
	l     *connLimit
	slot  int          // index in l.slots, -1 once released; guarded by l.mu
	state atomic.Int32 // connNew, connReading, connActive, connIdle or connEvicted
	since atomic.Int64 // Unix nanoseconds it was accepted, went idle or a request began arriving
}

// Read marks an idle connection whose next request starts arriving: it is
// no longer the idle one an eviction takes first, and gets newGrace to
// deliver the request (net/http reports StateActive only once the headers
// are read).
func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.state.Load() == connIdle {
		c.arriving(connIdle)
	}
	return n, err
}

// arriving moves the connection from state from to connReading, stamped now.
func (c *countedConn) arriving(from int32) {
	now := time.Now().UnixNano()
	if c.state.CompareAndSwap(from, connReading) {
		c.since.Store(now)
	}
}

// claim marks the connection as serving a request read whole; it reports
// false when the connection was evicted (it is closed: the request must not
// be served, its answer could not be delivered). Until then a request still
// arriving may be evicted once it has taken newGrace: a peer that sends
// headers and withholds the body holds no slot for good.
func (c *countedConn) claim() bool {
	for {
		st := c.state.Load()
		switch {
		case st == connActive:
			return true
		case st == connEvicted:
			return false
		case c.state.CompareAndSwap(st, connActive):
			return true
		}
	}
}

func (c *countedConn) Close() error {
	c.l.mu.Lock()
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// connKey is the request context's key to its countedConn.
type connKey struct{}

// withConn is http.Server.ConnContext: it lets serveNexo claim the
// connection.
func withConn(ctx context.Context, c net.Conn) context.Context {
	if cc := counted(c); cc != nil {
		return context.WithValue(ctx, connKey{}, cc)
	}
	return ctx
}

// claimConn marks the request's connection as serving it, once its body is
// read (for a pipelined request too, whose bytes were read with the previous
// one: net/http then runs no StateActive hook). It reports false when the
// connection was evicted.
func claimConn(ctx context.Context) bool {
	cc, _ := ctx.Value(connKey{}).(*countedConn)
	return cc == nil || cc.claim()
}

// hardenTLS returns a copy of cfg with TLS 1.2 as the minimum and only AEAD
// cipher suites with forward secrecy for TLS 1.2 (TLS 1.3 suites are all
// AEAD), and without "h2" in its ALPN protocols: the server speaks HTTP/1.1
// only (see NewServer).
func hardenTLS(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	c := mtls.HardenServerTLS(cfg)
	c.NextProtos = slices.DeleteFunc(slices.Clone(c.NextProtos), func(p string) bool { return p == "h2" })
	return c
}

// Stats are the server's bounded-state counters, for metrics.
type Stats struct {
	LoggedIn      int    // SaleIDs logged in now
	LoginsEvicted uint64 // SaleIDs logged out because MaxLoggedIn was reached
	Conns         int64  // connections open now
	ConnsRefused  int64  // connections closed at once because MaxConns were busy
	ConnsEvicted  int64  // idle connections closed to make room for a new one
	Nonces        int    // nonces remembered for replay detection
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := Stats{LoggedIn: len(s.sessions.at), LoginsEvicted: s.sessions.evicted}
	s.mu.Unlock()
	st.Conns, st.ConnsRefused, st.ConnsEvicted = s.conns.open.Load(), s.conns.refused.Load(), s.conns.evicted.Load()
	st.Nonces = s.nonces.len()
	return st
}
