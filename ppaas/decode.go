package ppaas

import (
	"time"
	"unicode/utf8"
)

// Issue 17: a payment decodes two bodies on its path, the create's answer
// and the approval event, and encoding/json's reflection spent ~12 µs and
// ~20 µs of CPU on them. The platform (the simulated one, and presumably a
// real one) writes them plainly: the fields of this package's types, once
// each, strings without escapes, integers. Such a body is decoded here by
// hand; any other — an escape, a field unknown or spelled in another case,
// a null, a duplicate, a number with a fraction, anything malformed — makes
// the plain decoder give up, and encoding/json decodes it as before. What
// the plain decoder accepts is therefore valid JSON that encoding/json
// decodes to the very same value (FuzzPlainDecoding checks both).

// plain reads a body of the narrow form: it fails (ok false) on anything
// else, leaving the body to encoding/json.
type plain struct {
	b  []byte
	s  string // b as a string: every decoded string is a slice of it (one allocation)
	i  int
	ok bool
}

func newPlain(b []byte) plain { return plain{b: b, s: string(b), ok: true} }

func (p *plain) fail() { p.ok = false }

func (p *plain) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c, after whitespace.
func (p *plain) byte(c byte) bool {
	p.ws()
	if p.ok && p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether nothing but whitespace is left.
func (p *plain) end() bool {
	p.ws()
	return p.ok && p.i == len(p.b)
}

// str reads a string with no escapes and no control characters, valid
// UTF-8: encoding/json gives such a string's bytes as they are.
func (p *plain) str() string {
	if !p.byte('"') {
		p.fail()
		return ""
	}
	start := p.i
	ascii := true
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			s := p.s[start:p.i]
			p.i++
			if !ascii && !utf8.ValidString(s) {
				p.fail() // encoding/json replaces invalid bytes
				return ""
			}
			return s
		case c == '\\' || c < 0x20:
			p.fail()
			return ""
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	p.fail()
	return ""
}

// quoted reads a plain string as its JSON literal, quotes included (what
// encoding/json hands an Unmarshaler).
func (p *plain) quoted() []byte {
	p.ws()
	start := p.i
	p.str()
	if !p.ok {
		return nil
	}
	return p.b[start:p.i]
}

// int reads an integer without fraction or exponent, at most 18 digits (no
// overflow to check).
func (p *plain) int() int64 {
	p.ws()
	neg := p.i < len(p.b) && p.b[p.i] == '-'
	if neg {
		p.i++
	}
	start := p.i
	var n int64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		n = n*10 + int64(p.b[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	switch {
	case digits == 0 || digits > 18, digits > 1 && p.b[start] == '0':
		p.fail()
		return 0
	case p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E'):
		p.fail()
		return 0
	}
	if neg {
		n = -n
	}
	return n
}

// object reads an object, handing member each key for it to read the
// value. member returns the key's bit among its struct's fields (0 for a
// map's key): a field given twice fails (encoding/json would merge or
// overwrite, not worth following). A map's key given twice is overwritten,
// as encoding/json does.
func (p *plain) object(member func(key string) uint32) {
	if !p.byte('{') {
		p.fail()
		return
	}
	if p.byte('}') {
		return
	}
	var seen uint32
	for p.ok {
		k := p.str()
		if !p.ok || !p.byte(':') {
			p.fail()
			return
		}
		bit := member(k)
		if seen&bit != 0 {
			p.fail()
		}
		seen |= bit
		if !p.ok {
			return
		}
		if p.byte(',') {
			continue
		}
		if !p.byte('}') {
			p.fail()
		}
		return
	}
}

// decodePlain decodes b into t (zero) when b is of the plain form,
// reporting whether it was: t is then what json.Unmarshal(b, t) makes.
func (t *Transaction) decodePlain(b []byte) bool {
	p := newPlain(b)
	p.object(func(k string) uint32 {
		switch k {
		case "transactionId":
			t.TransactionID = p.str()
			return 1 << 0
		case "clientTransactionId":
			t.ClientTransactionID = p.str()
			return 1 << 1
		case "paymentType":
			t.PaymentType = p.str()
			return 1 << 2
		case "paymentScenario":
			t.PaymentScenario = Scenario(p.str())
			return 1 << 3
		case "status":
			t.Status = State(p.str())
			return 1 << 4
		case "statusReason":
			t.StatusReason = p.str()
			return 1 << 5
		case "sequence":
			t.Sequence = p.int()
			return 1 << 6
		case "qrCode":
			t.QRCode = &QRCode{}
			p.object(func(k string) uint32 {
				if k != "payload" {
					p.fail() // imagePng (base64) among others: encoding/json's
					return 0
				}
				t.QRCode.Payload = p.str()
				return 1
			})
			return 1 << 7
		case "providerReference":
			t.ProviderReference = p.str()
			return 1 << 8
		case "paymentAmount":
			p.amount(&t.PaymentAmount)
			return 1 << 9
		case "order":
			p.object(func(k string) uint32 {
				switch k {
				case "orderId":
					t.Order.OrderID = p.str()
					return 1
				case "orderDescription":
					t.Order.OrderDescription = p.str()
					return 2
				}
				p.fail()
				return 0
			})
			return 1 << 10
		case "refundedAmount":
			t.RefundedAmount = p.int()
			return 1 << 11
		case "createdAt":
			p.time(&t.CreatedAt)
			return 1 << 12
		case "updatedAt":
			p.time(&t.UpdatedAt)
			return 1 << 13
		case "merchantId":
			t.MerchantID = p.str()
			return 1 << 14
		case "acquirerId":
			t.AcquirerID = p.str()
			return 1 << 15
		case "acquirerPoiId":
			t.AcquirerPOIID = p.str()
			return 1 << 16
		}
		p.fail()
		return 0
	})
	return p.end()
}

// decodePlain decodes b into e (zero) when b is of the plain form,
// reporting whether it was: e is then what json.Unmarshal(b, e) makes.
func (e *Event) decodePlain(b []byte) bool {
	p := newPlain(b)
	p.object(func(k string) uint32 {
		switch k {
		case "eventId":
			e.EventID = p.str()
			return 1 << 0
		case "type":
			e.Type = p.str()
			return 1 << 1
		case "transactionId":
			e.TransactionID = p.str()
			return 1 << 2
		case "clientTransactionId":
			e.ClientTransactionID = p.str()
			return 1 << 3
		case "status":
			e.Status = State(p.str())
			return 1 << 4
		case "statusReason":
			e.StatusReason = p.str()
			return 1 << 5
		case "sequence":
			e.Sequence = p.int()
			return 1 << 6
		case "time":
			p.time(&e.Time)
			return 1 << 7
		case "providerReference":
			e.ProviderReference = p.str()
			return 1 << 8
		case "provider":
			e.Provider = map[string]string{}
			p.object(func(k string) uint32 {
				e.Provider[k] = p.str()
				return 0
			})
			return 1 << 9
		}
		p.fail()
		return 0
	})
	return p.end()
}

func (p *plain) amount(a *Amount) {
	p.object(func(k string) uint32 {
		switch k {
		case "amount":
			a.Amount = p.int()
			return 1
		case "currency":
			a.Currency = p.str()
			return 2
		}
		p.fail()
		return 0
	})
}

// time reads a time as encoding/json does: time.Time's UnmarshalJSON of the
// literal.
func (p *plain) time(t *time.Time) {
	q := p.quoted()
	if !p.ok || t.UnmarshalJSON(q) != nil {
		p.fail()
	}
}
