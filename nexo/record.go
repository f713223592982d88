package nexo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The journal record: a transaction's request and final response as this
// package's model, independent of the envelope (3.x JSON, XML, v5) the POS
// used, so that TransactionStatus and a duplicate's replay answer each POS in
// its own envelope, and reading a record costs no JSON or XML parsing. Only
// transactions are journaled: a request carries a Payment or Reversal body, a
// response a Payment or Reversal body (or none, for a failure).
//
// Layout (version 1). Strings and lists are a uvarint length then the items;
// integers are varints; a time is its Unix nanoseconds (0: the zero time)
// then its zone offset in seconds; a flag is one byte, 0 or 1.
//
//	request:  version(1) header bodies(1: 1 Payment, 2 Reversal) [payment] [reversal]
//	response: version(1) header status bodies(1: 1 Payment, 2 Reversal) [payment] [reversal]
//	header:   ProtocolVersion Class Category Type ServiceID DeviceID SaleID POIID
//
// and each body's fields in the order of its struct (see the append
// functions below). Never change a version's layout: add a version, and keep
// decoding the old one.
const recordVersion = 1

const (
	recordPayment  = 1 << 0
	recordReversal = 1 << 1
)

// ErrRecord is returned (wrapped) for a journal record that does not decode.
var ErrRecord = errors.New("bad journal record")

// AppendRequestRecord appends the journal record of r (a Payment or Reversal
// request) to b.
func AppendRequestRecord(b []byte, r *Request) ([]byte, error) {
	if r.Login != nil || r.Logout != nil || r.Abort != nil || r.TransactionStatus != nil || r.Diagnosis != nil ||
		r.Display != nil || r.Event != nil || r.GetTotals != nil || r.Reconciliation != nil {
		return b, fmt.Errorf("journal record of a %s request: only Payment and Reversal are journaled", r.Header.Category)
	}
	b = slices.Grow(b, 256) // a payment's record, in one allocation
	b = append(b, recordVersion)
	b = appendHeader(b, r.Header)
	b = append(b, recordBodies(r.Payment != nil, r.Reversal != nil))
	if p := r.Payment; p != nil {
		b = appendTxnID(b, p.SaleTransactionID)
		b = appendStrings(b, p.SaleReferenceID, p.OperatorID, string(p.Type))
		b = appendAmount(b, p.Amount)
		b = appendList(b, p.AllowedBrands)
		b = appendStrings(b, p.InstrumentType, p.ShiftNumber, p.TotalsGroupID)
		b = appendTxnID(b, p.OriginalPOITransactionID)
		b = appendStrings(b, p.ScannedCode)
	}
	if v := r.Reversal; v != nil {
		b = appendTxnID(b, v.OriginalPOITransactionID)
		b = appendStrings(b, v.OriginalSaleID, v.Reason, v.ReversedAmount)
	}
	return b, nil
}

// recordBodies is the byte saying which bodies a record holds.
func recordBodies(payment, reversal bool) byte {
	var bodies byte
	if payment {
		bodies |= recordPayment
	}
	if reversal {
		bodies |= recordReversal
	}
	return bodies
}

// DecodeRequestRecord decodes a record AppendRequestRecord wrote. The result
// does not alias b.
func DecodeRequestRecord(b []byte) (*Request, error) {
	d := newRecordDecoder(b)
	d.version()
	r := &Request{Header: d.header()}
	bodies := d.bodies()
	if bodies&recordPayment != 0 {
		p := &PaymentRequest{SaleTransactionID: d.txnID()}
		p.SaleReferenceID, p.OperatorID, p.Type = d.str(), d.str(), PaymentType(d.str())
		p.Amount = d.amount()
		p.AllowedBrands = d.list()
		p.InstrumentType, p.ShiftNumber, p.TotalsGroupID = d.str(), d.str(), d.str()
		p.OriginalPOITransactionID = d.txnID()
		p.ScannedCode = d.str()
		r.Payment = p
	}
	if bodies&recordReversal != 0 {
		v := &ReversalRequest{OriginalPOITransactionID: d.txnID()}
		v.OriginalSaleID, v.Reason, v.ReversedAmount = d.str(), d.str(), d.str()
		r.Reversal = v
	}
	if err := d.end("request"); err != nil {
		return nil, err
	}
	return r, nil
}

