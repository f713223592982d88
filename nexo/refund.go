package nexo

// Refunds (issue 14). A referenced refund is a PaymentRequest with
// PaymentData.PaymentType Refund and PaymentData.OriginalPOITransaction naming
// the payment it refunds; a partial reversal is a ReversalRequest with
// ReversedAmount. This file holds their wire mapping, the amount helpers the
// engines need (ReversedAmount travels without a currency: it is the original
// payment's) and the reversal receipts; map3.go calls into it in a few
// delimited lines.

// RefundPending is the text an engine's InProgress failure of a refund starts
// with when PPaaS accepted the refund but has not completed it: the POS is
// answered Failure/InProgress and TransactionStatus says InProgress until the
// platform confirms (see the agent's refund desk).
const RefundPending = "refund pending at PPaaS"

// refundFromWire reads PaymentData.OriginalPOITransaction into p. It is only
// allowed on a Refund: a Normal payment referencing another one is an error a
// POS should hear about rather than a reference silently dropped.
func refundFromWire(f string, pd *wirePaymentData, p *PaymentRequest) *Error {
	if pd == nil || pd.OriginalPOITransaction == nil {
		return nil
	}
	o := pd.OriginalPOITransaction
	if p.Type != PaymentRefund {
		return formatError(f+".PaymentData.OriginalPOITransaction", "only allowed with PaymentType Refund")
	}
	if e := checkLens(maxRefLen, f+".PaymentData.OriginalPOITransaction.SaleID", o.SaleID, f+".PaymentData.OriginalPOITransaction.POIID", o.POIID); e != nil {
		return e
	}
	id, e := transactionIDFromWire(f+".PaymentData.OriginalPOITransaction.POITransactionID", o.POITransactionID, false)
	if e != nil {
		return e
	}
	p.OriginalPOITransactionID = id
	return nil
}

// refundToWire writes p's OriginalPOITransaction.
func refundToWire(p *PaymentRequest, w *wirePaymentRequest) {
	id := transactionIDToWire(p.OriginalPOITransactionID)
	if id == nil {
		return
	}
	if w.PaymentData == nil {
		w.PaymentData = &wirePaymentData{PaymentType: string(p.Type)}
	}
	w.PaymentData.OriginalPOITransaction = &wireOriginalPOITransaction{POITransactionID: id}
}

// amountSyntaxCurrency has the most decimals of any ISO 4217 currency: an
// amount that parses in it is a well-formed decimal whatever the currency
// turns out to be; the engine checks it again in the original's currency.
const amountSyntaxCurrency = "BHD"

// reversedAmountFromWire checks a ReversedAmount: empty (the whole payment)
// or a positive decimal.
func reversedAmountFromWire(field string, d wireDecimal) (string, *Error) {
	if d == "" {
		return "", nil
	}
	if e := checkLen(field, string(d), 32); e != nil {
		return "", e
	}
	v, e := parseAmount(field, string(d), amountSyntaxCurrency)
	if e != nil {
		return "", e
	}
	if v == 0 {
		return "", formatError(field, "must be greater than zero")
	}
	return string(d), nil
}

// ParseAmount converts a decimal in major units into minor units of
// currency, as the codec does; field names the element in the error.
func ParseAmount(field, text, currency string) (int64, error) {
	v, e := parseAmount(field, text, currency)
	if e != nil {
		return 0, e
	}
	return v, nil
}

// FormatAmount renders minor units of currency as the wire's decimal.
func FormatAmount(a Amount) (string, error) { return formatAmount(a.Minor, a.Currency) }

// reversalOutcome fills a successful reversal's response from the engine's
// result: the amount reversed (when the engine says) and the receipts.
func reversalOutcome(r *Response, res ReversalResult, merchant string) {
	if r.Reversal == nil {
		return
	}
	if res.ReversedAmount.Currency != "" {
		if d, err := formatAmount(res.ReversedAmount.Minor, res.ReversedAmount.Currency); err == nil {
			r.Reversal.ReversedAmount = d
		}
	}
	r.Reversal.Receipts = ReversalReceipts(r, res.ReversedAmount, merchant, false)
}

// ReversalReceipts returns the cashier and customer receipts of a successful
// reversal (nil for anything else): what Receipts is to a payment.
func ReversalReceipts(r *Response, amount Amount, merchant string, reprint bool) []PaymentReceipt {
	if r == nil || r.Status.Result != Success || r.Reversal == nil {
		return nil
	}
	var body []string
	if merchant != "" {
		body = append(body, merchant)
	}
	body = append(body, "REVERSAL")
	if ts := r.Reversal.POITransactionID.TimeStamp; !ts.IsZero() {
		body = append(body, receiptDate(ts))
	}
	if amount.Currency != "" {
		body = append(body, "Amount refunded: "+amount.String())
	}
	body = append(body, "POI transaction: "+r.Reversal.POITransactionID.ID,
		"Original POI transaction: "+r.Reversal.OriginalPOITransactionID.ID)
	if r.Header.POIID != "" {
		body = append(body, "Terminal: "+r.Header.POIID)
	}
	body = append(body, "REVERSED")
	return receiptCopies(body, reprint)
}

// RefundExceeds is the refusal of a refund larger than what remains
// refundable on its payment; it names the remainder.
func RefundExceeds(asked, remaining, paid Amount, original string) *Error {
	return Errorf(Refusal, "refund of %s exceeds what remains refundable on POI transaction %s: %s (paid %s, %s already refunded or pending)",
		asked, original, remaining, paid, Amount{Minor: paid.Minor - remaining.Minor, Currency: paid.Currency})
}

// partiallyReversed is the original payment as a reversal of reversed (the
// ReversalResponse's ReversedAmount) counts it in totals: the whole payment
// when reversed is empty, else that part of it. ok is false for an amount
// that does not parse in the payment's currency (not counted).
func partiallyReversed(p *PaymentResult, reversed wireDecimal) (*PaymentResult, bool) {
	if reversed == "" {
		return p, true
	}
	minor, e := parseAmount("ReversalResponse.ReversedAmount", string(reversed), p.AuthorizedAmount.Currency)
	if e != nil || minor > p.AuthorizedAmount.Minor {
		return p, false
	}
	part := *p
	part.AuthorizedAmount.Minor = minor
	return &part, true
}

// reprintReversal is reprint for a Reversal's repeated response: the receipts
// it was answered with, those asked for only, marked DUPLICATE.
func reprintReversal(rep *Response, qualifiers []string) {
	if rep == nil || rep.Reversal == nil || len(qualifiers) == 0 {
		return
	}
	var out []PaymentReceipt
	for _, r := range receiptsFor(rep.Reversal.Receipts, qualifiers) {
		r.Lines = append([]string{"DUPLICATE"}, r.Lines...)
		out = append(out, r)
	}
	rep.Reversal.Receipts = out
}
