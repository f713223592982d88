package nexo

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"
)

// Exchange serves one Nexo message received other than on POST /nexo (the
// agent's cloud connector relays them from the platform) through exactly the
// path /nexo uses: the same codec choice, message security, session rules,
// journal, ServiceID / ExchangeIdentification replay and TransactionStatus
// (MessageStatus in v5). It returns the answer's body, empty when the message
// has none (Abort, an event from the POS). A body over MaxRequestBytes is
// rejected as /nexo rejects it.
func (s *Server) Exchange(ctx context.Context, body []byte) []byte {
	start := time.Now()
	if s.deps.InFlight != nil {
		s.deps.InFlight.Begin()
		defer s.deps.InFlight.End()
	}
	ex := &exchange{codec: codecFor("", body)}
	if isNexoV5(body) {
		ex.v5 = &exchange5{}
	}
	var out reply
	func() {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("nexo exchange panic", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				out = s.failure(ex, http.StatusOK, &Error{Condition: UnavailableService, Text: "internal error"})
			}
		}()
		if int64(len(body)) > s.cfg.MaxRequestBytes {
			out = s.reject(ex, http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes", s.cfg.MaxRequestBytes))
			return
		}
		out = s.process(ctx, ex, body)
	}()
	if s.deps.Observer != nil {
		result := ex.result
		if result == "" {
			result = Success
		}
		s.deps.Observer.ObserveRequest(ex.hdr.Category, result, ex.condition, time.Since(start))
	}
	return out.body
}