// AppendResponseRecord appends the journal record of r (the response of a
// Payment or Reversal) to b.
func AppendResponseRecord(b []byte, r *Response) ([]byte, error) {
	if r.Login != nil || r.TransactionStatus != nil || r.Diagnosis != nil || r.Display != nil || r.GetTotals != nil || r.Reconciliation != nil {
		return b, fmt.Errorf("journal record of a %s response: only Payment and Reversal are journaled", r.Header.Category)
	}
	b = slices.Grow(b, responseRecordCap(r)) // one allocation, not one per doubling
	b = append(b, recordVersion)
	b = appendHeader(b, r.Header)
	b = appendStrings(b, string(r.Status.Result), string(r.Status.ErrorCondition), r.Status.AdditionalResponse)
	b = append(b, recordBodies(r.Payment != nil, r.Reversal != nil))
	if p := r.Payment; p != nil {
		b = appendTxnID(b, p.SaleTransactionID)
		b = appendTxnID(b, p.POITransactionID)
		b = appendStrings(b, p.POIReconciliationID)
		if res := p.Result; res == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = appendTxnID(b, res.POITransactionID)
			b = appendStrings(b, string(res.Type), res.Brand, res.InstrumentType)
			b = appendAmount(b, res.AuthorizedAmount)
			b = appendStrings(b, res.AcquirerID, res.ProviderReference, res.ApprovalCode, res.MerchantID, res.AcquirerPOIID)
		}
		b = appendReceipts(b, p.Receipts)
	}
	if v := r.Reversal; v != nil {
		b = appendTxnID(b, v.OriginalPOITransactionID)
		b = appendTxnID(b, v.POITransactionID)
		b = appendStrings(b, v.ReversedAmount)
		b = appendReceipts(b, v.Receipts)
	}
	return b, nil
}

// DecodeResponseRecord decodes a record AppendResponseRecord wrote. The
// result does not alias b.
func DecodeResponseRecord(b []byte) (*Response, error) {
	d := newRecordDecoder(b)
	d.version()
	r := &Response{Header: d.header()}
	r.Status = ResponseStatus{Result: Result(d.str()), ErrorCondition: ErrorCondition(d.str()), AdditionalResponse: d.str()}
	bodies := d.bodies()
	if bodies&recordPayment != 0 {
		p := &PaymentResponse{SaleTransactionID: d.txnID(), POITransactionID: d.txnID(), POIReconciliationID: d.str()}
		if d.flag() {
			res := &PaymentResult{POITransactionID: d.txnID()}
			res.Type, res.Brand, res.InstrumentType = PaymentType(d.str()), d.str(), d.str()
			res.AuthorizedAmount = d.amount()
			res.AcquirerID, res.ProviderReference, res.ApprovalCode = d.str(), d.str(), d.str()
			res.MerchantID, res.AcquirerPOIID = d.str(), d.str()
			p.Result = res
		}
		p.Receipts = d.receipts()
		r.Payment = p
	}
	if bodies&recordReversal != 0 {
		v := &ReversalResponse{OriginalPOITransactionID: d.txnID(), POITransactionID: d.txnID(), ReversedAmount: d.str()}
		v.Receipts = d.receipts()
		r.Reversal = v
	}
	if err := d.end("response"); err != nil {
		return nil, err
	}
	return r, nil
}

// responseRecordCap is a capacity r's record seldom outgrows: its receipts
// are most of it.
func responseRecordCap(r *Response) int {
	n := 256 + len(r.Status.AdditionalResponse)
	var rs []PaymentReceipt
	switch {
	case r.Payment != nil:
		rs = r.Payment.Receipts
	case r.Reversal != nil:
		rs = r.Reversal.Receipts
	}
	for _, rc := range rs {
		n += 2 + len(rc.DocumentQualifier) + 2
		for _, l := range rc.Lines {
			n += 2 + len(l)
		}
	}
	return n
}

