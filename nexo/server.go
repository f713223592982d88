package nexo

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
)

// DefaultListenAddr is where the POI server listens unless configured.
const DefaultListenAddr = "127.0.0.1:8443"

// ServerConfig configures a Server. Zero durations and sizes take the
// documented defaults.
type ServerConfig struct {
	// POIID is this POI's identity, by default "{MODEL}-{SERIAL}" (the caller
	// builds it). Requests addressed to another POIID get NotAllowed.
	POIID string
	// POISerialNumber is the terminal's serial number, told in LoginResponse
	// (POISystemData).
	POISerialNumber string
	// MerchantName heads the receipts (empty: no merchant line).
	MerchantName string
	// Strict requires a Login before any other service (else LoggedOut).
	// By default a POS that never logs in is served, as existing Nexo JSON
	// terminal APIs do.
	Strict bool
	// TLSConfig (with the agent's certificate) makes Serve speak HTTPS.
	TLSConfig *tls.Config
	// AllowPlainHTTP lets Serve run without TLSConfig (local testing only).
	AllowPlainHTTP bool
	// Key enables message security: every request must then be protected
	// with it, and responses are protected back.
	Key *Key
	// EventURL is where Notify POSTs EventNotifications.
	EventURL string
	// EventClient posts events; a client with a 5 s timeout when nil.
	EventClient *http.Client

	MaxRequestBytes   int64         // default 64 KiB
	ReadHeaderTimeout time.Duration // default 5 s (bounds slowloris)
	ReadTimeout       time.Duration // default 15 s
	// WriteTimeout bounds writing a response, counted again from when the
	// answer is ready: a payment may run past it (PaymentTimeout, then up to
	// AbortGrace), and its answer still goes out. Default PaymentTimeout + 15 s.
	WriteTimeout time.Duration
	IdleTimeout  time.Duration // default 120 s
	// PaymentTimeout bounds a payment or reversal; default 5 min (a consumer
	// scanning a QR code takes a while).
	PaymentTimeout time.Duration
	// AbortGrace is how long the server waits for an engine to return after
	// its context was cancelled (PaymentTimeout, or the POS's Abort) before
	// answering without it: Failure/InProgress, ask TransactionStatus. It
	// must cover the engine's longest run past either; default 5 s.
	AbortGrace time.Duration
	// ServiceIDWindow is how long a ServiceID stays reserved per SaleID;
	// default 48 h.
	ServiceIDWindow time.Duration

	// MaxConns bounds the connections open at once. One more accepted at
	// the limit closes the open connection idle longest (between requests,
	// silent for a second since it was accepted, or with a request arriving
	// for over a second and not yet read whole); it is itself closed at once
	// only when every open connection is serving a request read whole or is
	// within that second. Default 64 (a POI serves a few POS).
	MaxConns int
	// MaxLoggedIn bounds the SaleIDs logged in at once; a Login past it logs
	// the oldest out. Default 32.
	MaxLoggedIn int
	// ReplayWindow is how long the nonce of a protected message is
	// remembered (a replay within it is refused), and how far a protected
	// Login's DateTime may be from the POI's clock. A protected Payment's
	// SaleTransactionID.TimeStamp may be ServiceIDWindow away. Default 1 h.
	ReplayWindow time.Duration
	// MaxNonces bounds the remembered nonces; past it the oldest is
	// forgotten. Default 16,384 (about 850 KiB, allocated with the first).
	MaxNonces int
}

func (c *ServerConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = 64 << 10
	}
	def(&c.ReadHeaderTimeout, 5*time.Second)
	def(&c.ReadTimeout, 15*time.Second)
	def(&c.PaymentTimeout, 5*time.Minute)
	def(&c.WriteTimeout, c.PaymentTimeout+15*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	def(&c.AbortGrace, 5*time.Second)
	def(&c.ServiceIDWindow, 48*time.Hour)
	def(&c.ReplayWindow, time.Hour)
	if c.MaxConns <= 0 {
		c.MaxConns = 64
	}
	if c.MaxLoggedIn <= 0 {
		c.MaxLoggedIn = 32
	}
	if c.MaxNonces <= 0 {
		c.MaxNonces = 16384
	}
	if c.EventClient == nil {
		c.EventClient = eventClient(nil)
	}
}

// Server is the Nexo POI server: HTTPS POST /nexo and /nexo/.
type Server struct {
	cfg     ServerConfig
	deps    Deps
	log     *slog.Logger
	now     func() time.Time
	http    *http.Server
	handler http.Handler

	// base is cancelled when Shutdown gives up waiting, to stop engines.
	base       context.Context
	cancelBase context.CancelCauseFunc
	engines    sync.WaitGroup

	// repeated: the JSON of the journaled responses TransactionStatus
	// repeats (nexo/status_json.go); its own lock.
	repeated repeatedCache

	mu       sync.Mutex
	sessions sessions
	current  *running // the transaction in progress, nil if none
	// refusing are the SaleID+ServiceID pairs whose up-front refusal is
	// being journaled (outside the lock), with their request hash.
	refusing map[[2]string]string
	lastSale string
	eventSeq uint64
	nonces   *nonceCache
	conns    *connLimit

	// earlyEncoded, set by tests only, is called when a response encoded
	// during its journal write is ready (nexo/early.go).
	earlyEncoded func()
}

