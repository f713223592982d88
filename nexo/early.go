package nexo

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
)

// A transaction's response is encoded while its outcome is journaled: the
// journal's durable write (a bbolt commit, an fdatasync or two) and the
// encoding (the receipts make it a few KiB of JSON, tens of µs on a busy
// terminal) need nothing from each other, and the POS gets the bytes only
// once both are done, so the outcome is still durable before it is told.
// A response the journal's failure replaces (txFailure in transact) is
// encoded afresh: what was encoded early is used only for the very Response
// that is sent. A payment's answer in plain Nexo 3.x JSON, appended by hand
// in a microsecond or two, is encoded just before the write instead: a
// goroutine would cost more than it saves.

// earlyEncoder encodes one exchange's response ahead of reply, in its own
// goroutine (owned by the handler: reply always waits for it) or inline.
type earlyEncoder struct {
	s    *Server
	ex   *exchange
	resp *Response     // what was encoded; nil until start, or if encoding panicked
	out  reply         // resp's encoding
	done chan struct{} // closed when the goroutine ends; nil if none started
}

type earlyKey struct{}

// withEarlyEncoder gives transact, through ctx, the exchange to encode for.
func withEarlyEncoder(ctx context.Context, s *Server, ex *exchange) (context.Context, *earlyEncoder) {
	ee := &earlyEncoder{s: s, ex: ex}
	return context.WithValue(ctx, earlyKey{}, ee), ee
}

// encodeEarly starts encoding resp for the exchange ctx carries, if any (the
// Nexo 3.x path sets one; other callers of dispatch do not). A payment's
// answer in plain Nexo 3.x JSON is appended by hand (nexo/response_json.go)
// in about a microsecond, less than starting a goroutine and waking a CPU
// for it: it is encoded here, before the journal write, and is as ready when
// the write returns.
func encodeEarly(ctx context.Context, resp *Response) {
	ee, _ := ctx.Value(earlyKey{}).(*earlyEncoder)
	if ee == nil || ee.done != nil || ee.resp != nil || resp == nil {
		return
	}
	if _, isJSON := ee.ex.codec.(JSONCodec); isJSON && !ee.ex.protected && resp.Header.Category == CategoryPayment {
		ee.encode(resp)
		return
	}
	ee.done = make(chan struct{})
	go func() {
		defer close(ee.done)
		ee.encode(resp)
	}()
}

// encode sets ee.out to resp's encoding, and ee.resp to resp once it is.
func (ee *earlyEncoder) encode(resp *Response) {
	defer func() {
		if p := recover(); p != nil {
			// reply encodes again in the handler, whose recover answers;
			// the journal write goes ahead meanwhile.
			ee.s.log.Error("nexo early encode panic", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			ee.resp = nil
		}
	}()
	ee.out = ee.s.encode(ee.ex, http.StatusOK, resp)
	ee.resp = resp
	if h := ee.s.earlyEncoded; h != nil {
		h()
	}
}

// wait returns once the early encoding, if any, is over: a panic unwinding
// past process must not leave it writing ex while the handler answers.
func (ee *earlyEncoder) wait() {
	if ee.done != nil {
		<-ee.done
	}
}

// reply is resp encoded: the early encoding when it is resp's, else a fresh
// one. It waits for the early encoding in both cases (it writes ex).
func (ee *earlyEncoder) reply(resp *Response) reply {
	ee.wait()
	if ee.resp != nil && ee.resp == resp {
		return ee.out
	}
	return ee.s.encode(ee.ex, http.StatusOK, resp)
}
