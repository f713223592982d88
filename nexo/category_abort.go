package nexo

import (
	"context"
	"fmt"
)

// abortCategory is Abort: it cancels the caller's transaction in progress
// and is never answered.
type abortCategory struct{}

func (abortCategory) name() MessageCategory { return CategoryAbort }
func (abortCategory) traits() traits        { return traits{silent: true} }

func (abortCategory) serve(_ context.Context, s *Server, req *Request) *Response {
	s.abort(req)
	return nil
}

func (abortCategory) requestFromWire(m *wireMessage, r *Request) (e *Error) {
	r.Abort, e = abortFromWire(m.AbortRequest)
	return e
}

func abortFromWire(w *wireAbortRequest) (*AbortRequest, *Error) {
	const f = "AbortRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	ref, e := refFromWire(f+".MessageReference", w.MessageReference)
	if e != nil {
		return nil, e
	}
	if ref.Category == "" {
		return nil, formatError(f+".MessageReference.MessageCategory", "missing")
	}
	if w.AbortReason == "" {
		return nil, formatError(f+".AbortReason", "missing")
	}
	if e := checkLen(f+".AbortReason", w.AbortReason, maxTextLen); e != nil {
		return nil, e
	}
	return &AbortRequest{MessageReference: *ref, AbortReason: w.AbortReason}, nil
}

func (abortCategory) requestToWire(r *Request, m *wireMessage) (bool, error) {
	if r.Abort == nil {
		return false, nil
	}
	m.AbortRequest = &wireAbortRequest{AbortReason: r.Abort.AbortReason, MessageReference: refToWire(&r.Abort.MessageReference)}
	return true, nil
}

// responseToWire and responseFromWire map the AbortResponse some POI send
// back (this one never does).
func (abortCategory) responseToWire(r *Response, m *wireMessage) error {
	m.AbortResponse = &wireLogoutResponse{Response: statusToWire(r.Status)}
	return nil
}

func (abortCategory) responseFromWire(m *wireMessage, r *Response) *Error {
	return bodyStatusFromWire("AbortResponse", m.AbortResponse, r)
}

func (abortCategory) request5FromWire(m *wire5Message, r *Request) (e *Error) {
	r.Abort, e = abort5FromWire(m.Abort)
	return e
}

func (abortCategory) request5ToWire(r *Request, m *wire5Message) (string, error) {
	if r.Abort == nil {
		return "", nil
	}
	ref, err := ref5ToWire(&r.Abort.MessageReference)
	if err != nil {
		return "", fmt.Errorf("encode Abort: %w", err)
	}
	m.Abort = &wire5Abort{MessageReference: ref, AbortReason: r.Abort.AbortReason}
	return root5Abort, nil
}

// An Abort has no v5 response.
func (abortCategory) response5ToWire(r *Response, _ *wire5Message) (string, error) {
	return "", errNoResponse5(r.Header.Category)
}

// The 3.x wire form (wire3.go has the conventions).

type wireAbortRequest struct {
	AbortReason      string                `json:",omitempty" xml:",attr,omitempty"`
	MessageReference *wireMessageReference `json:",omitempty" xml:",omitempty"`
}
