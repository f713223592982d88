package nexo

import (
	"fmt"
	"strconv"
	"strings"
)

// Amount is a money amount in integer minor units of an ISO 4217 currency
// (1099 EUR is 10.99 EUR). The wire carries decimals in major units; the
// conversion is exact and respects the currency's exponent.
type Amount struct {
	Minor    int64
	Currency string
}

func (a Amount) String() string {
	s, err := formatAmount(a.Minor, a.Currency)
	if err != nil {
		return fmt.Sprintf("%d(minor) %s", a.Minor, a.Currency)
	}
	return s + " " + a.Currency
}

// CurrencyExponent returns the number of minor-unit digits of an active
// ISO 4217 currency, and false for an unknown code.
func CurrencyExponent(code string) (int, bool) {
	if len(code) != 3 {
		return 0, false
	}
	for i := 0; i < 3; i++ {
		if code[i] < 'A' || code[i] > 'Z' {
			return 0, false
		}
	}
	switch code {
	// Zero-decimal currencies.
	case "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
		"UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF":
		return 0, true
	// Three-decimal currencies.
	case "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND":
		return 3, true
	// Four-decimal units of account.
	case "CLF", "UYW":
		return 4, true
	// Two-decimal currencies: a switch rather than a search of a list, as
	// every payment asks several times (TestCurrencyExponentIsTheList holds
	// it to the list it replaced).
	case "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
		"BGN", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
		"CHE", "CHF", "CHW", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK", "DKK", "DOP", "DZD",
		"EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD",
		"HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR", "KPW",
		"KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT",
		"MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK",
		"NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR",
		"SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP",
		"SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "USN", "UYU",
		"UZS", "VED", "VES", "WST", "XCD", "XCG", "YER", "ZAR", "ZMW", "ZWG":
		return 2, true
	}
	return 0, false
}

// maxAmountDigits bounds the integer so that minor units fit an int64.
const maxAmountDigits = 18

// parseAmount converts a decimal in major units (as found on the wire, JSON
// number syntax) into minor units of currency. field names the element for
// the MessageFormat error.
func parseAmount(field, text, currency string) (int64, *Error) {
	exp, ok := CurrencyExponent(currency)
	if !ok {
		return 0, formatError(field, "unknown currency %q", currency)
	}
	if text == "" {
		return 0, formatError(field, "missing")
	}
	if len(text) > 40 {
		return 0, formatError(field, "not a decimal amount")
	}
	s := text
	if s[0] == '-' {
		return 0, formatError(field, "negative amount %s", text)
	}
	if s[0] == '+' {
		s = s[1:]
	}
	var mant, frac string
	e := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		es := s[i+1:]
		s = s[:i]
		neg := false
		if es != "" && (es[0] == '+' || es[0] == '-') {
			neg = es[0] == '-'
			es = es[1:]
		}
		if es == "" || len(es) > 3 || !allDigits(es) {
			return 0, formatError(field, "not a decimal amount")
		}
		for _, c := range es {
			e = e*10 + int(c-'0')
		}
		if neg {
			e = -e
		}
	}
	mant = s
	if i := strings.IndexByte(s, '.'); i >= 0 {
		mant, frac = s[:i], s[i+1:]
		if frac == "" {
			return 0, formatError(field, "not a decimal amount")
		}
	}
	if mant == "" || !allDigits(mant) || !allDigits(frac) {
		return 0, formatError(field, "not a decimal amount")
	}
	digits := strings.TrimLeft(mant+frac, "0")
	// value = digits × 10^(e - len(frac)); minor = value × 10^exp.
	shift := e - len(frac) + exp
	if digits == "" {
		return 0, nil
	}
	if shift < 0 {
		cut := len(digits) + shift
		if cut < 0 || strings.Trim(digits[max(cut, 0):], "0") != "" {
			return 0, formatError(field, "more than %d decimals for %s", exp, currency)
		}
		digits = digits[:cut]
	} else {
		if len(digits)+shift > maxAmountDigits {
			return 0, formatError(field, "amount too large")
		}
		digits += strings.Repeat("0", shift)
	}
	if len(digits) > maxAmountDigits {
		return 0, formatError(field, "amount too large")
	}
	var v int64
	for _, c := range digits {
		v = v*10 + int64(c-'0')
	}
	return v, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// formatAmount renders minor units as a decimal in major units with exactly
// the currency's exponent of decimals.
func formatAmount(minor int64, currency string) (string, error) {
	exp, ok := CurrencyExponent(currency)
	if !ok {
		return "", fmt.Errorf("format amount: unknown currency %q", currency)
	}
	if minor < 0 {
		return "", fmt.Errorf("format amount: negative amount %d", minor)
	}
	var out [48]byte
	return string(appendAmountDigits(out[:0], minor, exp)), nil
}

// appendAmountDigits appends minor (not negative) as a decimal with exp
// decimals: the digits fmt.Sprintf("%0*d", exp+1, minor) gave, with the
// point before the last exp of them. No fmt: formatAmount runs several
// times on every payment.
func appendAmountDigits(b []byte, minor int64, exp int) []byte {
	var buf [40]byte // an int64's 19 digits, or exp+1 zero-padded ones
	p := buf[:0]
	var d [20]byte
	digits := strconv.AppendInt(d[:0], minor, 10)
	for n := len(digits); n < exp+1; n++ {
		p = append(p, '0')
	}
	p = append(p, digits...)
	if exp == 0 {
		return append(b, p...)
	}
	b = append(b, p[:len(p)-exp]...)
	b = append(b, '.')
	return append(b, p[len(p)-exp:]...)
}
