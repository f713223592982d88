package nexo

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// This file maps the Nexo 3.x wire structs to the model and back, and is
// where requests are validated: every missing mandatory field or bad value
// becomes a MessageFormat *Error naming the field.

// timeLayout is ISO 8601 with milliseconds, as existing Nexo JSON APIs send.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(timeLayout)
}

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
	r := &Request{Header: h}
	var e *Error
	switch h.Category {
	case CategoryLogin:
		r.Login, e = loginFromWire(m.LoginRequest)
	case CategoryLogout:
		if m.LogoutRequest == nil {
			return nil, formatError("LogoutRequest", "missing")
		}
		r.Logout = &LogoutRequest{MaintenanceAllowed: m.LogoutRequest.MaintenanceAllowed}
	case CategoryPayment:
		r.Payment, e = paymentFromWire(m.PaymentRequest)
	case CategoryReversal:
		r.Reversal, e = reversalFromWire(m.ReversalRequest)
	case CategoryAbort:
		r.Abort, e = abortFromWire(m.AbortRequest)
	case CategoryTransactionStatus:
		r.TransactionStatus, e = transactionStatusFromWire(m.TransactionStatusRequest)
	case CategoryDiagnosis:
		if m.DiagnosisRequest == nil {
			return nil, formatError("DiagnosisRequest", "missing")
		}
		if e := checkList("DiagnosisRequest.AcquirerID", m.DiagnosisRequest.AcquirerID, maxRefLen); e != nil {
			return nil, e
		}
		r.Diagnosis = &DiagnosisRequest{HostDiagnosis: m.DiagnosisRequest.HostDiagnosisFlag, AcquirerIDs: m.DiagnosisRequest.AcquirerID}
	case CategoryDisplay:
		r.Display, e = displayFromWire(m.DisplayRequest)
	case CategoryEvent:
		r.Event, e = eventFromWire(m.EventNotification)
	case CategoryGetTotals:
		r.GetTotals, e = getTotalsFromWire(m.GetTotalsRequest)
	case CategoryReconciliation:
		r.Reconciliation, e = reconciliationFromWire(m.ReconciliationRequest)
	default:
		return nil, formatError("MessageHeader.MessageCategory", "unsupported category %q", clip(string(h.Category), 32))
	}
	if e != nil {
		return nil, e
	}
	return r, nil
}

