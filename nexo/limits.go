package nexo

import (
	"unicode/utf8"
)

// Field lengths of the Nexo Retailer 3.x data dictionary, in characters (not
// bytes: "é" is one character). A request whose field is longer is refused at
// decode time with MessageFormat naming the field, so nothing a POS sends
// reaches the journal, the logs or the metrics unbounded.
const (
	maxIDLen  = 10 // Max10Text: ServiceID, DeviceID
	maxRefLen = 35 // Max35Text: SaleID, POIID, SaleReferenceID, OperatorID, brands, software ids
	// TransactionID is Max35Text in Nexo, but POI transaction ids are UUIDs
	// (36) and a reversal's id adds a suffix: they are bounded, not to 35.
	maxTxnIDLen    = 64
	maxTextLen     = 256  // free text: AbortReason, EventDetails, ReversalReason…
	maxDisplayText = 2048 // one OutputText line (a QR payload fits)
	maxListLen     = 16   // AllowedPaymentBrand, AcquirerID, DisplayOutput, OutputText entries
	maxLangLen     = 8    // OperatorLanguage (ISO 639, "en" or "en-GB")
	maxShiftLen    = 2    // ShiftNumber (Max2NumericText)
)

// checkLen refuses a value longer than max characters, or not valid UTF-8.
func checkLen(field, v string, max int) *Error {
	if len(v) <= max && utf8.ValidString(v) {
		return nil // at most max bytes: at most max runes
	}
	if !utf8.ValidString(v) {
		return formatError(field, "not valid UTF-8")
	}
	if n := utf8.RuneCountInString(v); n > max {
		return formatError(field, "longer than %d characters (%d)", max, n)
	}
	return nil
}

// checkLens applies checkLen to field/value pairs, in order.
func checkLens(max int, fv ...string) *Error {
	for i := 0; i+1 < len(fv); i += 2 {
		if e := checkLen(fv[i], fv[i+1], max); e != nil {
			return e
		}
	}
	return nil
}

// clip bounds a value a peer sent before it is echoed in a refusal or logged:
// the message was refused, so its identifiers only need to be recognisable.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// clipHeader bounds every field of a header taken from an unvalidated message.
func clipHeader(h Header) Header {
	const n = 4 * maxRefLen
	h.ProtocolVersion = clip(h.ProtocolVersion, 16)
	h.Class = MessageClass(clip(string(h.Class), 32))
	h.Category = MessageCategory(clip(string(h.Category), 32))
	h.Type = MessageType(clip(string(h.Type), 32))
	h.ServiceID, h.DeviceID = clip(h.ServiceID, n), clip(h.DeviceID, n)
	h.SaleID, h.POIID = clip(h.SaleID, n), clip(h.POIID, n)
	return h
}

// maxDetailsLen bounds EventNotification.EventDetails (key=value&… text).
const maxDetailsLen = 1024

// checkList bounds a repeated field: at most maxListLen entries of at most
// max characters each.
func checkList(field string, vs []string, max int) *Error {
	if len(vs) > maxListLen {
		return formatError(field, "more than %d entries (%d)", maxListLen, len(vs))
	}
	for _, v := range vs {
		if e := checkLen(field, v, max); e != nil {
			return e
		}
	}
	return nil
}

// maxAdditionalResponse bounds Response.AdditionalResponse (Max1025Text):
// what the server writes there from lists it does not control (the
// differences an AcquirerSynchronisation finds) is cut to fit.
const maxAdditionalResponse = 1025
