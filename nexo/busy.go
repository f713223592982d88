package nexo

import "net/http"

// Busy answers a message its caller will not serve now (the agent's cloud
// connector, when its in-flight and queue bounds are reached), without
// serving it: nothing is journaled, no session or payment state changes. The
// answer is a response of the message's kind with Result Failure and
// ErrorCondition Busy (the POS may send it again later); a message that
// cannot be classified without opening it (a protected one) or that is not
// readable gets the rejection the server gives unreadable messages, naming
// why. It never reads the payload beyond the header, so its cost does not
// depend on what the peer sent.
func (s *Server) Busy(body []byte, why string) []byte {
	ex := &exchange{codec: codecFor("", body)}
	e := &Error{Condition: Busy, Text: why}
	if int64(len(body)) > s.cfg.MaxRequestBytes {
		return s.reject(ex, http.StatusOK, why).body
	}
	if isNexoV5(body) {
		ex.v5 = &exchange5{}
		root, m, derr := decode5(body)
		if derr != nil {
			return s.reject5(ex, http.StatusOK, rejectParsing, derr.Text).body
		}
		ex.v5.hdr = m.Header
		h, rej := header5FromWire(root, m)
		ex.hdr = h
		if rej == nil && m.NexoBlob == "" && m.SecurityTrailer == nil {
			if rej = classify5(&h, root, m); rej == nil {
				ex.hdr = h
				return s.failure5(ex, http.StatusOK, e).body
			}
		}
		return s.reject5(ex, http.StatusOK, rejectUnable, why).body
	}
	root, m, err := ex.codec.decodeWire(body)
	if err != nil || root != rootRequest {
		return s.reject(ex, http.StatusOK, why).body
	}
	ex.hdr = clipHeader(headerFromWireLenient(m.MessageHeader))
	if m.NexoBlob != "" || m.SecurityTrailer != nil {
		return s.reject(ex, http.StatusOK, why).body
	}
	return s.failure(ex, http.StatusOK, e).body
}
