package nexo

import (
	"fmt"
	"strings"
	"time"
)

// This file maps the Nexo 3.x envelope to the model and back: the header,
// the elements several categories share, and the request and response
// messages, whose bodies each category maps (category.go). Requests are
// validated as they are mapped: every missing mandatory field or bad value
// becomes a MessageFormat *Error naming the field.

// timeLayout is ISO 8601 with milliseconds, as existing Nexo JSON APIs send.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	var buf [40]byte
	return string(appendWireTime(buf[:0], t))
}

// appendWireTime appends t.Format(timeLayout), byte for byte
// (TestWireTimeIsFormat, FuzzWireTime), without interpreting the
// layout: a payment's path formats several timestamps.
func appendWireTime(b []byte, t time.Time) []byte {
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, timeLayout)
	}
	b = appendDateTime(b, year, int(month), day, t, 'T')
	ms := t.Nanosecond() / 1e6 // truncated, as Format's .000
	b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	_, off := t.Zone()
	if off == 0 {
		return append(b, 'Z')
	}
	zone := off / 60 // minutes; Z07:00 drops the seconds
	if zone < 0 {
		b = append(b, '-')
		zone = -zone
	} else {
		b = append(b, '+')
	}
	return append2(append(append2(b, zone/60), ':'), zone%60)
}

// appendDateTime appends "2006-01-02" sep "15:04:05" for t, whose date is
// year, month, day (0–9999).
func appendDateTime(b []byte, year, month, day int, t time.Time, sep byte) []byte {
	hour, min, sec := t.Clock()
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-')
	b = append(append2(b, month), '-')
	b = append(append2(b, day), sep)
	b = append(append2(b, hour), ':')
	b = append(append2(b, min), ':')
	return append2(b, sec)
}

// append2 appends n (0–99) in two digits.
func append2(b []byte, n int) []byte { return append(b, byte('0'+n/10), byte('0'+n%10)) }

