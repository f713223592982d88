package nexo

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file maps the Nexo v5 (ISO 20022 casp) wire structs to the model and
// back, and validates v5 requests. The model is the one the 3.x codecs use;
// the v5 header maps onto it as follows:
//
//	ExchangeIdentification          ↔ Header.ServiceID (same rules: 1–10
//	                                  characters, unique per SaleID for 48 h,
//	                                  echoed in the response)
//	InitiatingParty.Identification  ↔ Header.SaleID (request), POIID (response)
//	RecipientParty.Identification   ↔ Header.POIID (request), SaleID (response)
//	MessageFunction + body          ↔ Header.Class, Category, Type
//
// Header.ProtocolVersion stays empty in the model for a v5 message: the
// journal keeps requests in the 3.x encoding, whose decoder accepts only
// empty or 3.x versions; the server echoes the v5 version it received.

// JSON5Codec is the Nexo v5 JSON encoding (ISO 20022 casp element names).
// Now stamps Header.CreationDateTime (time.Now when nil).
type JSON5Codec struct {
	Now func() time.Time
}

// ContentType is the media type v5 messages are sent with.
func (JSON5Codec) ContentType() string { return "application/json" }

func (c JSON5Codec) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// json5Envelope is the outermost JSON object: exactly one root member.
type json5Envelope struct {
	SaleToPOIServiceRequest            *wire5Message `json:",omitempty"`
	SaleToPOIServiceResponse           *wire5Message `json:",omitempty"`
	SaleToPOISessionManagementRequest  *wire5Message `json:",omitempty"`
	SaleToPOISessionManagementResponse *wire5Message `json:",omitempty"`
	SaleToPOIAbort                     *wire5Message `json:",omitempty"`
	SaleToPOIEventNotification         *wire5Message `json:",omitempty"`
	SaleToPOIMessageRejection          *wire5Message `json:",omitempty"`
	SaleToPOIMessageStatusRequest      *wire5Message `json:",omitempty"`
	SaleToPOIMessageStatusResponse     *wire5Message `json:",omitempty"`
}

func (e *json5Envelope) slots() []struct {
	root string
	m    **wire5Message
} {
	return []struct {
		root string
		m    **wire5Message
	}{
		{root5ServiceRequest, &e.SaleToPOIServiceRequest},
		{root5ServiceResponse, &e.SaleToPOIServiceResponse},
		{root5SessionRequest, &e.SaleToPOISessionManagementRequest},
		{root5SessionResponse, &e.SaleToPOISessionManagementResponse},
		{root5Abort, &e.SaleToPOIAbort},
		{root5Event, &e.SaleToPOIEventNotification},
		{root5Rejection, &e.SaleToPOIMessageRejection},
		{root5StatusRequest, &e.SaleToPOIMessageStatusRequest},
		{root5StatusResponse, &e.SaleToPOIMessageStatusResponse},
	}
}

// decode5 parses a v5 JSON document into its root name and content.
func decode5(b []byte) (string, *wire5Message, *Error) {
	var env json5Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return "", nil, formatError(te.Field, "wrong type %s", te.Value)
		}
		return "", nil, formatError("message", "invalid JSON: %v", err)
	}
	root, m := "", (*wire5Message)(nil)
	for _, s := range env.slots() {
		if *s.m == nil {
			continue
		}
		if m != nil {
			return "", nil, formatError("message", "both %s and %s", root, s.root)
		}
		root, m = s.root, *s.m
	}
	if m == nil {
		name := sniffRoot5(b)
		if name == "" {
			name = "message"
		}
		return name, nil, formatError(name, "not a supported Nexo v5 message")
	}
	return root, m, nil
}

