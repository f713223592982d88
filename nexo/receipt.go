package nexo

import "time"

// Receipts (issue 14): a successful payment's response carries a
// PaymentReceipt for the cashier and one for the customer (OutputFormat Text),
// built from the journaled outcome by Receipts; TransactionStatus reprints
// them when the POS names a DocumentQualifier.

// DocumentQualifier values of the receipts (Nexo code list).
const (
	CashierReceipt  = "CashierReceipt"
	CustomerReceipt = "CustomerReceipt"
)

// PaymentReceipt is one receipt, a text of lines.
type PaymentReceipt struct {
	DocumentQualifier string
	Lines             []string
}

// Receipts returns the cashier and customer receipts of a successful payment
// response (nil for anything else). merchant heads them when not empty. It is
// a pure function of the response, so a reprint is the same text as the
// original with a DUPLICATE line on top.
func Receipts(r *Response, merchant string, reprint bool) []PaymentReceipt {
	if r == nil || r.Status.Result != Success || r.Payment == nil || r.Payment.Result == nil {
		return nil
	}
	p, res := r.Payment, r.Payment.Result
	body := make([]string, 0, 10) // its most lines
	if merchant != "" {
		body = append(body, merchant)
	}
	kind := "PAYMENT"
	if res.Type == PaymentRefund {
		kind = "REFUND"
	}
	ts := p.POITransactionID.TimeStamp
	if ts.IsZero() {
		ts = res.POITransactionID.TimeStamp
	}
	body = append(body, kind)
	if !ts.IsZero() {
		body = append(body, receiptDate(ts))
	}
	body = append(body, "Amount: "+res.AuthorizedAmount.String())
	if res.Brand != "" {
		body = append(body, "Wallet: "+res.Brand)
	}
	body = append(body, "POI transaction: "+p.POITransactionID.ID)
	if res.ApprovalCode != "" {
		body = append(body, "PPaaS transaction: "+res.ApprovalCode)
	}
	if res.ProviderReference != "" {
		body = append(body, "Provider reference: "+res.ProviderReference)
	}
	if r.Header.POIID != "" {
		body = append(body, "Terminal: "+r.Header.POIID)
	}
	body = append(body, "APPROVED")
	return receiptCopies(body, reprint)
}

// receiptDate is a receipt's date line, "Date: " + ts.UTC().Format(time.DateTime)
// + " UTC", byte for byte (TestWireTimeIsFormat, FuzzWireTime), without
// interpreting the layout: every approved payment prints it.
func receiptDate(ts time.Time) string {
	ts = ts.UTC()
	year, month, day := ts.Date()
	if year < 0 || year > 9999 {
		return "Date: " + ts.Format(time.DateTime) + " UTC"
	}
	var buf [32]byte
	b := appendDateTime(append(buf[:0], "Date: "...), year, int(month), day, ts, ' ')
	return string(append(b, " UTC"...))
}

// receiptCopies makes the cashier's and the customer's copy of a receipt
// body, marked DUPLICATE when reprinted.
func receiptCopies(body []string, reprint bool) []PaymentReceipt {
	out := make([]PaymentReceipt, 0, 2)
	for _, q := range []struct{ qualifier, copy string }{{CashierReceipt, "MERCHANT COPY"}, {CustomerReceipt, "CUSTOMER COPY"}} {
		lines := make([]string, 0, len(body)+2)
		if reprint {
			lines = append(lines, "DUPLICATE")
		}
		lines = append(lines, body...)
		lines = append(lines, q.copy)
		out = append(out, PaymentReceipt{DocumentQualifier: q.qualifier, Lines: lines})
	}
	return out
}

// receiptsFor keeps the receipts whose DocumentQualifier is asked for.
func receiptsFor(all []PaymentReceipt, qualifiers []string) []PaymentReceipt {
	var out []PaymentReceipt
	for _, r := range all {
		for _, q := range qualifiers {
			if r.DocumentQualifier == q {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

type wirePaymentReceipt struct {
	DocumentQualifier string             `json:",omitempty" xml:",attr,omitempty"`
	OutputContent     *wireOutputContent `json:",omitempty" xml:",omitempty"`
}

func receiptsToWire(rs []PaymentReceipt) []wirePaymentReceipt {
	if len(rs) == 0 {
		return nil
	}
	out := make([]wirePaymentReceipt, 0, len(rs))
	for _, r := range rs {
		c := &wireOutputContent{OutputFormat: OutputText, OutputText: make([]wireOutputText, 0, len(r.Lines))}
		for _, l := range r.Lines {
			c.OutputText = append(c.OutputText, wireOutputText{Text: l})
		}
		out = append(out, wirePaymentReceipt{DocumentQualifier: r.DocumentQualifier, OutputContent: c})
	}
	return out
}

func receiptsFromWire(ws []wirePaymentReceipt) []PaymentReceipt {
	var out []PaymentReceipt
	for _, w := range ws {
		r := PaymentReceipt{DocumentQualifier: w.DocumentQualifier}
		if w.OutputContent != nil {
			for _, t := range w.OutputContent.OutputText {
				r.Lines = append(r.Lines, t.Text)
			}
		}
		out = append(out, r)
	}
	return out
}

// maxDocumentQualifiers bounds a TransactionStatusRequest's DocumentQualifier.
const maxDocumentQualifiers = 6

func documentQualifiersFromWire(qs []string) ([]string, *Error) {
	const f = "TransactionStatusRequest.DocumentQualifier"
	if len(qs) > maxDocumentQualifiers {
		return nil, formatError(f, "more than %d values", maxDocumentQualifiers)
	}
	for _, q := range qs {
		switch q {
		case CashierReceipt, CustomerReceipt, "SaleReceipt", "Document", "Voucher", "Journal":
		default:
			return nil, formatError(f, "invalid value %q", q)
		}
	}
	return qs, nil
}

// reprint fills rep's receipts for a TransactionStatus that asks for some:
// only those asked for, marked DUPLICATE. Otherwise the repeated response
// stays the original, as sent.
func reprint(rep *Response, qualifiers []string, merchant string) {
	if rep == nil || rep.Payment == nil || len(qualifiers) == 0 {
		return
	}
	rep.Payment.Receipts = receiptsFor(Receipts(rep, merchant, true), qualifiers)
}

// reprintCopy is rep with its own Payment and Reversal, for a reprint to
// replace their receipts in: the journal's Response may be shared.
func (rep *Response) reprintCopy() *Response {
	c := *rep
	if c.Payment != nil {
		p := *c.Payment
		c.Payment = &p
	}
	if c.Reversal != nil {
		r := *c.Reversal
		c.Reversal = &r
	}
	return &c
}