func parseTime(field, s string) (time.Time, *Error) {
	if s == "" {
		return time.Time{}, formatError(field, "missing")
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	// ISO 8601 without an offset: some POS send local time; read it as UTC
	// rather than refuse the message.
	if t, err := time.Parse("2006-01-02T15:04:05.999999999", s); err == nil {
		return t, nil
	}
	return time.Time{}, formatError(field, "not an ISO 8601 timestamp: %q", clip(s, 40))
}

func headerFromWireLenient(w *wireHeader) Header {
	if w == nil {
		return Header{}
	}
	return Header{
		ProtocolVersion: w.ProtocolVersion,
		Class:           MessageClass(w.MessageClass),
		Category:        MessageCategory(w.MessageCategory),
		Type:            MessageType(w.MessageType),
		ServiceID:       w.ServiceID,
		DeviceID:        w.DeviceID,
		SaleID:          w.SaleID,
		POIID:           w.POIID,
	}
}

func headerToWire(h Header) *wireHeader {
	return &wireHeader{
		ProtocolVersion: h.ProtocolVersion,
		MessageClass:    string(h.Class),
		MessageCategory: string(h.Category),
		MessageType:     string(h.Type),
		ServiceID:       h.ServiceID,
		DeviceID:        h.DeviceID,
		SaleID:          h.SaleID,
		POIID:           h.POIID,
	}
}

// validateRequestHeader applies the MessageHeader rules for a message sent
// by the Sale system.
func validateRequestHeader(w *wireHeader) (Header, *Error) {
	if w == nil {
		return Header{}, formatError("MessageHeader", "missing")
	}
	h := headerFromWireLenient(w)
	if h.ProtocolVersion != "" && !strings.HasPrefix(h.ProtocolVersion, "3.") {
		return h, formatError("MessageHeader.ProtocolVersion", "unsupported version %q (3.x expected)", clip(h.ProtocolVersion, 16))
	}
	switch h.Class {
	case ClassService, ClassDevice, ClassEvent:
	case "":
		return h, formatError("MessageHeader.MessageClass", "missing")
	default:
		return h, formatError("MessageHeader.MessageClass", "invalid value %q", clip(string(h.Class), 32))
	}
	if h.Category == "" {
		return h, formatError("MessageHeader.MessageCategory", "missing")
	}
	if (h.Class == ClassEvent) != (h.Category == CategoryEvent) {
		return h, formatError("MessageHeader.MessageClass", "%s goes with MessageCategory Event only", ClassEvent)
	}
	switch h.Type {
	case TypeRequest, TypeNotification:
	case "":
		return h, formatError("MessageHeader.MessageType", "missing")
	default:
		return h, formatError("MessageHeader.MessageType", "invalid value %q", clip(string(h.Type), 32))
	}
	if e := checkLens(maxRefLen, "MessageHeader.SaleID", h.SaleID, "MessageHeader.POIID", h.POIID); e != nil {
		return h, e
	}
	if e := checkLens(maxIDLen, "MessageHeader.ServiceID", h.ServiceID, "MessageHeader.DeviceID", h.DeviceID); e != nil {
		return h, e
	}
	if e := checkLen("MessageHeader.ProtocolVersion", h.ProtocolVersion, 16); e != nil {
		return h, e
	}
	if h.SaleID == "" && h.Class != ClassEvent {
		return h, formatError("MessageHeader.SaleID", "missing")
	}
	if h.POIID == "" {
		return h, formatError("MessageHeader.POIID", "missing")
	}
	switch {
	case h.Class == ClassService && h.ServiceID == "":
		return h, formatError("MessageHeader.ServiceID", "missing")
	case h.Class == ClassDevice && h.ServiceID == "" && h.DeviceID == "":
		return h, formatError("MessageHeader.ServiceID", "missing")
	}
	return h, nil
}

func requestFromWire(m *wireMessage) (*Request, error) {
	h, err := validateRequestHeader(m.MessageHeader)
	if err != nil {
		return nil, err
	}
	c := categoryOf(h.Category)
	if c == nil {
		return nil, formatError("MessageHeader.MessageCategory", "unsupported category %q", clip(string(h.Category), 32))
	}
	r := &Request{Header: h}
	if e := c.requestFromWire(m, r); e != nil {
		return nil, e
	}
	return r, nil
}

func transactionIDFromWire(field string, w *wireTransactionID, needTime bool) (TransactionID, *Error) {
	if w == nil {
		return TransactionID{}, formatError(field, "missing")
	}
	if w.TransactionID == "" {
		return TransactionID{}, formatError(field+".TransactionID", "missing")
	}
	if e := checkLen(field+".TransactionID", w.TransactionID, maxTxnIDLen); e != nil {
		return TransactionID{}, e
	}
	id := TransactionID{ID: w.TransactionID}
	if w.TimeStamp != "" || needTime {
		t, e := parseTime(field+".TimeStamp", w.TimeStamp)
		if e != nil {
			return TransactionID{}, e
		}
		id.TimeStamp = t
	}
	return id, nil
}

func transactionIDToWire(t TransactionID) *wireTransactionID {
	if t.ID == "" && t.TimeStamp.IsZero() {
		return nil
	}
	return &wireTransactionID{TransactionID: t.ID, TimeStamp: formatTime(t.TimeStamp)}
}

func refFromWire(field string, w *wireMessageReference) (*MessageReference, *Error) {
	if w == nil {
		return nil, formatError(field, "missing")
	}
	if w.ServiceID == "" && w.DeviceID == "" {
		return nil, formatError(field+".ServiceID", "missing")
	}
	if e := checkLens(maxIDLen, field+".ServiceID", w.ServiceID, field+".DeviceID", w.DeviceID); e != nil {
		return nil, e
	}
	if e := checkLens(maxRefLen, field+".SaleID", w.SaleID, field+".POIID", w.POIID, field+".MessageCategory", w.MessageCategory); e != nil {
		return nil, e
	}
	return &MessageReference{
		Category: MessageCategory(w.MessageCategory), ServiceID: w.ServiceID,
		DeviceID: w.DeviceID, SaleID: w.SaleID, POIID: w.POIID,
	}, nil
}

func refToWire(r *MessageReference) *wireMessageReference {
	if r == nil {
		return nil
	}
	return &wireMessageReference{
		MessageCategory: string(r.Category), ServiceID: r.ServiceID,
		DeviceID: r.DeviceID, SaleID: r.SaleID, POIID: r.POIID,
	}
}

func requestToWire(r *Request) (*wireMessage, error) {
	m := &wireMessage{MessageHeader: headerToWire(r.Header)}
	for _, c := range categories {
		ok, err := c.requestToWire(r, m)
		if err != nil {
			return nil, err
		}
		if ok {
			return m, nil
		}
	}
	return nil, fmt.Errorf("encode request: no body for category %q", r.Header.Category)
}

// ---- responses

func statusToWire(s ResponseStatus) *wireResponse {
	return &wireResponse{Result: string(s.Result), ErrorCondition: string(s.ErrorCondition), AdditionalResponse: s.AdditionalResponse}
}

func statusFromWire(field string, w *wireResponse) (ResponseStatus, *Error) {
	if w == nil {
		return ResponseStatus{}, formatError(field+".Response", "missing")
	}
	switch Result(w.Result) {
	case Success, Failure, Partial:
	case "":
		return ResponseStatus{}, formatError(field+".Response.Result", "missing")
	default:
		return ResponseStatus{}, formatError(field+".Response.Result", "invalid value %q", w.Result)
	}
	return ResponseStatus{Result: Result(w.Result), ErrorCondition: ErrorCondition(w.ErrorCondition), AdditionalResponse: w.AdditionalResponse}, nil
}

// responseBody is a 3.x response body that carries a Response status.
type responseBody[T any] interface {
	*T
	status() *wireResponse
}

func (w *wireLoginResponse) status() *wireResponse             { return w.Response }
func (w *wireLogoutResponse) status() *wireResponse            { return w.Response }
func (w *wirePaymentResponse) status() *wireResponse           { return w.Response }
func (w *wireReversalResponse) status() *wireResponse          { return w.Response }
func (w *wireTransactionStatusResponse) status() *wireResponse { return w.Response }
func (w *wireDiagnosisResponse) status() *wireResponse         { return w.Response }
func (w *wireGetTotalsResponse) status() *wireResponse         { return w.Response }
func (w *wireReconciliationResponse) status() *wireResponse    { return w.Response }

// bodyStatusFromWire reads into r the Response status of w, the body a
// response of its category must have; field names it in errors.
func bodyStatusFromWire[T any, P responseBody[T]](field string, w P, r *Response) *Error {
	if w == nil {
		return formatError(field, "missing")
	}
	var e *Error
	r.Status, e = statusFromWire(field, w.status())
	return e
}

func responseToWire(r *Response) (*wireMessage, error) {
	m := &wireMessage{MessageHeader: headerToWire(r.Header)}
	c := categoryOf(r.Header.Category)
	if c == nil {
		return nil, errNoResponse(r.Header.Category)
	}
	if err := c.responseToWire(r, m); err != nil {
		return nil, err
	}
	return m, nil
}

func responseFromWire(m *wireMessage) (*Response, error) {
	if m.MessageHeader == nil {
		return nil, formatError("MessageHeader", "missing")
	}
	r := &Response{Header: headerFromWireLenient(m.MessageHeader)}
	c := categoryOf(r.Header.Category)
	if c == nil {
		return nil, errNoResponseFromWire(r.Header.Category)
	}
	if e := c.responseFromWire(m, r); e != nil {
		return nil, e
	}
	return r, nil
}

// errNoResponse and errNoResponseFromWire refuse a response of a category
// that has none.
func errNoResponse(c MessageCategory) error {
	return fmt.Errorf("encode response: unsupported category %q", c)
}

func errNoResponseFromWire(c MessageCategory) *Error {
	return formatError("MessageHeader.MessageCategory", "unsupported category %q", c)
}
