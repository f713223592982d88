package nexo

import (
	"errors"
	"fmt"
)

// ErrorCondition is the Nexo ErrorCondition carried in a Failure Response.
type ErrorCondition string

// The Nexo 3.x error conditions.
const (
	Aborted            ErrorCondition = "Aborted"
	Busy               ErrorCondition = "Busy"
	Cancel             ErrorCondition = "Cancel"
	DeviceOut          ErrorCondition = "DeviceOut"
	InsertedCard       ErrorCondition = "InsertedCard"
	InProgress         ErrorCondition = "InProgress"
	LoggedOut          ErrorCondition = "LoggedOut"
	MessageFormat      ErrorCondition = "MessageFormat"
	NotAllowed         ErrorCondition = "NotAllowed"
	NotFound           ErrorCondition = "NotFound"
	PaymentRestriction ErrorCondition = "PaymentRestriction"
	Refusal            ErrorCondition = "Refusal"
	UnavailableDevice  ErrorCondition = "UnavailableDevice"
	UnavailableService ErrorCondition = "UnavailableService"
	UnreachableHost    ErrorCondition = "UnreachableHost"
	WrongPIN           ErrorCondition = "WrongPIN"
)

// Error is a Nexo failure: handlers and payment engines return it and the
// server turns it into a Response with Result Failure, this ErrorCondition
// and Text as AdditionalResponse.
type Error struct {
	Condition ErrorCondition
	Text      string
	// POITransactionID, when an engine sets it, names the POI transaction the
	// failure is about, so the POS can ask its status or reverse it later.
	POITransactionID TransactionID
}

func (e *Error) Error() string {
	if e.Text == "" {
		return "nexo: " + string(e.Condition)
	}
	return "nexo: " + string(e.Condition) + ": " + e.Text
}

// Errorf returns an *Error with a formatted text.
func Errorf(c ErrorCondition, format string, args ...any) *Error {
	return &Error{Condition: c, Text: fmt.Sprintf(format, args...)}
}

// ErrAborted is the cause with which the server cancels the context of a
// payment that the POS aborted (see context.Cause). Engines that see it
// should stop and return an *Error with Condition Aborted.
var ErrAborted = errors.New("nexo: payment aborted by the POS")

// ErrOutcomeOwned is what a Journal's Finish wraps when it refuses a Success
// because something else owns the transaction's outcome (the agent: a queued
// reversal, which will give the money back). The POS is then never told
// Success: the sale would be handed over and the money refunded.
var ErrOutcomeOwned = errors.New("nexo: the transaction's outcome is owned by a reversal")

// formatError is a MessageFormat error naming the offending field.
func formatError(field, format string, args ...any) *Error {
	return &Error{Condition: MessageFormat, Text: field + ": " + fmt.Sprintf(format, args...)}
}

// asError converts any error into a Nexo failure. An unclassified error from a
// payment engine leaves the outcome unknown, so it maps to UnreachableHost:
// the POS must then ask TransactionStatus rather than retry blindly.
func asError(err error, fallback ErrorCondition) *Error {
	var ne *Error
	if errors.As(err, &ne) {
		return ne
	}
	if errors.Is(err, ErrAborted) {
		return &Error{Condition: Aborted, Text: "aborted by the POS"}
	}
	return &Error{Condition: fallback, Text: err.Error()}
}
