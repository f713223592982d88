package ppaas

import (
	"errors"
	"fmt"
)

// MaxScannedPaymentIDLen bounds scannedPaymentId, the code a terminal or a
// POS scanner read from the consumer's wallet (merchantscan). The seed's
// example is 24 digits; wallet codes seen in the field are numeric one-time
// codes (16–24 digits) or EMV consumer-presented QR payloads in base64, a few
// hundred characters at most. 512 leaves room for both and bounds what a peer
// can push through the agent to the platform.
const MaxScannedPaymentIDLen = 512

// ErrScannedPaymentID marks a scanned code the agent refuses before it reaches
// the platform.
var ErrScannedPaymentID = errors.New("invalid scanned code")

// CheckScannedPaymentID reports whether code can be sent as scannedPaymentId:
// 1 to MaxScannedPaymentIDLen characters of printable ASCII without spaces
// (digits, letters and the punctuation of base64 and URLs). A control
// character, a space or a non-ASCII character is a misread, or an attempt to
// forge log lines or display text: it is refused, not cleaned.
func CheckScannedPaymentID(code string) error {
	switch {
	case code == "":
		return fmt.Errorf("%w: empty", ErrScannedPaymentID)
	case len(code) > MaxScannedPaymentIDLen:
		return fmt.Errorf("%w: %d characters, more than %d", ErrScannedPaymentID, len(code), MaxScannedPaymentIDLen)
	}
	for i := 0; i < len(code); i++ {
		if c := code[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w: character %d (byte 0x%02x) is not printable ASCII", ErrScannedPaymentID, i+1, c)
		}
	}
	return nil
}
