package nexo

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
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

// connLimit closes connections accepted past max open ones.
type connLimit struct {
	max     int64
	open    atomic.Int64
	refused atomic.Int64
}

func (l *connLimit) wrap(ln net.Listener, log *slog.Logger) net.Listener {
	return &limitListener{Listener: ln, l: l, log: log}
}

type limitListener struct {
	net.Listener
	l   *connLimit
	log *slog.Logger
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ll.l.open.Add(1) > ll.l.max {
			ll.l.open.Add(-1)
			if ll.l.refused.Add(1)%100 == 1 { // a flood must not flood the log too
				ll.log.Warn("nexo server: too many connections; closing new ones", "max", ll.l.max, "refused_total", ll.l.refused.Load())
			}
			_ = c.Close()
			continue
		}
		return &countedConn{Conn: c, l: ll.l}, nil
	}
}

type countedConn struct {
	net.Conn
	l    *connLimit
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
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
	ConnsRefused  int64  // connections closed at once because MaxConns was reached
	Nonces        int    // nonces remembered for replay detection
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := Stats{LoggedIn: len(s.sessions.at), LoginsEvicted: s.sessions.evicted}
	s.mu.Unlock()
	st.Conns, st.ConnsRefused = s.conns.open.Load(), s.conns.refused.Load()
	st.Nonces = s.nonces.len()
	return st
}