func encode5(root string, m *wire5Message) ([]byte, error) {
	var env json5Envelope
	for _, s := range env.slots() {
		if s.root == root {
			*s.m = m
			b, err := json.Marshal(&env)
			if err != nil {
				return nil, fmt.Errorf("encode nexo v5 JSON: %w", err)
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("encode nexo v5 JSON: unknown root %q", root)
}

// reject5 is a v5 message refused as a whole (answered with a casp.013).
type reject5 struct {
	reason string
	text   string
}

func (r *reject5) asError() *Error {
	c := MessageFormat
	if r.reason == rejectSecurity || r.reason == rejectRecipient {
		c = NotAllowed
	}
	return &Error{Condition: c, Text: r.reason + ": " + r.text}
}

func rejectf(reason, field, format string, args ...any) *reject5 {
	return &reject5{reason: reason, text: field + ": " + fmt.Sprintf(format, args...)}
}

// requestRoots5 are the roots a Sale system sends, with their MessageFunction.
var requestRoots5 = map[string]string{
	root5ServiceRequest: fnServiceRequest,
	root5SessionRequest: fnSessionRequest,
	root5Abort:          fnAbort,
	root5Event:          fnEvent,
	root5StatusRequest:  fnStatusRequest,
}

// header5FromWire validates a request's Header and classifies the message
// as far as its root tells (classify5 does the rest).
// A failure here is answered with a rejection (casp.013); the returned
// Header holds what could be read, for that answer.
func header5FromWire(root string, m *wire5Message) (Header, *reject5) {
	h := Header{Type: TypeRequest, Class: ClassService}
	w := m.Header
	if w == nil {
		return h, rejectf(rejectInvalid, "Header", "missing")
	}
	if w.InitiatingParty != nil {
		h.SaleID = w.InitiatingParty.Identification
	}
	if w.RecipientParty != nil {
		h.POIID = w.RecipientParty.Identification
	}
	h.ServiceID = w.ExchangeIdentification
	fn, ok := requestRoots5[root]
	if !ok {
		return h, rejectf(rejectMessageType, root, "not a request this POI serves")
	}
	switch {
	case w.MessageFunction == "":
		return h, rejectf(rejectInvalid, "Header.MessageFunction", "missing")
	case w.MessageFunction != fn:
		return h, rejectf(rejectInvalid, "Header.MessageFunction", "%q does not match %s (%s expected)", w.MessageFunction, root, fn)
	case w.ProtocolVersion == "":
		return h, rejectf(rejectVersion, "Header.ProtocolVersion", "missing")
	case !isProtocolVersion5(w.ProtocolVersion):
		return h, rejectf(rejectVersion, "Header.ProtocolVersion", "unsupported version %q (5.x expected)", truncate(w.ProtocolVersion, maxProtocolVersionLen))
	case w.ExchangeIdentification == "":
		return h, rejectf(rejectParsing, "Header.ExchangeIdentification", "missing")
	case len(w.ExchangeIdentification) > maxExchangeIDLength5:
		return h, rejectf(rejectParsing, "Header.ExchangeIdentification", "longer than %d characters (it is the ServiceID)", maxExchangeIDLength5)
	case w.InitiatingParty == nil || w.InitiatingParty.Identification == "":
		return h, rejectf(rejectParsing, "Header.InitiatingParty.Identification", "missing")
	case len(w.InitiatingParty.Identification) > maxPartyIDLength5:
		return h, rejectf(rejectParsing, "Header.InitiatingParty.Identification", "longer than %d characters", maxPartyIDLength5)
	case w.RecipientParty == nil || w.RecipientParty.Identification == "":
		return h, rejectf(rejectRecipient, "Header.RecipientParty.Identification", "missing")
	case len(w.RecipientParty.Identification) > maxPartyIDLength5:
		return h, rejectf(rejectRecipient, "Header.RecipientParty.Identification", "longer than %d characters", maxPartyIDLength5)
	}
	if _, e := parseTime("Header.CreationDateTime", w.CreationDateTime); e != nil {
		return h, &reject5{reason: rejectParsing, text: e.Text}
	}
	switch root {
	case root5Abort:
		h.Category = CategoryAbort
	case root5Event:
		h.Class, h.Category, h.Type = ClassEvent, CategoryEvent, TypeNotification
	case root5StatusRequest:
		h.Category = CategoryTransactionStatus
	}
	return h, nil
}

// classify5 sets the category of a casp.001 or casp.005 from its body (for
// a protected message: once opened).
func classify5(h *Header, root string, m *wire5Message) *reject5 {
	switch root {
	case root5ServiceRequest:
		sr := m.ServiceRequest
		if sr == nil {
			return rejectf(rejectParsing, "ServiceRequest", "missing")
		}
		switch {
		case sr.ServiceContent == svcPaymentRequest, sr.ServiceContent == "" && sr.PaymentRequest != nil && sr.ReversalRequest == nil:
			h.Category = CategoryPayment
		case sr.ServiceContent == svcReversalRequest, sr.ServiceContent == "" && sr.ReversalRequest != nil && sr.PaymentRequest == nil:
			h.Category = CategoryReversal
		case sr.ServiceContent == "":
			return rejectf(rejectParsing, "ServiceRequest.ServiceContent", "missing")
		default:
			return rejectf(rejectMessageType, "ServiceRequest.ServiceContent", "unsupported service %q (%s or %s)", truncate(sr.ServiceContent, 8), svcPaymentRequest, svcReversalRequest)
		}
	case root5SessionRequest:
		sm := m.SessionManagementRequest
		n := 0
		if sm != nil {
			for _, c := range []struct {
				set bool
				cat MessageCategory
			}{{sm.LoginRequest != nil, CategoryLogin}, {sm.LogoutRequest != nil, CategoryLogout}, {sm.DiagnosisRequest != nil, CategoryDiagnosis}} {
				if c.set {
					h.Category, n = c.cat, n+1
				}
			}
		}
		if n != 1 {
			h.Category = ""
			return rejectf(rejectParsing, "SessionManagementRequest", "exactly one of LoginRequest, LogoutRequest, DiagnosisRequest expected")
		}
	}
	return nil
}

// isProtocolVersion5 accepts "5", "5.0", "5.1-WL1.0.0" and the like.
func isProtocolVersion5(v string) bool {
	return len(v) <= maxProtocolVersionLen && (v == "5" || strings.HasPrefix(v, "5."))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// request5BodyFromWire maps the body of a request whose header was accepted.
// A failure is a MessageFormat *Error answered with a v5 response.
func request5BodyFromWire(h Header, m *wire5Message) (*Request, *Error) {
	c, ok := categoryOf(h.Category).(category5)
	if !ok {
		return nil, formatError("message", "unsupported category %q", h.Category)
	}
	r := &Request{Header: h}
	if e := c.request5FromWire(m, r); e != nil {
		return nil, e
	}
	return r, nil
}

func txID5FromWire(field string, w *wire5TransactionID, needTime bool) (TransactionID, *Error) {
	if w == nil {
		return TransactionID{}, formatError(field, "missing")
	}
	if w.TransactionReference == "" {
		return TransactionID{}, formatError(field+".TransactionReference", "missing")
	}
	id := TransactionID{ID: w.TransactionReference}
	if w.TransactionDateTime != "" || needTime {
		t, e := parseTime(field+".TransactionDateTime", w.TransactionDateTime)
		if e != nil {
			return TransactionID{}, e
		}
		id.TimeStamp = t
	}
	return id, nil
}

func txID5ToWire(t TransactionID) *wire5TransactionID {
	if t.ID == "" && t.TimeStamp.IsZero() {
		return nil
	}
	return &wire5TransactionID{TransactionReference: t.ID, TransactionDateTime: formatTime(t.TimeStamp)}
}

// Transaction types (ISO 20022 CardPaymentServiceType codes) ↔ PaymentType.
const (
	txTypePayment = "CRDP"
	txTypeRefund  = "RFND"
)

func paymentType5FromWire(field, s string) (PaymentType, *Error) {
	switch s {
	case "", txTypePayment:
		return PaymentNormal, nil
	case txTypeRefund:
		return PaymentRefund, nil
	}
	return "", formatError(field, "unsupported value %q (%s or %s)", truncate(s, 8), txTypePayment, txTypeRefund)
}

func paymentType5ToWire(t PaymentType) string {
	switch t {
	case PaymentNormal:
		return txTypePayment
	case PaymentRefund:
		return txTypeRefund
	}
	return string(t)
}

func payment5FromWire(w *wire5PaymentRequest) (*PaymentRequest, *Error) {
	const f = "ServiceRequest.PaymentRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	stid, e := txID5FromWire(f+".SaleTransactionIdentification", w.SaleTransactionIdentification, true)
	if e != nil {
		return nil, e
	}
	pt := w.PaymentTransaction
	if pt == nil {
		return nil, formatError(f+".PaymentTransaction", "missing")
	}
	typ, e := paymentType5FromWire(f+".PaymentTransaction.TransactionType", pt.TransactionType)
	if e != nil {
		return nil, e
	}
	td := pt.TransactionDetails
	const tf = f + ".PaymentTransaction.TransactionDetails"
	if td == nil {
		return nil, formatError(tf, "missing")
	}
	if td.Currency == "" {
		return nil, formatError(tf+".Currency", "missing")
	}
	if _, ok := CurrencyExponent(td.Currency); !ok {
		return nil, formatError(tf+".Currency", "unknown currency %q", truncate(td.Currency, 8))
	}
	minor, e := parseAmount(tf+".TotalAmount", string(td.TotalAmount), td.Currency)
	if e != nil {
		return nil, e
	}
	if minor == 0 {
		return nil, formatError(tf+".TotalAmount", "must be greater than zero")
	}
	p := &PaymentRequest{
		SaleTransactionID: stid,
		SaleReferenceID:   w.SaleReferenceIdentification,
		OperatorID:        w.OperatorIdentification,
		Type:              typ,
		Amount:            Amount{Minor: minor, Currency: td.Currency},
	}
	if tc := pt.TransactionConditions; tc != nil {
		for _, b := range tc.AllowedPaymentBrand {
			if b == "" {
				return nil, formatError(f+".PaymentTransaction.TransactionConditions.AllowedPaymentBrand", "empty brand")
			}
		}
		p.AllowedBrands = tc.AllowedPaymentBrand
		p.InstrumentType = tc.PaymentInstrumentType
	}
	return p, nil
}

func payment5ToWire(p *PaymentRequest) (*wire5PaymentRequest, error) {
	amt, err := formatAmount(p.Amount.Minor, p.Amount.Currency)
	if err != nil {
		return nil, err
	}
	w := &wire5PaymentRequest{
		SaleTransactionIdentification: txID5ToWire(p.SaleTransactionID),
		SaleReferenceIdentification:   p.SaleReferenceID,
		OperatorIdentification:        p.OperatorID,
		PaymentTransaction: &wire5PaymentTransaction{
			TransactionType:    paymentType5ToWire(p.Type),
			TransactionDetails: &wire5TransactionDetails{Currency: p.Amount.Currency, TotalAmount: wireDecimal(amt)},
		},
	}
	if len(p.AllowedBrands) > 0 || p.InstrumentType != "" {
		w.PaymentTransaction.TransactionConditions = &wire5TransactionConditions{AllowedPaymentBrand: p.AllowedBrands, PaymentInstrumentType: p.InstrumentType}
	}
	return w, nil
}

func reversal5FromWire(w *wire5ReversalRequest) (*ReversalRequest, *Error) {
	const f = "ServiceRequest.ReversalRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	if w.OriginalTransaction == nil {
		return nil, formatError(f+".OriginalTransaction", "missing")
	}
	id, e := txID5FromWire(f+".OriginalTransaction.POITransactionIdentification", w.OriginalTransaction.POITransactionIdentification, false)
	if e != nil {
		return nil, e
	}
	switch w.ReversalReason {
	case "CustCancel", "MerchantCancel", "Malfunction", "Unable2Compl":
	case "":
		return nil, formatError(f+".ReversalReason", "missing")
	default:
		return nil, formatError(f+".ReversalReason", "invalid value %q", truncate(w.ReversalReason, 16))
	}
	return &ReversalRequest{OriginalPOITransactionID: id, OriginalSaleID: w.OriginalTransaction.SaleIdentification, Reason: w.ReversalReason}, nil
}

func login5FromWire(w *wire5LoginRequest) (*LoginRequest, *Error) {
	const f = "SessionManagementRequest.LoginRequest"
	dt, e := parseTime(f+".LoginDateTime", w.LoginDateTime)
	if e != nil {
		return nil, e
	}
	ss := w.SaleSoftware
	if ss == nil {
		return nil, formatError(f+".SaleSoftware", "missing")
	}
	for _, kv := range [][2]string{{"ProviderIdentification", ss.ProviderIdentification}, {"ApplicationName", ss.ApplicationName}, {"SoftwareVersion", ss.SoftwareVersion}} {
		if kv[1] == "" {
			return nil, formatError(f+".SaleSoftware."+kv[0], "missing")
		}
	}
	if w.OperatorLanguage == "" {
		return nil, formatError(f+".OperatorLanguage", "missing")
	}
	return &LoginRequest{
		DateTime: dt,
		SaleSoftware: SaleSoftware{
			ManufacturerID: ss.ProviderIdentification, ApplicationName: ss.ApplicationName,
			SoftwareVersion: ss.SoftwareVersion, CertificationCode: ss.CertificationCode,
		},
		OperatorLanguage: w.OperatorLanguage,
		OperatorID:       w.OperatorIdentification,
		ShiftNumber:      w.ShiftNumber,
	}, nil
}

// ServiceContent of a MessageReference ↔ the referenced category.
func refCategory5FromWire(field, s string) (MessageCategory, *Error) {
	switch s {
	case "":
		return "", nil
	case svcPaymentRequest:
		return CategoryPayment, nil
	case svcReversalRequest:
		return CategoryReversal, nil
	}
	return "", formatError(field, "unsupported value %q (%s or %s)", truncate(s, 8), svcPaymentRequest, svcReversalRequest)
}

func refCategory5ToWire(c MessageCategory) (string, error) {
	switch c {
	case "":
		return "", nil
	case CategoryPayment:
		return svcPaymentRequest, nil
	case CategoryReversal:
		return svcReversalRequest, nil
	}
	return "", fmt.Errorf("no Nexo v5 ServiceContent for category %q", c)
}

func ref5FromWire(field string, w *wire5MessageReference) (*MessageReference, *Error) {
	if w == nil {
		return nil, formatError(field, "missing")
	}
	if w.ExchangeIdentification == "" {
		return nil, formatError(field+".ExchangeIdentification", "missing")
	}
	if len(w.ExchangeIdentification) > maxExchangeIDLength5 {
		return nil, formatError(field+".ExchangeIdentification", "longer than %d characters", maxExchangeIDLength5)
	}
	cat, e := refCategory5FromWire(field+".ServiceContent", w.ServiceContent)
	if e != nil {
		return nil, e
	}
	r := &MessageReference{Category: cat, ServiceID: w.ExchangeIdentification}
	if w.InitiatingParty != nil {
		r.SaleID = w.InitiatingParty.Identification
	}
	if w.RecipientParty != nil {
		r.POIID = w.RecipientParty.Identification
	}
	return r, nil
}

func ref5ToWire(r *MessageReference) (*wire5MessageReference, error) {
	if r == nil {
		return nil, nil
	}
	sc, err := refCategory5ToWire(r.Category)
	if err != nil {
		return nil, err
	}
	w := &wire5MessageReference{ServiceContent: sc, ExchangeIdentification: r.ServiceID}
	if r.SaleID != "" {
		w.InitiatingParty = &wire5Party{Identification: r.SaleID}
	}
	if r.POIID != "" {
		w.RecipientParty = &wire5Party{Identification: r.POIID}
	}
	return w, nil
}

func abort5FromWire(w *wire5Abort) (*AbortRequest, *Error) {
	const f = "Abort"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	ref, e := ref5FromWire(f+".MessageReference", w.MessageReference)
	if e != nil {
		return nil, e
	}
	if w.AbortReason == "" {
		return nil, formatError(f+".AbortReason", "missing")
	}
	return &AbortRequest{MessageReference: *ref, AbortReason: w.AbortReason}, nil
}

func event5FromWire(w *wire5EventNotification) (*EventNotification, *Error) {
	const f = "EventNotification"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	ts, e := parseTime(f+".EventDateTime", w.EventDateTime)
	if e != nil {
		return nil, e
	}
	if w.EventToNotify == "" {
		return nil, formatError(f+".EventToNotify", "missing")
	}
	return &EventNotification{TimeStamp: ts, EventToNotify: w.EventToNotify, EventDetails: w.EventDetails, MaintenanceRequired: w.MaintenanceRequiredFlag}, nil
}

// header5ToWire builds the Header of a message sent by initiator to
// recipient.
func header5ToWire(fn, pv, exchangeID, initiator, recipient string, now time.Time) *wire5Header {
	if pv == "" {
		pv = protocolVersion5
	}
	w := &wire5Header{MessageFunction: fn, ProtocolVersion: pv, ExchangeIdentification: exchangeID, CreationDateTime: formatTime(now)}
	if initiator != "" {
		w.InitiatingParty = &wire5Party{Identification: initiator}
	}
	if recipient != "" {
		w.RecipientParty = &wire5Party{Identification: recipient}
	}
	return w
}

// request5ToWire encodes a request (the POS side, and the round-trip tests).
func request5ToWire(r *Request, pv string, now time.Time) (string, *wire5Message, error) {
	h := r.Header
	m := &wire5Message{}
	for _, c := range categories {
		c, ok := c.(category5)
		if !ok {
			continue
		}
		root, err := c.request5ToWire(r, m)
		if err != nil {
			return "", nil, err
		}
		if root != "" {
			m.Header = header5ToWire(requestRoots5[root], pv, h.ServiceID, h.SaleID, h.POIID, now)
			return root, m, nil
		}
	}
	return "", nil, fmt.Errorf("encode request: no Nexo v5 message for category %q", h.Category)
}

// ---- responses

func status5ToWire(s ResponseStatus) *wire5Response {
	w := &wire5Response{ResponseReason: string(s.ErrorCondition), AdditionalResponseInformation: s.AdditionalResponse}
	switch s.Result {
	case Success:
		w.Response = resp5Success
	case Failure:
		w.Response = resp5Failure
	case Partial:
		w.Response = resp5Warning
	default:
		w.Response = string(s.Result)
	}
	return w
}

func status5FromWire(field string, w *wire5Response) (ResponseStatus, *Error) {
	if w == nil {
		return ResponseStatus{}, formatError(field, "missing")
	}
	s := ResponseStatus{ErrorCondition: ErrorCondition(w.ResponseReason), AdditionalResponse: w.AdditionalResponseInformation}
	switch w.Response {
	case resp5Success:
		s.Result = Success
	case resp5Failure:
		s.Result = Failure
	case resp5Warning:
		s.Result = Partial
	case "":
		return ResponseStatus{}, formatError(field+".Response", "missing")
	default:
		return ResponseStatus{}, formatError(field+".Response", "invalid value %q", truncate(w.Response, 8))
	}
	return s, nil
}

func paymentResponse5ToWire(p *PaymentResponse) (*wire5PaymentResponse, error) {
	if p == nil {
		return nil, nil
	}
	w := &wire5PaymentResponse{
		SaleTransactionIdentification: txID5ToWire(p.SaleTransactionID),
		POITransactionIdentification:  txID5ToWire(p.POITransactionID),
	}
	if r := p.Result; r != nil {
		pr := &wire5RetailerPaymentResult{
			TransactionType: paymentType5ToWire(r.Type), PaymentBrand: r.Brand,
			PaymentInstrumentType: r.InstrumentType, AcquirerTransactionReference: r.ProviderReference,
		}
		if r.AuthorizedAmount.Currency != "" {
			amt, err := formatAmount(r.AuthorizedAmount.Minor, r.AuthorizedAmount.Currency)
			if err != nil {
				return nil, fmt.Errorf("encode authorised amount: %w", err)
			}
			pr.TransactionDetails = &wire5TransactionDetails{Currency: r.AuthorizedAmount.Currency, TotalAmount: wireDecimal(amt)}
		}
		if r.AcquirerID != "" || r.ApprovalCode != "" {
			pr.AuthorisationResult = &wire5AuthorisationResult{AuthorisationCode: r.ApprovalCode}
			if r.AcquirerID != "" {
				pr.AuthorisationResult.AuthorisationEntity = &wire5Party{Identification: r.AcquirerID}
			}
		}
		w.RetailerPaymentResult = pr
	}
	return w, nil
}

func paymentResponse5FromWire(f string, w *wire5PaymentResponse) (*PaymentResponse, *Error) {
	if w == nil {
		return nil, nil
	}
	p := &PaymentResponse{}
	var e *Error
	if w.SaleTransactionIdentification != nil {
		if p.SaleTransactionID, e = txID5FromWire(f+".SaleTransactionIdentification", w.SaleTransactionIdentification, false); e != nil {
			return nil, e
		}
	}
	if w.POITransactionIdentification != nil {
		if p.POITransactionID, e = txID5FromWire(f+".POITransactionIdentification", w.POITransactionIdentification, false); e != nil {
			return nil, e
		}
	}
	if r := w.RetailerPaymentResult; r != nil {
		rf := f + ".RetailerPaymentResult"
		typ, e := paymentType5FromWire(rf+".TransactionType", r.TransactionType)
		if e != nil {
			return nil, e
		}
		pr := &PaymentResult{
			POITransactionID: p.POITransactionID, Type: typ, Brand: r.PaymentBrand,
			InstrumentType: r.PaymentInstrumentType, ProviderReference: r.AcquirerTransactionReference,
		}
		if td := r.TransactionDetails; td != nil {
			minor, e := parseAmount(rf+".TransactionDetails.TotalAmount", string(td.TotalAmount), td.Currency)
			if e != nil {
				return nil, e
			}
			pr.AuthorizedAmount = Amount{Minor: minor, Currency: td.Currency}
		}
		if ar := r.AuthorisationResult; ar != nil {
			pr.ApprovalCode = ar.AuthorisationCode
			if ar.AuthorisationEntity != nil {
				pr.AcquirerID = ar.AuthorisationEntity.Identification
			}
		}
		p.Result = pr
	}
	return p, nil
}

func reversalResponse5ToWire(r *ReversalResponse) *wire5ReversalResponse {
	if r == nil {
		return nil
	}
	return &wire5ReversalResponse{
		POITransactionIdentification:         txID5ToWire(r.POITransactionID),
		OriginalPOITransactionIdentification: txID5ToWire(r.OriginalPOITransactionID),
	}
}

func reversalResponse5FromWire(f string, w *wire5ReversalResponse) (*ReversalResponse, *Error) {
	if w == nil {
		return nil, nil
	}
	r := &ReversalResponse{}
	var e *Error
	if w.POITransactionIdentification != nil {
		if r.POITransactionID, e = txID5FromWire(f+".POITransactionIdentification", w.POITransactionIdentification, false); e != nil {
			return nil, e
		}
	}
	if w.OriginalPOITransactionIdentification != nil {
		if r.OriginalPOITransactionID, e = txID5FromWire(f+".OriginalPOITransactionIdentification", w.OriginalPOITransactionIdentification, false); e != nil {
			return nil, e
		}
	}
	return r, nil
}

// response5ToWire encodes a response; pv is the protocol version to answer
// with (the request's).
func response5ToWire(r *Response, pv string, now time.Time) (string, *wire5Message, error) {
	h := r.Header
	c, ok := categoryOf(h.Category).(category5)
	if !ok {
		return "", nil, errNoResponse5(h.Category)
	}
	m := &wire5Message{}
	root, err := c.response5ToWire(r, m)
	if err != nil {
		return "", nil, err
	}
	fn := map[string]string{root5ServiceResponse: fnServiceResponse, root5SessionResponse: fnSessionResponse, root5StatusResponse: fnStatusResponse}[root]
	m.Header = header5ToWire(fn, pv, h.ServiceID, h.POIID, h.SaleID, now)
	return root, m, nil
}

// errNoResponse5 refuses a response of a category that has none in v5.
func errNoResponse5(c MessageCategory) error {
	return fmt.Errorf("encode response: no Nexo v5 message for category %q", c)
}

// response5FromWire decodes a response (the POS side). A rejection comes
// back as an *Error.
func response5FromWire(root string, m *wire5Message) (*Response, error) {
	if root == root5Rejection {
		if m.Reject == nil {
			return nil, formatError("Reject", "missing")
		}
		return nil, (&reject5{reason: m.Reject.RejectReason, text: m.Reject.AdditionalInformation}).asError()
	}
	w := m.Header
	if w == nil {
		return nil, formatError("Header", "missing")
	}
	want := map[string]string{root5ServiceResponse: fnServiceResponse, root5SessionResponse: fnSessionResponse, root5StatusResponse: fnStatusResponse}[root]
	if want == "" {
		return nil, formatError(root, "not a response")
	}
	if w.MessageFunction != want {
		return nil, formatError("Header.MessageFunction", "%q does not match %s", truncate(w.MessageFunction, 8), root)
	}
	r := &Response{Header: Header{Class: ClassService, Type: TypeResponse, ServiceID: w.ExchangeIdentification}}
	if w.InitiatingParty != nil {
		r.Header.POIID = w.InitiatingParty.Identification
	}
	if w.RecipientParty != nil {
		r.Header.SaleID = w.RecipientParty.Identification
	}
	var e *Error
	switch root {
	case root5ServiceResponse:
		sr := m.ServiceResponse
		if sr == nil {
			return nil, formatError("ServiceResponse", "missing")
		}
		if r.Status, e = status5FromWire("ServiceResponse.Response", sr.Response); e != nil {
			return nil, e
		}
		switch {
		case sr.ServiceContent == svcPaymentResponse || (sr.ServiceContent == "" && sr.PaymentResponse != nil):
			r.Header.Category = CategoryPayment
			r.Payment, e = paymentResponse5FromWire("ServiceResponse.PaymentResponse", sr.PaymentResponse)
		case sr.ServiceContent == svcReversalResponse || (sr.ServiceContent == "" && sr.ReversalResponse != nil):
			r.Header.Category = CategoryReversal
			r.Reversal, e = reversalResponse5FromWire("ServiceResponse.ReversalResponse", sr.ReversalResponse)
		default:
			return nil, formatError("ServiceResponse.ServiceContent", "unsupported value %q", truncate(sr.ServiceContent, 8))
		}
	case root5SessionResponse:
		sr := m.SessionManagementResponse
		if sr == nil {
			return nil, formatError("SessionManagementResponse", "missing")
		}
		if r.Status, e = status5FromWire("SessionManagementResponse.Response", sr.Response); e != nil {
			return nil, e
		}
		switch {
		case sr.LoginResponse != nil:
			r.Header.Category = CategoryLogin
			l := sr.LoginResponse
			if *l != (wire5LoginResponse{}) {
				r.Login = &LoginResponse{POISerialNumber: l.POISerialNumber, GlobalStatus: l.GlobalStatus}
				if l.POIDateTime != "" {
					if r.Login.POIDateTime, e = parseTime("SessionManagementResponse.LoginResponse.POIDateTime", l.POIDateTime); e != nil {
						return nil, e
					}
				}
			}
		case sr.LogoutResponse != nil:
			r.Header.Category = CategoryLogout
		case sr.DiagnosisResponse != nil:
			r.Header.Category = CategoryDiagnosis
			d := sr.DiagnosisResponse
			if d.CommunicationOKFlag != nil || d.GlobalStatus != "" || d.OutboxDepth != nil || len(d.HostStatus) > 0 || len(d.LoggedSaleIdentification) > 0 {
				dr := &DiagnosisResponse{GlobalStatus: d.GlobalStatus, LoggedSaleIDs: d.LoggedSaleIdentification}
				dr.CommunicationOK = d.CommunicationOKFlag != nil && *d.CommunicationOKFlag
				if d.OutboxDepth != nil {
					dr.OutboxDepth = *d.OutboxDepth
				}
				for _, hs := range d.HostStatus {
					dr.Hosts = append(dr.Hosts, HostStatus{AcquirerID: hs.AcquirerIdentification, Reachable: hs.IsReachableFlag})
				}
				r.Diagnosis = dr
			}
		default:
			return nil, formatError("SessionManagementResponse", "no LoginResponse, LogoutResponse or DiagnosisResponse")
		}
	case root5StatusResponse:
		sr := m.StatusResponse
		if sr == nil {
			return nil, formatError("StatusResponse", "missing")
		}
		r.Header.Category = CategoryTransactionStatus
		if r.Status, e = status5FromWire("StatusResponse.Response", sr.Response); e != nil {
			return nil, e
		}
		if d := sr.MessageStatusResponseData; d != nil {
			r.TransactionStatus, e = statusData5FromWire(d)
		}
	}
	if e != nil {
		return nil, e
	}
	return r, nil
}

func statusData5FromWire(d *wire5StatusResponseData) (*TransactionStatusResponse, *Error) {
	const f = "StatusResponse.MessageStatusResponseData"
	t := &TransactionStatusResponse{}
	var e *Error
	if d.MessageReference != nil {
		if t.MessageReference, e = ref5FromWire(f+".MessageReference", d.MessageReference); e != nil {
			return nil, e
		}
	}
	if d.RepeatedPaymentResponse == nil && d.RepeatedReversalResponse == nil {
		if t.MessageReference == nil {
			return nil, nil
		}
		return t, nil
	}
	if t.MessageReference == nil {
		return nil, formatError(f+".MessageReference", "missing")
	}
	rep := &Response{Header: Header{
		Class: ClassService, Type: TypeResponse, Category: t.MessageReference.Category,
		ServiceID: t.MessageReference.ServiceID, SaleID: t.MessageReference.SaleID, POIID: t.MessageReference.POIID,
	}}
	if rep.Status, e = status5FromWire(f+".TransactionResponse", d.TransactionResponse); e != nil {
		return nil, e
	}
	switch {
	case d.RepeatedPaymentResponse != nil && d.RepeatedReversalResponse != nil:
		return nil, formatError(f, "both RepeatedPaymentResponse and RepeatedReversalResponse")
	case d.RepeatedPaymentResponse != nil:
		rep.Header.Category = CategoryPayment
		if rep.Payment, e = paymentResponse5FromWire(f+".RepeatedPaymentResponse", d.RepeatedPaymentResponse); e != nil {
			return nil, e
		}
	default:
		rep.Header.Category = CategoryReversal
		if rep.Reversal, e = reversalResponse5FromWire(f+".RepeatedReversalResponse", d.RepeatedReversalResponse); e != nil {
			return nil, e
		}
	}
	t.Repeated = rep
	return t, nil
}

// DecodeRequest decodes and validates a v5 request.
func (JSON5Codec) DecodeRequest(b []byte) (*Request, error) {
	root, m, e := decode5(b)
	if e != nil {
		return nil, e
	}
	h, rej := header5FromWire(root, m)
	if rej != nil {
		return nil, rej.asError()
	}
	if m.NexoBlob != "" || m.SecurityTrailer != nil {
		return nil, formatError("SecurityTrailer", "message is protected; no key to open it")
	}
	if rej := classify5(&h, root, m); rej != nil {
		return nil, rej.asError()
	}
	r, e := request5BodyFromWire(h, m)
	if e != nil {
		return nil, e
	}
	return r, nil
}

// EncodeRequest encodes a request as a v5 message.
func (c JSON5Codec) EncodeRequest(r *Request) ([]byte, error) {
	root, m, err := request5ToWire(r, protocolVersion5, c.now())
	if err != nil {
		return nil, err
	}
	return encode5(root, m)
}

// DecodeResponse decodes a v5 response; a casp.013 rejection is an *Error.
func (JSON5Codec) DecodeResponse(b []byte) (*Response, error) {
	root, m, e := decode5(b)
	if e != nil {
		return nil, e
	}
	if m.NexoBlob != "" || m.SecurityTrailer != nil {
		return nil, formatError("SecurityTrailer", "message is protected; no key to open it")
	}
	return response5FromWire(root, m)
}

// EncodeResponse encodes a response as a v5 message.
func (c JSON5Codec) EncodeResponse(r *Response) ([]byte, error) {
	root, m, err := response5ToWire(r, protocolVersion5, c.now())
	if err != nil {
		return nil, err
	}
	return encode5(root, m)
}