func loginFromWire(w *wireLoginRequest) (*LoginRequest, *Error) {
	const f = "LoginRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	dt, e := parseTime(f+".DateTime", w.DateTime)
	if e != nil {
		return nil, e
	}
	if w.SaleSoftware == nil {
		return nil, formatError(f+".SaleSoftware", "missing")
	}
	ss := w.SaleSoftware
	for _, kv := range [][2]string{{"ManufacturerID", ss.ManufacturerID}, {"ApplicationName", ss.ApplicationName}, {"SoftwareVersion", ss.SoftwareVersion}} {
		if kv[1] == "" {
			return nil, formatError(f+".SaleSoftware."+kv[0], "missing")
		}
	}
	if w.OperatorLanguage == "" {
		return nil, formatError(f+".OperatorLanguage", "missing")
	}
	if e := checkLens(maxRefLen, f+".SaleSoftware.ManufacturerID", ss.ManufacturerID, f+".SaleSoftware.ApplicationName", ss.ApplicationName,
		f+".SaleSoftware.SoftwareVersion", ss.SoftwareVersion, f+".SaleSoftware.CertificationCode", ss.CertificationCode, f+".OperatorID", w.OperatorID); e != nil {
		return nil, e
	}
	if e := checkLens(maxLangLen, f+".OperatorLanguage", w.OperatorLanguage, f+".ShiftNumber", w.ShiftNumber); e != nil {
		return nil, e
	}
	return &LoginRequest{
		DateTime: dt,
		SaleSoftware: SaleSoftware{
			ManufacturerID: ss.ManufacturerID, ApplicationName: ss.ApplicationName,
			SoftwareVersion: ss.SoftwareVersion, CertificationCode: ss.CertificationCode,
		},
		OperatorLanguage: w.OperatorLanguage,
		OperatorID:       w.OperatorID,
		ShiftNumber:      w.ShiftNumber,
		TotalsGroupID:    saleTerminalTotalsGroup(w.SaleTerminalData),
	}, nil
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

func paymentFromWire(w *wirePaymentRequest) (*PaymentRequest, *Error) {
	const f = "PaymentRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	if w.SaleData == nil {
		return nil, formatError(f+".SaleData", "missing")
	}
	stid, e := transactionIDFromWire(f+".SaleData.SaleTransactionID", w.SaleData.SaleTransactionID, true)
	if e != nil {
		return nil, e
	}
	if w.PaymentTransaction == nil {
		return nil, formatError(f+".PaymentTransaction", "missing")
	}
	ar := w.PaymentTransaction.AmountsReq
	if ar == nil {
		return nil, formatError(f+".PaymentTransaction.AmountsReq", "missing")
	}
	if ar.Currency == "" {
		return nil, formatError(f+".PaymentTransaction.AmountsReq.Currency", "missing")
	}
	if _, ok := CurrencyExponent(ar.Currency); !ok {
		return nil, formatError(f+".PaymentTransaction.AmountsReq.Currency", "unknown currency %q", clip(ar.Currency, 8))
	}
	if e := checkLen(f+".PaymentTransaction.AmountsReq.RequestedAmount", string(ar.RequestedAmount), 32); e != nil {
		return nil, e
	}
	if e := checkLens(maxRefLen, f+".SaleData.SaleReferenceID", w.SaleData.SaleReferenceID, f+".SaleData.OperatorID", w.SaleData.OperatorID); e != nil {
		return nil, e
	}
	minor, e := parseAmount(f+".PaymentTransaction.AmountsReq.RequestedAmount", string(ar.RequestedAmount), ar.Currency)
	if e != nil {
		return nil, e
	}
	if minor == 0 {
		return nil, formatError(f+".PaymentTransaction.AmountsReq.RequestedAmount", "must be greater than zero")
	}
	p := &PaymentRequest{
		SaleTransactionID: stid,
		SaleReferenceID:   w.SaleData.SaleReferenceID,
		OperatorID:        w.SaleData.OperatorID,
		ShiftNumber:       w.SaleData.ShiftNumber,
		TotalsGroupID:     saleTerminalTotalsGroup(w.SaleData.SaleTerminalData),
		Type:              PaymentNormal,
		Amount:            Amount{Minor: minor, Currency: ar.Currency},
	}
	if tc := w.PaymentTransaction.TransactionConditions; tc != nil {
		for _, b := range tc.AllowedPaymentBrand {
			if b == "" {
				return nil, formatError(f+".PaymentTransaction.TransactionConditions.AllowedPaymentBrand", "empty brand")
			}
		}
		if e := checkList(f+".PaymentTransaction.TransactionConditions.AllowedPaymentBrand", tc.AllowedPaymentBrand, maxRefLen); e != nil {
			return nil, e
		}
		p.AllowedBrands = tc.AllowedPaymentBrand
	}
	if pd := w.PaymentData; pd != nil {
		switch PaymentType(pd.PaymentType) {
		case "":
		case PaymentNormal, PaymentRefund:
			p.Type = PaymentType(pd.PaymentType)
		default:
			return nil, formatError(f+".PaymentData.PaymentType", "unsupported value %q (Normal or Refund)", clip(pd.PaymentType, 32))
		}
		if pid := pd.PaymentInstrumentData; pid != nil {
			if e := checkLen(f+".PaymentData.PaymentInstrumentData.PaymentInstrumentType", pid.PaymentInstrumentType, maxRefLen); e != nil {
				return nil, e
			}
			p.InstrumentType = pid.PaymentInstrumentType
		}
	}
	if e := refundFromWire(f, w.PaymentData, p); e != nil { // nexo/refund.go
		return nil, e
	}
	return p, nil
}