// running is the transaction in progress.
type running struct {
	saleID, serviceID string
	category          MessageCategory
	hash              string // requestHash, for a repeat arriving before the journal has it
	cancel            context.CancelCauseFunc
}

var errShutdown = errors.New("nexo: server shutting down")

// NewServer returns a Server. It fails on a config that cannot work.
func NewServer(cfg ServerConfig, deps Deps, log *slog.Logger) (*Server, error) {
	if cfg.POIID == "" {
		return nil, errors.New("nexo server: POIID is required")
	}
	if deps.Engine == nil || deps.Journal == nil {
		return nil, errors.New("nexo server: Engine and Journal are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.setDefaults()
	s := &Server{cfg: cfg, deps: deps, log: log.With("component", "nexo"), now: deps.Now, sessions: newSessions(cfg.MaxLoggedIn)}
	if s.now == nil {
		s.now = time.Now
	}
	s.nonces = newNonceCache(cfg.MaxNonces, cfg.ReplayWindow)
	s.conns = newConnLimit(cfg.MaxConns, s.log)
	s.base, s.cancelBase = context.WithCancelCause(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("POST /nexo", s.serveNexo)
	mux.HandleFunc("POST /nexo/{$}", s.serveNexo)
	s.handler = mux
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		TLSConfig:         hardenTLS(cfg.TLSConfig),
		// HTTP/1.1 only, as POS clients speak it: over HTTP/2 one connection
		// would carry up to 250 requests at once, each with its body buffer,
		// past MaxConns and before any authentication. A non-nil map without
		// "h2" turns it off, and ServeTLS then offers only "http/1.1" in ALPN.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnState:    s.conns.track,
		ConnContext:  withConn,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Handler returns the HTTP handler (for tests or an outer server; the
// timeouts of Serve do not apply to it).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts connections on ln until Shutdown. It refuses plain HTTP
// unless AllowPlainHTTP, and a non-loopback address without TLS and a Key.
func (s *Server) Serve(ln net.Listener) error {
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() && (s.cfg.TLSConfig == nil || s.cfg.Key == nil) {
		return fmt.Errorf("nexo server: refusing to listen on %s without TLS and a message key", a)
	}
	ln = s.conns.wrap(ln)
	var err error
	switch {
	case s.cfg.TLSConfig != nil:
		s.log.Info("nexo server listening", "addr", ln.Addr().String(), "tls", true, "protected", s.cfg.Key != nil, "strict", s.cfg.Strict)
		err = s.http.ServeTLS(ln, "", "")
	case s.cfg.AllowPlainHTTP:
		s.log.Warn("nexo server listening on plain HTTP", "addr", ln.Addr().String())
		err = s.http.Serve(ln)
	default:
		return errors.New("nexo server: TLS config required (AllowPlainHTTP is off)")
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("nexo server: %w", err)
}

// Shutdown stops accepting requests and waits for the ones in flight. When
// ctx ends first, transactions in progress are cancelled and Shutdown
// returns ctx's error once their engines have returned.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.cancelBase(errShutdown)
	}
	done := make(chan struct{})
	go func() {
		s.engines.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		// An engine that ignores cancellation must not hold Shutdown
		// forever; its goroutine ends when the engine returns.
		s.cancelBase(errShutdown)
		return ctx.Err()
	}
	s.cancelBase(errShutdown)
	return err
}

// reply is what goes back on the HTTP exchange.
type reply struct {
	status int
	body   []byte
	ctype  string
}

// exchange is what is known about the message being served, for building a
// failure response at any point (including after a panic).
type exchange struct {
	codec     wireCodec
	hdr       Header
	protected bool
	result    Result         // of the response sent; "Reject" for a rejected message
	condition ErrorCondition // of a Failure
	v5        *exchange5     // set when the message is in the Nexo v5 envelope
}

func (s *Server) serveNexo(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, rerr := readBody(w, r, s.cfg.MaxRequestBytes)
	if !claimConn(r.Context()) {
		// Evicted while the request was still arriving: the connection is
		// closed, and net/http must not answer it with an empty 200 either.
		panic(http.ErrAbortHandler)
	}
	if s.deps.InFlight != nil { // a request read whole: one that is stalled holds up no background work
		s.deps.InFlight.Begin()
		defer s.deps.InFlight.End() // after the observer; whatever panics
	}
	ex := &exchange{codec: codecFor(r.Header.Get("Content-Type"), body)}
	if isNexoV5(body) {
		ex.v5 = &exchange5{}
	}
	var out reply
	func() {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("nexo handler panic", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				out = s.failure(ex, http.StatusOK, &Error{Condition: UnavailableService, Text: "internal error"})
			}
		}()
		var mbe *http.MaxBytesError
		switch {
		case errors.As(rerr, &mbe):
			out = s.reject(ex, http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes", s.cfg.MaxRequestBytes))
		case rerr != nil:
			out = s.reject(ex, http.StatusBadRequest, "request body unreadable")
		default:
			out = s.process(r.Context(), ex, body)
		}
	}()
	rc := http.NewResponseController(w)
	// net/http's write deadline was set when the request was read; a
	// payment may have outlasted it (TestAnswerOutlastingWriteTimeoutArrives).
	_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if len(out.body) > 0 {
		h.Set("Content-Type", out.ctype)
	}
	h.Set("Content-Length", strconv.Itoa(len(out.body)))
	w.WriteHeader(out.status)
	_, _ = w.Write(out.body)
	// The answer goes out now, not when net/http finishes the request after
	// this handler returns: InFlight.End, deferred above, lets the
	// forwarder's deliveries run, and they must not be ahead of the POS's
	// answer on the terminal's CPUs.
	_ = rc.Flush()
	if s.deps.Observer != nil {
		result := ex.result
		if result == "" {
			result = Success // Abort: answered with an empty body
		}
		s.deps.Observer.ObserveRequest(ex.hdr.Category, result, ex.condition, time.Since(start))
	}
}

// sniffLen is how much of a body declared too long is read: enough to tell
// its envelope (JSON or XML, Nexo 3.x or v5) for the refusal.
const sniffLen = 512

// readBody reads a request body of at most max bytes. A declared length
// over max is refused after reading its first sniffLen bytes only, and a
// declared length within it is read into one buffer of that size: a flood
// of large bodies leaves no garbage of growing buffers behind (io.ReadAll
// doubles its buffer, and each step past 32 KiB is a large object of its
// own). A body without a declared length is read as far as max.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, max)
	n := r.ContentLength
	switch {
	case n > max:
		// Only a prefix is read: enough to answer in the message's envelope.
		w.Header().Set("Connection", "close")
		prefix := make([]byte, min(max, sniffLen))
		k, _ := io.ReadFull(body, prefix)
		return prefix[:k], &http.MaxBytesError{Limit: max}
	case n < 0:
		return io.ReadAll(body)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(body, buf); err != nil {
		return nil, err
	}
	// A body longer than declared is net/http's to refuse; nothing more is read.
	return buf, nil
}

func (s *Server) process(ctx context.Context, ex *exchange, body []byte) reply {
	if ex.v5 != nil {
		return s.process5(ctx, ex, body)
	}
	root, m, err := ex.codec.decodeWire(body)
	if err != nil {
		return s.reject(ex, http.StatusOK, err.Error())
	}
	ex.hdr = clipHeader(headerFromWireLenient(m.MessageHeader))
	if root != rootRequest {
		return s.reject(ex, http.StatusOK, "SaleToPOIRequest expected")
	}
	switch {
	case s.cfg.Key != nil:
		_, inner, cerr := s.cfg.Key.openMessage(ex.codec, root, m)
		if cerr == nil {
			cerr = s.checkReplay(m.SecurityTrailer)
		}
		if cerr != nil {
			s.log.Warn("nexo message refused", "reason", cerr.Error(), "sale_id", ex.hdr.SaleID, "service_id", ex.hdr.ServiceID)
			return s.failure(ex, http.StatusUnauthorized, &Error{Condition: NotAllowed, Text: cerr.Error()})
		}
		m, ex.protected = inner, true
	case m.NexoBlob != "" || m.SecurityTrailer != nil:
		cerr := &cryptoError{cryptoUnknownKey, "no shared key is configured on this POI"}
		return s.failure(ex, http.StatusUnauthorized, &Error{Condition: NotAllowed, Text: cerr.Error()})
	}
	req, err := requestFromWire(m)
	if err != nil {
		return s.failure(ex, http.StatusOK, asError(err, MessageFormat))
	}
	ex.hdr = req.Header
	if ex.protected {
		if cerr := s.checkFresh(req); cerr != nil {
			s.log.Warn("nexo message refused", "reason", cerr.Error(), "sale_id", ex.hdr.SaleID, "service_id", ex.hdr.ServiceID)
			return s.failure(ex, http.StatusUnauthorized, &Error{Condition: NotAllowed, Text: cerr.Error()})
		}
	}
	ctx, early := withEarlyEncoder(ctx, s, ex) // nexo/early.go
	defer early.wait()
	resp := s.dispatch(ctx, req)
	if resp == nil {
		return reply{status: http.StatusOK}
	}
	return early.reply(resp)
}

// encode renders a response in the request's encoding, protected if the
// request was.
func (s *Server) encode(ex *exchange, status int, resp *Response) reply {
	var (
		b   []byte
		hdr *wireHeader
		err error
	)
	_, isJSON := ex.codec.(JSONCodec)
	appended := false
	if isJSON && resp.Header.Category == CategoryPayment {
		// The codec's bytes without its reflection (nexo/response_json.go).
		b, appended = appendPaymentResponseJSON(make([]byte, 0, paymentResponseJSONCap(resp)), resp)
		hdr = headerToWire(resp.Header) // the envelope's, as responseToWire makes it
	}
	switch {
	case appended:
	case isJSON && repeatsJournaled(resp):
		b, hdr, err = s.encodeStatusJSON(resp) // nexo/status_json.go
	default:
		var wm *wireMessage
		if wm, err = responseToWire(resp); err == nil {
			hdr = wm.MessageHeader
			b, err = ex.codec.encodeWire(rootResponse, wm)
		}
	}
	if err == nil && ex.protected {
		b, err = s.cfg.Key.sealMessage(ex.codec, rootResponse, hdr, b, nil)
	}
	if err == nil {
		ex.result, ex.condition = resp.Status.Result, resp.Status.ErrorCondition
		return reply{status: status, body: b, ctype: ex.codec.ContentType()}
	}
	s.log.Error("encode nexo response", "err", err, "category", resp.Header.Category)
	return s.reject(ex, status, "response could not be encoded")
}

// failure answers with Result Failure when the category can carry it, and
// with an EventNotification Reject otherwise.
func (s *Server) failure(ex *exchange, status int, e *Error) reply {
	if ex.v5 != nil {
		return s.failure5(ex, status, e)
	}
	if answers(ex.hdr.Category) {
		return s.encode(ex, status, failureResponse(ex.hdr, e))
	}
	return s.reject(ex, status, e.Error())
}

func failureResponse(h Header, e *Error) *Response {
	h.Type = TypeResponse
	return &Response{Header: h, Status: ResponseStatus{Result: Failure, ErrorCondition: e.Condition, AdditionalResponse: e.Text}}
}

// reject answers a message that has no usable category the way existing
// Nexo JSON terminal APIs do: an EventNotification with EventToNotify Reject.
func (s *Server) reject(ex *exchange, status int, why string) reply {
	if ex.v5 != nil {
		return s.reject5(ex, status, rejectInvalid, why)
	}
	ex.result, ex.condition = "Reject", MessageFormat
	m := &wireMessage{
		MessageHeader: &wireHeader{
			ProtocolVersion: "3.0", MessageClass: string(ClassEvent), MessageCategory: string(CategoryEvent),
			MessageType: string(TypeNotification), ServiceID: ex.hdr.ServiceID, SaleID: ex.hdr.SaleID, POIID: s.cfg.POIID,
		},
		EventNotification: &wireEventNotification{
			TimeStamp: formatTime(s.now()), EventToNotify: "Reject", EventDetails: "message=" + url.QueryEscape(why),
		},
	}
	b, err := ex.codec.encodeWire(rootRequest, m)
	if err != nil {
		return reply{status: status}
	}
	return reply{status: status, body: b, ctype: ex.codec.ContentType()}
}

func (s *Server) dispatch(ctx context.Context, req *Request) *Response {
	h := req.Header
	if h.POIID != s.cfg.POIID {
		return failureResponse(h, Errorf(NotAllowed, "POIID %q is not this POI", h.POIID))
	}
	c := categoryOf(h.Category)
	if h.Class == ClassEvent {
		c = eventCategory{} // the decoders make class and category agree; never trust it blindly
	}
	if c == nil {
		return failureResponse(h, Errorf(UnavailableService, "category %s not served", h.Category))
	}
	if t := c.traits(); !t.sessionless {
		s.mu.Lock()
		s.lastSale = h.SaleID
		logged := s.sessions.has(h.SaleID)
		s.mu.Unlock()
		if s.cfg.Strict && !logged && !t.beforeLogin {
			if t.silent {
				return nil
			}
			return failureResponse(h, Errorf(LoggedOut, "Login required"))
		}
	}
	return c.serve(ctx, s, req)
}

func (s *Server) ok(h Header, fill func(*Response)) *Response {
	h.Type = TypeResponse
	r := &Response{Header: h, Status: ResponseStatus{Result: Success}}
	if fill != nil {
		fill(r)
	}
	return r
}

// requestHash identifies a request's content for duplicate detection: the
// SHA-256 of its Nexo 3.x JSON, whatever envelope it came in (journals
// written before the model record keep the same hashes).
//
// A payment's JSON is appended by hand (nexo/request_json.go), the same
// bytes; anything else goes through the codec.
func requestHash(req *Request) string {
	var buf [1024]byte
	b, ok := appendPaymentRequestJSON(buf[:0], req)
	if !ok {
		var err error
		if b, err = (JSONCodec{}).EncodeRequest(req); err != nil {
			return ""
		}
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// transact runs a Payment or Reversal: ServiceID rules, one at a time,
// journal, engine call with Abort and timeouts.
func (s *Server) transact(ctx context.Context, req *Request) *Response {
	h := req.Header
	if req.Payment == nil && req.Reversal == nil {
		// Only these are journaled (and run by the engine).
		return s.txFailure(req, Errorf(UnavailableService, "category %s is not a transaction", h.Category), TransactionID{})
	}
	hash := requestHash(req)
	now := s.now()
	s.mu.Lock()
	e, found, err := s.deps.Journal.Lookup(ctx, h.SaleID, h.ServiceID)
	if err != nil {
		s.mu.Unlock()
		s.log.Error("journal lookup", "err", err)
		return s.txFailure(req, Errorf(UnavailableService, "journal unavailable"), TransactionID{})
	}
	// An unfinished transaction keeps its ServiceID whatever its age (issue 10).
	if found && (now.Sub(e.Started) < s.cfg.ServiceIDWindow || e.State != TxDone) {
		s.mu.Unlock()
		if e.RequestHash != hash {
			return s.txFailure(req, formatError("MessageHeader.ServiceID", "%q already used by another request of SaleID %q", h.ServiceID, h.SaleID), TransactionID{})
		}
		if e.State != TxDone {
			// Either running now, or interrupted by a restart and waiting
			// for recovery to Finish it: in both cases the POS asks again.
			return s.txFailure(req, Errorf(InProgress, "transaction still in progress"), TransactionID{})
		}
		if e.Response == nil {
			s.log.Error("journal entry without its response", "sale_id", h.SaleID, "service_id", h.ServiceID)
			return s.txFailure(req, Errorf(UnavailableService, "journal entry unreadable"), TransactionID{})
		}
		// The journaled model, encoded for the envelope this request came in.
		s.log.Info("nexo duplicate request replayed", "sale_id", h.SaleID, "service_id", h.ServiceID)
		return e.Response
	}
	// A journal entry for the pair is being written (outside the lock):
	// answer as the lookup will once it is there.
	pair := [2]string{h.SaleID, h.ServiceID}
	writing, inFlight := s.refusing[pair]
	if cur := s.current; cur != nil && cur.saleID == h.SaleID && cur.serviceID == h.ServiceID {
		writing, inFlight = cur.hash, true
	}
	if inFlight {
		s.mu.Unlock()
		if writing != hash {
			return s.txFailure(req, formatError("MessageHeader.ServiceID", "%q already used by another request of SaleID %q", h.ServiceID, h.SaleID), TransactionID{})
		}
		return s.txFailure(req, Errorf(InProgress, "transaction still in progress"), TransactionID{})
	}
	if refusal := s.precheck(req); refusal != nil {
		// Journaled outside the lock too; the pair is reserved meanwhile.
		if s.refusing == nil {
			s.refusing = map[[2]string]string{}
		}
		s.refusing[pair] = hash
		s.mu.Unlock()
		defer func() { // released even if the journal panics
			s.mu.Lock()
			delete(s.refusing, pair)
			s.mu.Unlock()
		}()
		return s.refuseUpFront(ctx, req, refusal, hash, now)
	}
	if cur := s.current; cur != nil {
		s.mu.Unlock()
		// Never name the transaction: it may be another POS's.
		what := "another transaction is in progress on this POI"
		if cur.saleID == h.SaleID {
			// The caller's own: named as `sim pos abort` and the POS take it.
			what = fmt.Sprintf("transaction %s/%s in progress", cur.saleID, cur.serviceID)
		}
		return s.txFailure(req, Errorf(Busy, "%s", what), TransactionID{})
	}
	tctx, cancel := context.WithCancelCause(s.base)
	tctx, cancelTimeout := context.WithTimeout(tctx, s.cfg.PaymentTimeout)
	run := &running{saleID: h.SaleID, serviceID: h.ServiceID, category: h.Category, hash: hash, cancel: cancel}
	journaled := s.withSessionLocked(req) // the Login's totals group, read under the lock
	// The slot is reserved under the lock; the durable journal write (an
	// fsync or two) happens outside it, so Diagnosis, Abort and other POSes
	// do not wait for the disk. An Abort in between cancels tctx: the engine
	// then starts cancelled and the payment ends Aborted, journaled.
	s.current = run
	s.mu.Unlock()
	defer func() {
		// A panic (recovered by the handler) must not leave the POI Busy for
		// good; normally the engine goroutine frees the slot.
		if p := recover(); p != nil {
			s.mu.Lock()
			if s.current == run {
				s.current = nil
			}
			s.mu.Unlock()
			panic(p)
		}
	}()
	txn := Txn{SaleID: h.SaleID, ServiceID: h.ServiceID}
	txn.POITransactionID, err = s.deps.Journal.Begin(ctx, JournalEntry{
		SaleID: h.SaleID, ServiceID: h.ServiceID, Category: h.Category,
		RequestHash: hash, Request: journaled, State: TxInProgress, Started: now, Updated: now,
	})
	if err != nil {
		s.mu.Lock()
		if s.current == run {
			s.current = nil
		}
		s.mu.Unlock()
		cancelTimeout()
		cancel(nil)
		ne := Errorf(UnavailableService, "journal unavailable")
		if errors.As(err, &ne) { // the journal's own Nexo answer, e.g. a ServiceID still reserved
			s.log.Warn("journal begin refused", "err", err)
		} else {
			s.log.Error("journal begin", "err", err)
		}
		return s.txFailure(req, ne, TransactionID{})
	}
	defer cancelTimeout()
	defer cancel(nil)

	log := s.log.With("sale_id", h.SaleID, "service_id", h.ServiceID, "category", string(h.Category))
	log.Info("nexo transaction started")
	type outcome struct {
		resp *Response
		err  error
	}
	done := make(chan outcome, 1)
	// handoff decides who journals the outcome: normally this handler; the
	// engine goroutine itself when the handler stopped waiting for it (the
	// engine ignored cancellation past AbortGrace), so that the journal gets
	// the real outcome and not one the handler made up.
	var (
		handoff sync.Mutex
		gaveUp  bool
	)
	s.engines.Add(1)
	go func() {
		defer s.engines.Done()
		var o outcome
		func() {
			defer func() {
				if p := recover(); p != nil {
					log.Error("payment engine panic", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
					o.err = Errorf(UnreachableHost, "internal error in payment engine; outcome unknown")
				}
			}()
			o.resp, o.err = s.callEngine(tctx, txn, req)
		}()
		s.mu.Lock()
		if s.current == run {
			s.current = nil
		}
		s.mu.Unlock()
		handoff.Lock()
		defer handoff.Unlock()
		if !gaveUp {
			done <- o // buffered: never blocks
			return
		}
		resp := s.outcomeResponse(req, tctx, o.resp, o.err)
		_ = s.finishJournal(ctx, txn, resp, log) // logged; recovery settles it at the next start
		log.Info("nexo transaction finished after its answer", "result", string(resp.Status.Result), "condition", string(resp.Status.ErrorCondition))
	}()
	var o outcome
	select {
	case o = <-done:
	case <-tctx.Done():
		t := time.NewTimer(s.cfg.AbortGrace)
		select {
		case o = <-done:
		case <-t.C:
			handoff.Lock()
			select {
			case o = <-done:
				handoff.Unlock()
			default:
				gaveUp = true
				handoff.Unlock()
				t.Stop()
				// Not a definitive answer (UnreachableHost says a reversal
				// is queued; none is): InProgress, under the payment's own
				// POI transaction id, which TransactionStatus and a Reversal
				// find.
				log.Warn("payment engine still running past the grace period; answering InProgress now, the journal gets its outcome when it ends")
				return s.txFailure(req, Errorf(InProgress, "outcome not known yet; ask TransactionStatus later"), TransactionID{ID: txn.POITransactionID, TimeStamp: now})
			}
		}
		t.Stop()
	}
	resp := s.outcomeResponse(req, tctx, o.resp, o.err)
	encodeEarly(ctx, resp) // while (or just before) the journal commits (nexo/early.go)
	if err := s.finishJournal(ctx, txn, resp, log); err != nil && (resp.Status.Result != Success || errors.Is(err, ErrOutcomeOwned)) {
		// A Failure may say a reversal is queued: without the journal it is
		// not (they commit together). A Success the journal refused because
		// a reversal owns the outcome is not true either. Tell the POS only
		// what is true.
		resp = s.txFailure(req, Errorf(InProgress, "the outcome could not be recorded on the terminal; ask TransactionStatus later"), poiTransactionIDOf(resp))
	}
	log.Info("nexo transaction finished", "result", string(resp.Status.Result), "condition", string(resp.Status.ErrorCondition))
	return resp
}

// precheck is the engine's refusal of a payment it will not run
// (Prechecker), nil when the payment may go ahead. It does no I/O.
func (s *Server) precheck(req *Request) error {
	pc, ok := s.deps.Engine.(Prechecker)
	if !ok || req.Payment == nil {
		return nil
	}
	return pc.Precheck(*req.Payment)
}

// refuseUpFront answers a payment the engine refused up front (refusal, from
// precheck), journaled compactly: header, hash and the refusal, not the
// request. The caller does not hold mu: the write is durable.
func (s *Server) refuseUpFront(ctx context.Context, req *Request, refusal error, hash string, now time.Time) *Response {
	h := req.Header
	resp := s.txFailure(req, asError(refusal, PaymentRestriction), TransactionID{})
	_, err := s.deps.Journal.Begin(ctx, JournalEntry{
		SaleID: h.SaleID, ServiceID: h.ServiceID, Category: h.Category, RequestHash: hash,
		State: TxDone, Response: resp, Started: now, Updated: now,
	})
	if err != nil {
		ne := Errorf(UnavailableService, "journal unavailable")
		if errors.As(err, &ne) {
			s.log.Warn("journal refused payment", "err", err)
		} else {
			s.log.Error("journal refused payment", "err", err)
		}
		return s.txFailure(req, ne, TransactionID{})
	}
	s.log.Info("nexo payment refused before it started", "sale_id", h.SaleID, "service_id", h.ServiceID, "reason", resp.Status.AdditionalResponse)
	return resp
}

// outcomeResponse is the POS's answer for what the engine returned.
func (s *Server) outcomeResponse(req *Request, tctx context.Context, resp *Response, engErr error) *Response {
	if engErr == nil {
		return resp
	}
	var ne *Error
	switch cause := context.Cause(tctx); {
	case errors.Is(cause, ErrAborted):
		ne = Errorf(Aborted, "aborted by the POS")
	case errors.As(engErr, &ne):
	case errors.Is(cause, context.DeadlineExceeded), errors.Is(cause, errShutdown):
		ne = Errorf(UnreachableHost, "no outcome in time; ask TransactionStatus later")
	default:
		ne = asError(engErr, UnreachableHost)
	}
	var poiID TransactionID
	if resp != nil && resp.Payment != nil {
		poiID = resp.Payment.POITransactionID
	}
	if e := (*Error)(nil); poiID.ID == "" && errors.As(engErr, &e) {
		poiID = e.POITransactionID
	}
	return s.txFailure(req, ne, poiID)
}

// finishJournal records a transaction's final response. An error means it is
// not recorded (nor anything that was to commit with it, such as a reversal
// advice): the transaction stays in progress until restart recovery.
func (s *Server) finishJournal(ctx context.Context, txn Txn, resp *Response, log *slog.Logger) error {
	err := s.deps.Journal.Finish(context.WithoutCancel(ctx), txn, resp, s.now())
	if err != nil {
		log.Error("journal finish", "err", err)
	}
	return err
}

// poiTransactionIDOf is the POI transaction id a response names.
func poiTransactionIDOf(r *Response) TransactionID {
	switch {
	case r.Payment != nil:
		return r.Payment.POITransactionID
	case r.Reversal != nil:
		return r.Reversal.POITransactionID
	}
	return TransactionID{}
}

func (s *Server) callEngine(ctx context.Context, txn Txn, req *Request) (*Response, error) {
	h := req.Header
	if req.Payment == nil && req.Reversal == nil {
		return nil, Errorf(UnavailableService, "category %s is not a transaction", h.Category)
	}
	switch {
	case req.Payment != nil:
		res, err := s.deps.Engine.Pay(ctx, txn, *req.Payment)
		if err != nil {
			return nil, err
		}
		if res.POITransactionID.ID == "" {
			res.POITransactionID = s.poiTransactionID(h)
		}
		if res.Type == "" {
			res.Type = req.Payment.Type
		}
		if res.AuthorizedAmount.Currency == "" {
			res.AuthorizedAmount = req.Payment.Amount
		}
		return s.ok(h, func(r *Response) {
			r.Payment = &PaymentResponse{SaleTransactionID: req.Payment.SaleTransactionID, POITransactionID: res.POITransactionID, Result: &res}
			r.Payment.POIReconciliationID = s.openPeriod(ctx)
			r.Payment.Receipts = Receipts(r, s.cfg.MerchantName, false)
		}), nil
	default:
		res, err := s.deps.Engine.Reverse(ctx, txn, *req.Reversal)
		if err != nil {
			return nil, err
		}
		if res.POITransactionID.ID == "" {
			res.POITransactionID = s.poiTransactionID(h)
		}
		return s.ok(h, func(r *Response) {
			r.Reversal = &ReversalResponse{OriginalPOITransactionID: req.Reversal.OriginalPOITransactionID, POITransactionID: res.POITransactionID}
			reversalOutcome(r, res, s.cfg.MerchantName) // refunds: nexo/refund.go
		}), nil
	}
}

// poiTransactionID makes a POI transaction id when the engine gave none:
// Nexo requires one in every PaymentResponse.
func (s *Server) poiTransactionID(h Header) TransactionID {
	now := s.now()
	return TransactionID{ID: h.SaleID + "." + h.ServiceID + "." + strconv.FormatInt(now.UnixMilli(), 36), TimeStamp: now}
}

func (s *Server) txFailure(req *Request, e *Error, poiID TransactionID) *Response {
	r := failureResponse(req.Header, e)
	if poiID.ID == "" {
		poiID = s.poiTransactionID(req.Header)
	}
	if t, ok := categoryOf(req.Header.Category).(transaction); ok {
		t.failure(r, req, poiID)
	}
	return r
}

// abort cancels the transaction in progress if it is the one referenced.
// Aborting anything else (finished, unknown) does nothing, as in Nexo.
func (s *Server) abort(req *Request) {
	ref := req.Abort.MessageReference
	saleID := req.Header.SaleID
	if ref.SaleID != "" && ref.SaleID != saleID {
		// Bound to the caller, as Reversal is: a POS aborts only its own.
		s.log.Warn("nexo abort ignored: it names another SaleID", "sale_id", saleID, "ref_sale_id", ref.SaleID, "service_id", ref.ServiceID)
		return
	}
	s.mu.Lock()
	cur := s.current
	s.mu.Unlock()
	if cur == nil || cur.saleID != saleID || cur.serviceID != ref.ServiceID || (ref.Category != "" && ref.Category != cur.category) {
		s.log.Info("nexo abort ignored: no such transaction in progress", "sale_id", saleID, "service_id", ref.ServiceID)
		return
	}
	s.log.Info("nexo abort", "sale_id", saleID, "service_id", ref.ServiceID, "reason", req.Abort.AbortReason)
	cur.cancel(ErrAborted)
}

func (s *Server) transactionStatus(ctx context.Context, req *Request) *Response {
	h := req.Header
	ref := req.TransactionStatus.MessageReference
	var (
		e     JournalEntry
		found bool
		err   error
	)
	if ref != nil {
		if ref.SaleID != "" && ref.SaleID != h.SaleID {
			// Bound to the caller, as Reversal is: another POS's outcome is
			// not this POS's to read, nor to know exists.
			return failureResponse(h, Errorf(NotFound, "no such transaction for SaleID %s", h.SaleID))
		}
		e, found, err = s.deps.Journal.Lookup(ctx, h.SaleID, ref.ServiceID)
	} else {
		e, found, err = s.deps.Journal.Last(ctx, h.SaleID)
	}
	switch {
	case err != nil:
		s.log.Error("journal lookup", "err", err)
		return failureResponse(h, Errorf(UnavailableService, "journal unavailable"))
	case !found || e.SaleID != h.SaleID:
		return failureResponse(h, Errorf(NotFound, "no such transaction"))
	case e.State != TxDone:
		// An unfinished entry may carry a note for the POS (a person must
		// look); it is told with InProgress, never as the final answer.
		if e.Response != nil && e.Response.Status.AdditionalResponse != "" {
			return failureResponse(h, Errorf(InProgress, "transaction %s in progress: %s", e.ServiceID, e.Response.Status.AdditionalResponse))
		}
		return failureResponse(h, Errorf(InProgress, "transaction %s in progress", e.ServiceID))
	}
	rep := e.Response // the model, encoded for the envelope asking
	if rep == nil {
		s.log.Error("journal entry without its response", "sale_id", e.SaleID, "service_id", e.ServiceID)
		return failureResponse(h, Errorf(UnavailableService, "journal entry unreadable"))
	}
	qualifiers := req.TransactionStatus.DocumentQualifiers
	if len(qualifiers) == 0 && req.TransactionStatus.ReceiptReprint {
		qualifiers = []string{CashierReceipt, CustomerReceipt}
	}
	journaled := len(qualifiers) == 0 // its encoding may be kept (nexo/status_json.go)
	if !journaled {
		// The journal's Response may be shared (JournalEntry): a reprint
		// changes the copy's receipts only.
		rep = rep.reprintCopy()
		reprint(rep, qualifiers, s.cfg.MerchantName)
		reprintReversal(rep, qualifiers) // refunds: nexo/refund.go
	}
	return s.ok(h, func(r *Response) {
		r.TransactionStatus = &TransactionStatusResponse{
			MessageReference: &MessageReference{Category: e.Category, SaleID: e.SaleID, ServiceID: e.ServiceID},
			Repeated:         rep,
			journaled:        journaled,
		}
	})
}

func (s *Server) diagnose(ctx context.Context, req *Request) *Response {
	s.mu.Lock()
	busy := s.current != nil
	var sales []string
	// LoggedSaleID names the caller only: other POS's identifiers are
	// theirs.
	if s.sessions.has(req.Header.SaleID) {
		sales = []string{req.Header.SaleID}
	}
	s.mu.Unlock()
	d := &DiagnosisResponse{GlobalStatus: "OK", CommunicationOK: true, LoggedSaleIDs: sales}
	if busy {
		d.GlobalStatus = "Busy"
	}
	if s.deps.Diagnoser != nil {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		health, err := s.deps.Diagnoser.Diagnose(dctx)
		cancel()
		if err != nil {
			s.log.Warn("diagnosis", "err", err)
			return failureResponse(req.Header, asError(err, UnavailableService))
		}
		d.Hosts, d.OutboxDepth = health.Hosts, health.OutboxDepth
		if health.Attention != "" && !busy {
			d.GlobalStatus = "Maintenance"
		}
		for _, h := range health.Hosts {
			if !h.Reachable {
				d.CommunicationOK = false
			}
		}
	}
	return s.ok(req.Header, func(r *Response) { r.Diagnosis = d })
}

func (s *Server) display(ctx context.Context, req *Request) *Response {
	if s.deps.Display == nil {
		return failureResponse(req.Header, Errorf(UnavailableDevice, "no display"))
	}
	st := ResponseStatus{Result: Success}
	if err := s.deps.Display.Show(ctx, req.Display.Outputs); err != nil {
		e := asError(err, UnavailableDevice)
		st = ResponseStatus{Result: Failure, ErrorCondition: e.Condition, AdditionalResponse: e.Text}
	}
	return s.ok(req.Header, func(r *Response) {
		r.Status = st
		r.Display = &DisplayResponse{}
		for _, o := range req.Display.Outputs {
			r.Display.Outputs = append(r.Display.Outputs, OutputResult{Device: o.Device, InfoQualify: o.InfoQualify, Status: st})
		}
	})
}