func appendStrings(b []byte, ss ...string) []byte {
	for _, s := range ss {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func appendList(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	return appendStrings(b, ss...)
}

func appendHeader(b []byte, h Header) []byte {
	return appendStrings(b, h.ProtocolVersion, string(h.Class), string(h.Category), string(h.Type), h.ServiceID, h.DeviceID, h.SaleID, h.POIID)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0, 0) // varint 0, offset 0
	}
	_, off := t.Zone()
	b = binary.AppendVarint(b, t.UnixNano())
	return binary.AppendVarint(b, int64(off))
}

func appendTxnID(b []byte, id TransactionID) []byte {
	return appendTime(appendStrings(b, id.ID), id.TimeStamp)
}

func appendAmount(b []byte, a Amount) []byte {
	return appendStrings(binary.AppendVarint(b, a.Minor), a.Currency)
}

func appendReceipts(b []byte, rs []PaymentReceipt) []byte {
	b = binary.AppendUvarint(b, uint64(len(rs)))
	for _, r := range rs {
		b = appendStrings(b, r.DocumentQualifier)
		b = appendList(b, r.Lines)
	}
	return b
}

// recordDecoder reads a record, remembering the first error so that the
// caller checks once (at end). Every length and count is checked against
// what is left, so a corrupt record cannot make it allocate more than its
// own size.
//
// The strings it returns are slices of one copy of the record (s), made
// once: a record decodes with a handful of allocations however many strings
// (receipt lines) it holds.
type recordDecoder struct {
	b   []byte
	s   string // the whole record, b's bytes: b is s[len(s)-len(b):]
	err error
}

func newRecordDecoder(b []byte) *recordDecoder {
	return &recordDecoder{b: b, s: string(b)}
}

func (d *recordDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrRecord, what)
	}
	d.b = d.b[:0]
}

func (d *recordDecoder) version() {
	if len(d.b) == 0 {
		d.fail("empty")
		return
	}
	if v := d.b[0]; v != recordVersion {
		d.fail(fmt.Sprintf("version %d", v))
		return
	}
	d.b = d.b[1:]
}

func (d *recordDecoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("short")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *recordDecoder) flag() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad flag")
	return false
}

func (d *recordDecoder) bodies() byte {
	v := d.byte()
	if v&^(recordPayment|recordReversal) != 0 {
		d.fail("unknown body")
	}
	return v
}

func (d *recordDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length or count of items of at least one byte each.
func (d *recordDecoder) count() int {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad length")
		return 0
	}
	d.b = d.b[n:]
	if v > uint64(len(d.b)) {
		d.fail("length exceeds the record")
		return 0
	}
	return int(v)
}

func (d *recordDecoder) str() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	at := len(d.s) - len(d.b)
	d.b = d.b[n:]
	return d.s[at : at+n]
}

func (d *recordDecoder) list() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		out = append(out, d.str())
	}
	return out
}

func (d *recordDecoder) header() Header {
	return Header{ProtocolVersion: d.str(), Class: MessageClass(d.str()), Category: MessageCategory(d.str()), Type: MessageType(d.str()),
		ServiceID: d.str(), DeviceID: d.str(), SaleID: d.str(), POIID: d.str()}
}

func (d *recordDecoder) time() time.Time {
	ns, off := d.varint(), d.varint()
	switch {
	case ns == 0 && off == 0:
		return time.Time{}
	case off == 0:
		return time.Unix(0, ns).UTC()
	case off < -24*3600 || off > 24*3600:
		d.fail("zone offset")
		return time.Time{}
	}
	return time.Unix(0, ns).In(time.FixedZone("", int(off)))
}

func (d *recordDecoder) txnID() TransactionID {
	return TransactionID{ID: d.str(), TimeStamp: d.time()}
}

func (d *recordDecoder) amount() Amount {
	return Amount{Minor: d.varint(), Currency: d.str()}
}

func (d *recordDecoder) receipts() []PaymentReceipt {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]PaymentReceipt, 0, n)
	for range n {
		out = append(out, PaymentReceipt{DocumentQualifier: d.str(), Lines: d.list()})
	}
	return out
}

func (d *recordDecoder) end(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return fmt.Errorf("decode journal %s: %w", what, d.err)
	}
	return nil
}
