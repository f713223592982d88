package nexo

import "context"

// eventCategory is EventNotification: the POS tells the POI about an event.
// It is logged, never answered, and needs no session.
type eventCategory struct{}

func (eventCategory) name() MessageCategory { return CategoryEvent }
func (eventCategory) traits() traits        { return traits{silent: true, sessionless: true} }

func (eventCategory) serve(_ context.Context, s *Server, req *Request) *Response {
	if req.Event == nil { // requestFromWire refuses this; never trust it blindly
		return failureResponse(req.Header, formatError("EventNotification", "missing"))
	}
	s.log.Info("nexo event from POS", "event", req.Event.EventToNotify, "sale_id", req.Header.SaleID)
	return nil
}

func (eventCategory) requestFromWire(m *wireMessage, r *Request) (e *Error) {
	r.Event, e = eventFromWire(m.EventNotification)
	return e
}

func eventFromWire(w *wireEventNotification) (*EventNotification, *Error) {
	const f = "EventNotification"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	ts, e := parseTime(f+".TimeStamp", w.TimeStamp)
	if e != nil {
		return nil, e
	}
	if w.EventToNotify == "" {
		return nil, formatError(f+".EventToNotify", "missing")
	}
	if e := checkLen(f+".EventToNotify", w.EventToNotify, maxRefLen); e != nil {
		return nil, e
	}
	if e := checkLen(f+".EventDetails", w.EventDetails, maxDetailsLen); e != nil {
		return nil, e
	}
	return &EventNotification{TimeStamp: ts, EventToNotify: w.EventToNotify, EventDetails: w.EventDetails, MaintenanceRequired: w.MaintenanceRequiredFlag}, nil
}

func (eventCategory) requestToWire(r *Request, m *wireMessage) (bool, error) {
	if r.Event == nil {
		return false, nil
	}
	m.EventNotification = &wireEventNotification{
		TimeStamp: formatTime(r.Event.TimeStamp), EventToNotify: r.Event.EventToNotify,
		EventDetails: r.Event.EventDetails, MaintenanceRequiredFlag: r.Event.MaintenanceRequired,
	}
	return true, nil
}

// An event has no response.
func (eventCategory) responseToWire(r *Response, _ *wireMessage) error {
	return errNoResponse(r.Header.Category)
}

func (eventCategory) responseFromWire(_ *wireMessage, r *Response) *Error {
	return errNoResponseFromWire(r.Header.Category)
}

func (eventCategory) request5FromWire(m *wire5Message, r *Request) (e *Error) {
	r.Event, e = event5FromWire(m.EventNotification)
	return e
}

func (eventCategory) request5ToWire(r *Request, m *wire5Message) (string, error) {
	if r.Event == nil {
		return "", nil
	}
	m.EventNotification = &wire5EventNotification{
		EventDateTime: formatTime(r.Event.TimeStamp), EventToNotify: r.Event.EventToNotify,
		EventDetails: r.Event.EventDetails, MaintenanceRequiredFlag: r.Event.MaintenanceRequired,
	}
	return root5Event, nil
}

func (eventCategory) response5ToWire(r *Response, _ *wire5Message) (string, error) {
	return "", errNoResponse5(r.Header.Category)
}

// The 3.x wire form (wire3.go has the conventions).

type wireEventNotification struct {
	TimeStamp               string `json:",omitempty" xml:",attr,omitempty"`
	EventToNotify           string `json:",omitempty" xml:",attr,omitempty"`
	EventDetails            string `json:",omitempty" xml:",attr,omitempty"`
	MaintenanceRequiredFlag bool   `json:",omitempty" xml:",attr,omitempty"`
	RejectedMessage         string `json:",omitempty" xml:",attr,omitempty"`
}