func paymentRequestToWire(p *PaymentRequest) (*wirePaymentRequest, error) {
	amt, err := formatAmount(p.Amount.Minor, p.Amount.Currency)
	if err != nil {
		return nil, err
	}
	w := &wirePaymentRequest{
		SaleData: &wireSaleData{
			OperatorID:        p.OperatorID,
			ShiftNumber:       p.ShiftNumber,
			SaleReferenceID:   p.SaleReferenceID,
			SaleTransactionID: transactionIDToWire(p.SaleTransactionID),
			SaleTerminalData:  saleTerminalDataToWire(p.TotalsGroupID),
		},
		PaymentTransaction: &wirePaymentTransaction{
			AmountsReq: &wireAmountsReq{Currency: p.Amount.Currency, RequestedAmount: wireDecimal(amt)},
		},
	}
	if len(p.AllowedBrands) > 0 {
		w.PaymentTransaction.TransactionConditions = &wireTransactionConditions{AllowedPaymentBrand: p.AllowedBrands}
	}
	if p.Type != "" || p.InstrumentType != "" {
		w.PaymentData = &wirePaymentData{PaymentType: string(p.Type)}
		if p.InstrumentType != "" {
			w.PaymentData.PaymentInstrumentData = &wirePaymentInstrumentData{PaymentInstrumentType: p.InstrumentType}
		}
	}
	refundToWire(p, w) // nexo/refund.go
	return w, nil
}

func reversalFromWire(w *wireReversalRequest) (*ReversalRequest, *Error) {
	const f = "ReversalRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	if w.OriginalPOITransaction == nil {
		return nil, formatError(f+".OriginalPOITransaction", "missing")
	}
	id, e := transactionIDFromWire(f+".OriginalPOITransaction.POITransactionID", w.OriginalPOITransaction.POITransactionID, false)
	if e != nil {
		return nil, e
	}
	switch w.ReversalReason {
	case "CustCancel", "MerchantCancel", "Malfunction", "Unable2Compl":
	case "":
		return nil, formatError(f+".ReversalReason", "missing")
	default:
		return nil, formatError(f+".ReversalReason", "invalid value %q", clip(w.ReversalReason, 32))
	}
	if e := checkLens(maxRefLen, f+".OriginalPOITransaction.SaleID", w.OriginalPOITransaction.SaleID, f+".OriginalPOITransaction.POIID", w.OriginalPOITransaction.POIID); e != nil {
		return nil, e
	}
	rr := &ReversalRequest{OriginalPOITransactionID: id, OriginalSaleID: w.OriginalPOITransaction.SaleID, Reason: w.ReversalReason}
	if rr.ReversedAmount, e = reversedAmountFromWire(f+".ReversedAmount", w.ReversedAmount); e != nil { // nexo/refund.go
		return nil, e
	}
	return rr, nil
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

func transactionStatusFromWire(w *wireTransactionStatusRequest) (*TransactionStatusRequest, *Error) {
	const f = "TransactionStatusRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	r := &TransactionStatusRequest{}
	var e *Error
	if r.DocumentQualifiers, e = documentQualifiersFromWire(w.DocumentQualifier); e != nil {
		return nil, e
	}
	r.ReceiptReprint = w.ReceiptReprintFlag
	if w.MessageReference != nil {
		ref, e := refFromWire(f+".MessageReference", w.MessageReference)
		if e != nil {
			return nil, e
		}
		r.MessageReference = ref
	}
	return r, nil
}

func displayFromWire(w *wireDisplayRequest) (*DisplayRequest, *Error) {
	const f = "DisplayRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	if len(w.DisplayOutput) == 0 {
		return nil, formatError(f+".DisplayOutput", "missing")
	}
	if len(w.DisplayOutput) > maxListLen {
		return nil, formatError(f+".DisplayOutput", "more than %d entries (%d)", maxListLen, len(w.DisplayOutput))
	}
	d := &DisplayRequest{}
	for i, o := range w.DisplayOutput {
		of := fmt.Sprintf("%s.DisplayOutput[%d]", f, i)
		if o.Device == "" {
			return nil, formatError(of+".Device", "missing")
		}
		if o.InfoQualify == "" {
			return nil, formatError(of+".InfoQualify", "missing")
		}
		if o.OutputContent == nil {
			return nil, formatError(of+".OutputContent", "missing")
		}
		qrValue, e := barcodeFromWire(of+".OutputContent", o.OutputContent)
		if e != nil {
			return nil, e
		}
		if e := checkLens(maxRefLen, of+".Device", o.Device, of+".InfoQualify", o.InfoQualify); e != nil {
			return nil, e
		}
		if len(o.OutputContent.OutputText) > maxListLen {
			return nil, formatError(of+".OutputContent.OutputText", "more than %d entries (%d)", maxListLen, len(o.OutputContent.OutputText))
		}
		for j, t := range o.OutputContent.OutputText {
			if e := checkLen(fmt.Sprintf("%s.OutputContent.OutputText[%d]", of, j), t.Text, maxDisplayText); e != nil {
				return nil, e
			}
		}
		if o.MinimumDisplayTime < 0 {
			return nil, formatError(of+".MinimumDisplayTime", "negative")
		}
		out := DisplayOutput{
			Device: o.Device, InfoQualify: o.InfoQualify, ResponseRequired: o.ResponseRequiredFlag,
			MinimumDisplay: time.Duration(o.MinimumDisplayTime) * time.Second, QRCode: qrValue,
		}
		for _, t := range o.OutputContent.OutputText {
			out.Text = append(out.Text, t.Text)
		}
		if len(out.Text) == 0 && out.QRCode == "" {
			return nil, formatError(of+".OutputContent.OutputText", "missing")
		}
		d.Outputs = append(d.Outputs, out)
	}
	return d, nil
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

