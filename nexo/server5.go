package nexo

import (
	"context"
	"net/http"
)

// exchange5 is what the server knows about a v5 message being served.
type exchange5 struct {
	hdr       *wire5Header // the request's Header as received; nil if unreadable
	protected bool         // the request was protected: so is the response
}

// process5 serves one Nexo v5 message with the same rules as 3.x: the
// request is mapped onto the model and goes through the same dispatch
// (sessions, journal, one payment at a time, Abort, TransactionStatus).
func (s *Server) process5(ctx context.Context, ex *exchange, body []byte) reply {
	root, m, e := decode5(body)
	if e != nil {
		return s.reject5(ex, http.StatusOK, rejectParsing, e.Text)
	}
	ex.v5.hdr = m.Header
	h, rej := header5FromWire(root, m)
	ex.hdr = h
	if rej != nil {
		return s.reject5(ex, http.StatusOK, rej.reason, rej.text)
	}
	protected := m.NexoBlob != "" || m.SecurityTrailer != nil
	if !protected {
		// Classified before the security check, so that a refusal is a
		// response of the right kind.
		if rej := classify5(&h, root, m); rej != nil {
			ex.hdr = h
			return s.reject5(ex, http.StatusOK, rej.reason, rej.text)
		}
		ex.hdr = h
	}
	switch {
	case s.cfg.Key != nil:
		inner, cerr := s.cfg.Key.open5(root, m)
		if cerr == nil {
			cerr = s.checkReplay(m.SecurityTrailer) // the same replay window as 3.x
		}
		if cerr != nil {
			s.log.Warn("nexo v5 message refused", "reason", cerr.Error(), "sale_id", h.SaleID, "service_id", h.ServiceID)
			return s.failure(ex, http.StatusUnauthorized, &Error{Condition: NotAllowed, Text: cerr.Error()})
		}
		m, ex.v5.protected = inner, true
		if rej := classify5(&h, root, m); rej != nil {
			ex.hdr = h
			return s.reject5(ex, http.StatusOK, rej.reason, rej.text)
		}
		ex.hdr = h
	case protected:
		cerr := &cryptoError{cryptoUnknownKey, "no shared key is configured on this POI"}
		return s.failure(ex, http.StatusUnauthorized, &Error{Condition: NotAllowed, Text: cerr.Error()})
	}
	req, e := request5BodyFromWire(h, m)
	if e != nil {
		return s.failure(ex, http.StatusOK, e)
	}
	ex.hdr = req.Header
	if ex.v5.protected {
		if cerr := s.checkFresh(req); cerr != nil {
			s.log.Warn("nexo v5 message refused", "reason", cerr.Error(), "sale_id", ex.hdr.SaleID, "service_id", ex.hdr.ServiceID)
			return s.failure(ex, http.StatusUnauthorized, &Error{Condition: NotAllowed, Text: cerr.Error()})
		}
	}
	if e := journalable(req); e != nil {
		return s.failure(ex, http.StatusOK, e)
	}
	resp := s.dispatch(ctx, req)
	if resp == nil {
		return reply{status: http.StatusOK}
	}
	return s.encode5(ex, http.StatusOK, resp)
}

// protocolVersion is the version to answer with: the request's when it
// was acceptable, else ours.
func (ex *exchange5) protocolVersion() string {
	if ex.hdr != nil && isProtocolVersion5(ex.hdr.ProtocolVersion) {
		return ex.hdr.ProtocolVersion
	}
	return protocolVersion5
}

func (s *Server) encode5(ex *exchange, status int, resp *Response) reply {
	root, m, err := response5ToWire(resp, ex.v5.protocolVersion(), s.now())
	if err == nil {
		var b []byte
		if ex.v5.protected {
			b, err = s.cfg.Key.seal5(root, m, nil)
		} else {
			b, err = encode5(root, m)
		}
		if err == nil {
			ex.result, ex.condition = resp.Status.Result, resp.Status.ErrorCondition
			return reply{status: status, body: b, ctype: JSON5Codec{}.ContentType()}
		}
	}
	s.log.Error("encode nexo v5 response", "err", err, "category", resp.Header.Category)
	return s.reject5(ex, status, rejectUnable, "response could not be encoded")
}

// failure5 answers with Response FAIL when the message has a v5 response,
// and with a rejection (casp.013) otherwise (Abort, event notification, a
// message not classified).
func (s *Server) failure5(ex *exchange, status int, e *Error) reply {
	if answers5(ex.hdr.Category) {
		return s.encode5(ex, status, failureResponse(ex.hdr, e))
	}
	reason := rejectUnable
	switch {
	case e.Condition == MessageFormat:
		reason = rejectParsing
	case status == http.StatusUnauthorized:
		reason = rejectSecurity
	case e.Condition == NotAllowed:
		reason = rejectRecipient
	}
	return s.reject5(ex, status, reason, e.Text)
}

// reject5 answers with a SaleToPOIMessageRejection (MessageFunction SSRJ)
// naming the exchange refused when it could be read.
func (s *Server) reject5(ex *exchange, status int, reason, why string) reply {
	ex.result, ex.condition = "Reject", MessageFormat
	var exchangeID, sale string
	if h := ex.v5.hdr; h != nil {
		if len(h.ExchangeIdentification) <= maxPartyIDLength5 {
			exchangeID = h.ExchangeIdentification
		}
		if h.InitiatingParty != nil && len(h.InitiatingParty.Identification) <= maxPartyIDLength5 {
			sale = h.InitiatingParty.Identification
		}
	}
	m := &wire5Message{
		Header: header5ToWire(fnRejection, ex.v5.protocolVersion(), exchangeID, s.cfg.POIID, sale, s.now()),
		Reject: &wire5Reject{RejectReason: reason, AdditionalInformation: why},
	}
	b, err := encode5(root5Rejection, m)
	if err != nil {
		return reply{status: status}
	}
	return reply{status: status, body: b, ctype: JSON5Codec{}.ContentType()}
}

// journalable checks that a v5 request reads back from the 3.x encoding,
// which the journal keeps and recovery decodes; it also holds every v5
// request to the 3.x field limits (a Login's OperatorID ends up in the
// journaled payments of its SaleID).
func journalable(req *Request) *Error {
	raw, err := JSONCodec{}.EncodeRequest(req)
	if err == nil {
		_, err = JSONCodec{}.DecodeRequest(raw)
	}
	if err != nil {
		e := asError(err, MessageFormat)
		return &Error{Condition: MessageFormat, Text: "not representable in the journal: " + e.Text}
	}
	return nil
}