func requestToWire(r *Request) (*wireMessage, error) {
	m := &wireMessage{MessageHeader: headerToWire(r.Header)}
	switch {
	case r.Login != nil:
		l := r.Login
		m.LoginRequest = &wireLoginRequest{
			DateTime: formatTime(l.DateTime), OperatorLanguage: l.OperatorLanguage,
			OperatorID: l.OperatorID, ShiftNumber: l.ShiftNumber,
			SaleTerminalData: saleTerminalDataToWire(l.TotalsGroupID),
			SaleSoftware: &wireSaleSoftware{
				ManufacturerID: l.SaleSoftware.ManufacturerID, ApplicationName: l.SaleSoftware.ApplicationName,
				SoftwareVersion: l.SaleSoftware.SoftwareVersion, CertificationCode: l.SaleSoftware.CertificationCode,
			},
		}
	case r.Logout != nil:
		m.LogoutRequest = &wireLogoutRequest{MaintenanceAllowed: r.Logout.MaintenanceAllowed}
	case r.Payment != nil:
		w, err := paymentRequestToWire(r.Payment)
		if err != nil {
			return nil, fmt.Errorf("encode PaymentRequest: %w", err)
		}
		m.PaymentRequest = w
	case r.Reversal != nil:
		m.ReversalRequest = &wireReversalRequest{
			ReversalReason: r.Reversal.Reason,
			ReversedAmount: wireDecimal(r.Reversal.ReversedAmount), // nexo/refund.go
			OriginalPOITransaction: &wireOriginalPOITransaction{
				SaleID:           r.Reversal.OriginalSaleID,
				POITransactionID: transactionIDToWire(r.Reversal.OriginalPOITransactionID),
			},
		}
	case r.Abort != nil:
		m.AbortRequest = &wireAbortRequest{AbortReason: r.Abort.AbortReason, MessageReference: refToWire(&r.Abort.MessageReference)}
	case r.TransactionStatus != nil:
		m.TransactionStatusRequest = &wireTransactionStatusRequest{MessageReference: refToWire(r.TransactionStatus.MessageReference), DocumentQualifier: r.TransactionStatus.DocumentQualifiers, ReceiptReprintFlag: r.TransactionStatus.ReceiptReprint}
	case r.Diagnosis != nil:
		m.DiagnosisRequest = &wireDiagnosisRequest{HostDiagnosisFlag: r.Diagnosis.HostDiagnosis, AcquirerID: r.Diagnosis.AcquirerIDs}
	case r.Display != nil:
		w := &wireDisplayRequest{}
		for _, o := range r.Display.Outputs {
			wo := wireDisplayOutput{
				ResponseRequiredFlag: o.ResponseRequired, MinimumDisplayTime: int(o.MinimumDisplay / time.Second),
				Device: o.Device, InfoQualify: o.InfoQualify, OutputContent: &wireOutputContent{OutputFormat: "Text"},
			}
			if o.QRCode != "" {
				wo.OutputContent.OutputFormat = OutputBarCode
				wo.OutputContent.OutputBarcode = &wireOutputBarcode{BarcodeType: BarcodeQRCode, BarcodeValue: o.QRCode}
			}
			for _, t := range o.Text {
				wo.OutputContent.OutputText = append(wo.OutputContent.OutputText, wireOutputText{Text: t})
			}
			w.DisplayOutput = append(w.DisplayOutput, wo)
		}
		m.DisplayRequest = w
	case r.GetTotals != nil:
		m.GetTotalsRequest = getTotalsToWire(r.GetTotals)
	case r.Reconciliation != nil:
		m.ReconciliationRequest = reconciliationToWire(r.Reconciliation)
	case r.Event != nil:
		m.EventNotification = &wireEventNotification{
			TimeStamp: formatTime(r.Event.TimeStamp), EventToNotify: r.Event.EventToNotify,
			EventDetails: r.Event.EventDetails, MaintenanceRequiredFlag: r.Event.MaintenanceRequired,
		}
	default:
		return nil, fmt.Errorf("encode request: no body for category %q", r.Header.Category)
	}
	return m, nil
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

func paymentResponseToWire(s ResponseStatus, p *PaymentResponse) (*wirePaymentResponse, error) {
	w := &wirePaymentResponse{Response: statusToWire(s)}
	if p == nil {
		return w, nil
	}
	if id := transactionIDToWire(p.SaleTransactionID); id != nil {
		w.SaleData = &wireSaleData{SaleTransactionID: id}
	}
	if id := transactionIDToWire(p.POITransactionID); id != nil || p.POIReconciliationID != "" {
		w.POIData = &wirePOIData{POITransactionID: id, POIReconciliationID: p.POIReconciliationID}
	}
	if r := p.Result; r != nil {
		pr := &wirePaymentResult{PaymentType: string(r.Type)}
		if r.Brand != "" || r.InstrumentType != "" {
			pr.PaymentInstrumentData = &wirePaymentInstrumentData{PaymentInstrumentType: r.InstrumentType}
			if r.Brand != "" {
				pr.PaymentInstrumentData.CardData = &wireCardData{PaymentBrand: r.Brand}
			}
		}
		if r.AuthorizedAmount.Currency != "" {
			amt, err := formatAmount(r.AuthorizedAmount.Minor, r.AuthorizedAmount.Currency)
			if err != nil {
				return nil, fmt.Errorf("encode AuthorizedAmount: %w", err)
			}
			pr.AmountsResp = &wireAmountsResp{Currency: r.AuthorizedAmount.Currency, AuthorizedAmount: wireDecimal(amt)}
		}
		if r.AcquirerID != "" || r.ProviderReference != "" || r.ApprovalCode != "" {
			pr.PaymentAcquirerData = &wirePaymentAcquirerData{
				AcquirerID: r.AcquirerID, ApprovalCode: r.ApprovalCode,
				AcquirerTransactionID: transactionIDToWire(TransactionID{ID: r.ProviderReference}),
			}
		}
		w.PaymentResult = pr
	}
	w.PaymentReceipt = receiptsToWire(p.Receipts)
	return w, nil
}

func paymentResponseFromWire(w *wirePaymentResponse) (*PaymentResponse, *Error) {
	const f = "PaymentResponse"
	p := &PaymentResponse{}
	var e *Error
	if w.SaleData != nil && w.SaleData.SaleTransactionID != nil {
		if p.SaleTransactionID, e = transactionIDFromWire(f+".SaleData.SaleTransactionID", w.SaleData.SaleTransactionID, false); e != nil {
			return nil, e
		}
	}
	if w.POIData != nil && w.POIData.POITransactionID != nil {
		if p.POITransactionID, e = transactionIDFromWire(f+".POIData.POITransactionID", w.POIData.POITransactionID, false); e != nil {
			return nil, e
		}
	}
	if w.POIData != nil {
		p.POIReconciliationID = w.POIData.POIReconciliationID
	}
	if r := w.PaymentResult; r != nil {
		pr := &PaymentResult{Type: PaymentType(r.PaymentType), POITransactionID: p.POITransactionID}
		if pid := r.PaymentInstrumentData; pid != nil {
			pr.InstrumentType = pid.PaymentInstrumentType
			if pid.CardData != nil {
				pr.Brand = pid.CardData.PaymentBrand
			}
		}
		if a := r.AmountsResp; a != nil {
			minor, e := parseAmount(f+".PaymentResult.AmountsResp.AuthorizedAmount", string(a.AuthorizedAmount), a.Currency)
			if e != nil {
				return nil, e
			}
			pr.AuthorizedAmount = Amount{Minor: minor, Currency: a.Currency}
		}
		if ad := r.PaymentAcquirerData; ad != nil {
			pr.AcquirerID, pr.ApprovalCode = ad.AcquirerID, ad.ApprovalCode
			if ad.AcquirerTransactionID != nil {
				pr.ProviderReference = ad.AcquirerTransactionID.TransactionID
			}
		}
		p.Result = pr
	}
	p.Receipts = receiptsFromWire(w.PaymentReceipt)
	return p, nil
}

func reversalResponseToWire(s ResponseStatus, r *ReversalResponse) *wireReversalResponse {
	w := &wireReversalResponse{Response: statusToWire(s)}
	if r == nil {
		return w
	}
	if id := transactionIDToWire(r.POITransactionID); id != nil {
		w.POIData = &wirePOIData{POITransactionID: id}
	}
	if id := transactionIDToWire(r.OriginalPOITransactionID); id != nil {
		w.OriginalPOITransaction = &wireOriginalPOITransaction{POITransactionID: id}
	}
	w.ReversedAmount, w.PaymentReceipt = wireDecimal(r.ReversedAmount), receiptsToWire(r.Receipts) // nexo/refund.go
	return w
}

func reversalResponseFromWire(w *wireReversalResponse) (*ReversalResponse, *Error) {
	r := &ReversalResponse{}
	var e *Error
	if w.POIData != nil && w.POIData.POITransactionID != nil {
		if r.POITransactionID, e = transactionIDFromWire("ReversalResponse.POIData.POITransactionID", w.POIData.POITransactionID, false); e != nil {
			return nil, e
		}
	}
	if o := w.OriginalPOITransaction; o != nil && o.POITransactionID != nil {
		if r.OriginalPOITransactionID, e = transactionIDFromWire("ReversalResponse.OriginalPOITransaction.POITransactionID", o.POITransactionID, false); e != nil {
			return nil, e
		}
	}
	if r.ReversedAmount, e = reversedAmountFromWire("ReversalResponse.ReversedAmount", w.ReversedAmount); e != nil { // nexo/refund.go
		return nil, e
	}
	r.Receipts = receiptsFromWire(w.PaymentReceipt)
	return r, nil
}

// outboxDepthKey carries DiagnosisResponse.OutboxDepth inside
// AdditionalResponse, in the key=value form existing Nexo JSON APIs use there.
const outboxDepthKey = "outboxDepth="

func responseToWire(r *Response) (*wireMessage, error) {
	m := &wireMessage{MessageHeader: headerToWire(r.Header)}
	s := r.Status
	switch r.Header.Category {
	case CategoryLogin:
		w := &wireLoginResponse{Response: statusToWire(s)}
		if l := r.Login; l != nil {
			w.POISystemData = &wirePOISystemData{DateTime: formatTime(l.POIDateTime), POISerialNumber: l.POISerialNumber}
			if l.GlobalStatus != "" {
				w.POISystemData.POIStatus = &wirePOIStatus{GlobalStatus: l.GlobalStatus}
			}
		}
		m.LoginResponse = w
	case CategoryLogout:
		m.LogoutResponse = &wireLogoutResponse{Response: statusToWire(s)}
	case CategoryAbort:
		m.AbortResponse = &wireLogoutResponse{Response: statusToWire(s)}
	case CategoryPayment:
		w, err := paymentResponseToWire(s, r.Payment)
		if err != nil {
			return nil, err
		}
		m.PaymentResponse = w
	case CategoryReversal:
		m.ReversalResponse = reversalResponseToWire(s, r.Reversal)
	case CategoryTransactionStatus:
		w := &wireTransactionStatusResponse{Response: statusToWire(s)}
		if t := r.TransactionStatus; t != nil {
			w.MessageReference = refToWire(t.MessageReference)
			if rep := t.Repeated; rep != nil {
				body := &wireRepeatedBody{}
				switch {
				case rep.Payment != nil || (rep.Reversal == nil && rep.Header.Category == CategoryPayment):
					pw, err := paymentResponseToWire(rep.Status, rep.Payment)
					if err != nil {
						return nil, err
					}
					body.PaymentResponse = pw
				case rep.Reversal != nil || rep.Header.Category == CategoryReversal:
					body.ReversalResponse = reversalResponseToWire(rep.Status, rep.Reversal)
				default:
					return nil, fmt.Errorf("encode RepeatedMessageResponse: unsupported category %q", rep.Header.Category)
				}
				w.RepeatedMessageResponse = &wireRepeatedMessageResponse{MessageHeader: headerToWire(rep.Header), RepeatedResponseMessageBody: body}
			}
		}
		m.TransactionStatusResponse = w
	case CategoryDiagnosis:
		w := &wireDiagnosisResponse{Response: statusToWire(s)}
		if d := r.Diagnosis; d != nil {
			ok := d.CommunicationOK
			w.LoggedSaleID = d.LoggedSaleIDs
			w.POIStatus = &wirePOIStatus{GlobalStatus: d.GlobalStatus, CommunicationOKFlag: &ok}
			for _, h := range d.Hosts {
				w.HostStatus = append(w.HostStatus, wireHostStatus{AcquirerID: h.AcquirerID, IsReachableFlag: h.Reachable})
			}
			kv := outboxDepthKey + strconv.Itoa(d.OutboxDepth)
			if w.Response.AdditionalResponse == "" {
				w.Response.AdditionalResponse = kv
			} else {
				w.Response.AdditionalResponse += "&" + kv
			}
		}
		m.DiagnosisResponse = w
	case CategoryDisplay:
		w := &wireDisplayResponse{}
		if d := r.Display; d != nil {
			for _, o := range d.Outputs {
				w.OutputResult = append(w.OutputResult, wireOutputResult{Device: o.Device, InfoQualify: o.InfoQualify, Response: statusToWire(o.Status)})
			}
		}
		if len(w.OutputResult) == 0 {
			// DisplayResponse has no Response of its own; a failure with no
			// output still needs somewhere to say why.
			w.OutputResult = []wireOutputResult{{Response: statusToWire(s)}}
		}
		m.DisplayResponse = w
	case CategoryGetTotals, CategoryReconciliation:
		if err := totalsResponseToWire(m, r); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("encode response: unsupported category %q", r.Header.Category)
	}
	return m, nil
}

func responseFromWire(m *wireMessage) (*Response, error) {
	if m.MessageHeader == nil {
		return nil, formatError("MessageHeader", "missing")
	}
	r := &Response{Header: headerFromWireLenient(m.MessageHeader)}
	var e *Error
	switch r.Header.Category {
	case CategoryLogin:
		if m.LoginResponse == nil {
			return nil, formatError("LoginResponse", "missing")
		}
		if r.Status, e = statusFromWire("LoginResponse", m.LoginResponse.Response); e != nil {
			return nil, e
		}
		if sd := m.LoginResponse.POISystemData; sd != nil {
			l := &LoginResponse{POISerialNumber: sd.POISerialNumber}
			if sd.DateTime != "" {
				if l.POIDateTime, e = parseTime("LoginResponse.POISystemData.DateTime", sd.DateTime); e != nil {
					return nil, e
				}
			}
			if sd.POIStatus != nil {
				l.GlobalStatus = sd.POIStatus.GlobalStatus
			}
			r.Login = l
		}
	case CategoryLogout, CategoryAbort:
		w := m.LogoutResponse
		if r.Header.Category == CategoryAbort {
			w = m.AbortResponse
		}
		if w == nil {
			return nil, formatError(string(r.Header.Category)+"Response", "missing")
		}
		if r.Status, e = statusFromWire(string(r.Header.Category)+"Response", w.Response); e != nil {
			return nil, e
		}
	case CategoryPayment:
		if m.PaymentResponse == nil {
			return nil, formatError("PaymentResponse", "missing")
		}
		if r.Status, e = statusFromWire("PaymentResponse", m.PaymentResponse.Response); e != nil {
			return nil, e
		}
		if r.Payment, e = paymentResponseFromWire(m.PaymentResponse); e != nil {
			return nil, e
		}
	case CategoryReversal:
		if m.ReversalResponse == nil {
			return nil, formatError("ReversalResponse", "missing")
		}
		if r.Status, e = statusFromWire("ReversalResponse", m.ReversalResponse.Response); e != nil {
			return nil, e
		}
		if r.Reversal, e = reversalResponseFromWire(m.ReversalResponse); e != nil {
			return nil, e
		}
	case CategoryTransactionStatus:
		w := m.TransactionStatusResponse
		if w == nil {
			return nil, formatError("TransactionStatusResponse", "missing")
		}
		if r.Status, e = statusFromWire("TransactionStatusResponse", w.Response); e != nil {
			return nil, e
		}
		t := &TransactionStatusResponse{}
		if w.MessageReference != nil {
			t.MessageReference, _ = refFromWire("", w.MessageReference)
			if t.MessageReference == nil {
				t.MessageReference = &MessageReference{Category: MessageCategory(w.MessageReference.MessageCategory), SaleID: w.MessageReference.SaleID, POIID: w.MessageReference.POIID}
			}
		}
		if rm := w.RepeatedMessageResponse; rm != nil {
			const f = "TransactionStatusResponse.RepeatedMessageResponse"
			if rm.MessageHeader == nil {
				return nil, formatError(f+".MessageHeader", "missing")
			}
			rep := &Response{Header: headerFromWireLenient(rm.MessageHeader)}
			body := rm.RepeatedResponseMessageBody
			switch {
			case body != nil && body.PaymentResponse != nil:
				if rep.Status, e = statusFromWire(f+".PaymentResponse", body.PaymentResponse.Response); e != nil {
					return nil, e
				}
				if rep.Payment, e = paymentResponseFromWire(body.PaymentResponse); e != nil {
					return nil, e
				}
			case body != nil && body.ReversalResponse != nil:
				if rep.Status, e = statusFromWire(f+".ReversalResponse", body.ReversalResponse.Response); e != nil {
					return nil, e
				}
				if rep.Reversal, e = reversalResponseFromWire(body.ReversalResponse); e != nil {
					return nil, e
				}
			default:
				return nil, formatError(f+".RepeatedResponseMessageBody", "missing")
			}
			t.Repeated = rep
		}
		if t.MessageReference != nil || t.Repeated != nil {
			r.TransactionStatus = t
		}
	case CategoryDiagnosis:
		w := m.DiagnosisResponse
		if w == nil {
			return nil, formatError("DiagnosisResponse", "missing")
		}
		if r.Status, e = statusFromWire("DiagnosisResponse", w.Response); e != nil {
			return nil, e
		}
		d := &DiagnosisResponse{LoggedSaleIDs: w.LoggedSaleID}
		if w.POIStatus != nil {
			d.GlobalStatus = w.POIStatus.GlobalStatus
			d.CommunicationOK = w.POIStatus.CommunicationOKFlag != nil && *w.POIStatus.CommunicationOKFlag
		}
		for _, h := range w.HostStatus {
			d.Hosts = append(d.Hosts, HostStatus{AcquirerID: h.AcquirerID, Reachable: h.IsReachableFlag})
		}
		ar := r.Status.AdditionalResponse
		if i := strings.LastIndex(ar, outboxDepthKey); i >= 0 && (i == 0 || ar[i-1] == '&') {
			if n, err := strconv.Atoi(ar[i+len(outboxDepthKey):]); err == nil {
				d.OutboxDepth = n
				r.Status.AdditionalResponse = strings.TrimSuffix(ar[:i], "&")
			}
		}
		r.Diagnosis = d
	case CategoryDisplay:
		w := m.DisplayResponse
		if w == nil {
			return nil, formatError("DisplayResponse", "missing")
		}
		if len(w.OutputResult) == 0 {
			return nil, formatError("DisplayResponse.OutputResult", "missing")
		}
		d := &DisplayResponse{}
		for i, o := range w.OutputResult {
			st, e := statusFromWire(fmt.Sprintf("DisplayResponse.OutputResult[%d]", i), o.Response)
			if e != nil {
				return nil, e
			}
			if i == 0 || st.Result == Failure {
				r.Status = st
			}
			if o.Device != "" {
				d.Outputs = append(d.Outputs, OutputResult{Device: o.Device, InfoQualify: o.InfoQualify, Status: st})
			}
		}
		if len(d.Outputs) > 0 {
			r.Display = d
		}
	case CategoryGetTotals, CategoryReconciliation:
		if e := totalsResponseFromWire(m, r); e != nil {
			return nil, e
		}
	default:
		return nil, formatError("MessageHeader.MessageCategory", "unsupported category %q", r.Header.Category)
	}
	return r, nil
}
