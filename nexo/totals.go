package nexo

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Day-end services: GetTotals and Reconciliation (issue 14). Totals are
// computed from the journal, per payment instrument, brand and currency, and
// grouped further by POIID, SaleID, OperatorID, ShiftNumber and TotalsGroupID
// as the POS asks. A reconciliation period is a stretch of the journal: it
// opens when the previous one is closed by a SaleReconciliation, which gives
// it its POIReconciliationID.

// The day-end categories.
const (
	CategoryGetTotals      MessageCategory = "GetTotals"
	CategoryReconciliation MessageCategory = "Reconciliation"
)

// TotalDetails values: the ways totals can be grouped (Nexo code list).
const (
	DetailPOIID         = "POIID"
	DetailSaleID        = "SaleID"
	DetailOperatorID    = "OperatorID"
	DetailShiftNumber   = "ShiftNumber"
	DetailTotalsGroupID = "TotalsGroupID"
)

// ReconciliationType values (Nexo code list).
const (
	ReconSale                    = "SaleReconciliation"
	ReconAcquirerSynchronisation = "AcquirerSynchronisation"
	ReconAcquirer                = "AcquirerReconciliation"
	ReconPrevious                = "PreviousReconciliation"
)

// TransactionType values of PaymentTotals that the agent emits (a subset of
// the Nexo code list).
const (
	TotalsDebit         = "Debit"         // payments
	TotalsCredit        = "Credit"        // refunds
	TotalsReverseDebit  = "ReverseDebit"  // reversed payments
	TotalsReverseCredit = "ReverseCredit" // reversed refunds
)

// InstrumentMobile is the PaymentInstrumentType of APM payments: the Nexo
// code list (Card, Check, Mobile, StoredValue, Cash) has no QR value, and a
// wallet on a phone is Mobile.
const InstrumentMobile = "Mobile"

// TotalsGroup is what totals are grouped or filtered by. As a filter, an
// empty field matches anything.
type TotalsGroup struct {
	POIID         string
	SaleID        string
	OperatorID    string
	ShiftNumber   string
	TotalsGroupID string
}

// GetTotalsRequest asks for the totals of the reconciliation period in
// progress.
type GetTotalsRequest struct {
	// Details are the TotalDetails to group by (Detail* values).
	Details []string
	Filter  *TotalsGroup
}

// PaymentTotals is the count and sum of one TransactionType.
type PaymentTotals struct {
	Type   string // Totals* values
	Count  int
	Amount int64 // minor units of the TransactionTotals' Currency
}

// TransactionTotals are the totals of one group, payment instrument, brand
// and currency.
type TransactionTotals struct {
	TotalsGroup
	InstrumentType string // PaymentInstrumentType
	Brand          string // CardBrand
	Currency       string // PaymentCurrency
	Payments       []PaymentTotals
}

// Net is what the group took: payments less refunds, reversals netted.
func (t TransactionTotals) Net() int64 {
	var n int64
	for _, p := range t.Payments {
		switch p.Type {
		case TotalsDebit, TotalsReverseCredit:
			n += p.Amount
		case TotalsCredit, TotalsReverseDebit:
			n -= p.Amount
		}
	}
	return n
}

// GetTotalsResponse carries the totals.
type GetTotalsResponse struct {
	POIReconciliationID string
	Totals              []TransactionTotals
}

// ReconciliationRequest closes a period (SaleReconciliation), cross-checks it
// with the platform (AcquirerSynchronisation) or asks for a closed period's
// totals again (PreviousReconciliation with POIReconciliationID).
type ReconciliationRequest struct {
	Type                string
	POIReconciliationID string
	AcquirerIDs         []string
}

// ReconciliationResponse carries the period's id and totals. Differences
// found by an AcquirerSynchronisation travel in AdditionalResponse.
type ReconciliationResponse struct {
	Type                string
	POIReconciliationID string
	Totals              []TransactionTotals
}

// Ledger is the journal seen by reconciliation periods (Deps.Ledger).
type Ledger interface {
	// ScanPeriod calls fn, oldest first, for every entry begun in period id
	// (0: the period in progress) and returns the period's id. It reads each
	// entry once and keeps none.
	ScanPeriod(ctx context.Context, id uint64, fn func(JournalEntry) error) (uint64, error)
	// Original returns the payment entry whose POI transaction id is given
	// (what a Reversal names).
	Original(ctx context.Context, poiTransactionID string) (JournalEntry, bool, error)
	// OpenPeriod returns the id of the period in progress.
	OpenPeriod(ctx context.Context) (uint64, error)
	// ClosePeriod ends the period in progress after its newest entry and
	// returns its id. It fails with a Busy *Error while a transaction begun in
	// the period is unfinished, atomically with respect to Journal.Begin.
	ClosePeriod(ctx context.Context, at time.Time) (uint64, error)
}

// LedgerGaps is implemented by a Ledger whose journal may lose finished
// entries to a disk budget (the agent's journal_max_bytes): a period that
// lost some has its totals answered with AdditionalResponse
// "incomplete=N&evictedBefore=<time>" rather than silently under-counted.
type LedgerGaps interface {
	// PeriodGap returns how many entries period id lost (0: its totals are
	// complete) and when the newest of them began: entries begun after
	// that are all counted.
	PeriodGap(ctx context.Context, id uint64) (evicted int, before time.Time, err error)
}

// JournaledPayment is an approved payment of a period as the journal has it,
// for AcquirerSynchronisation.
type JournaledPayment struct {
	POITransactionID string
	// PlatformID is the platform's transaction id (the ApprovalCode).
	PlatformID string
	Brand      string
	Amount     Amount
	// Reversed is true when a later successful Reversal names the payment.
	Reversed bool
}

// Synchroniser compares a period's journaled payments with the platform's
// view and describes each difference in a line (Deps.Synchroniser).
type Synchroniser interface {
	Synchronise(ctx context.Context, start, end time.Time, payments []JournaledPayment) ([]string, error)
}

// maxTotalsGroups bounds the groups one GetTotals builds: group keys come
// from the POS, so their number must not grow without limit.
const maxTotalsGroups = 10000

// maxSyncPayments bounds the payments one AcquirerSynchronisation checks.
const maxSyncPayments = 100000

// totalsKey identifies one TransactionTotals.
type totalsKey struct {
	TotalsGroup
	instrument, brand, currency string
}

// Totals accumulates journal entries into TransactionTotals. The zero value
// is unusable; use NewTotals.
type Totals struct {
	details map[string]bool
	filter  TotalsGroup
	groups  map[totalsKey]map[string]*PaymentTotals
}

// NewTotals returns an empty accumulator grouping by details and keeping
// only entries matching filter (nil: all).
func NewTotals(details []string, filter *TotalsGroup) *Totals {
	t := &Totals{details: map[string]bool{}, groups: map[totalsKey]map[string]*PaymentTotals{}}
	for _, d := range details {
		t.details[d] = true
	}
	if filter != nil {
		t.filter = *filter
	}
	return t
}

// Add counts one journal entry: a successful Payment (Debit, or Credit for a
// refund) or Reversal (ReverseDebit or ReverseCredit of the original's
// amount, in the original's group). Anything else is ignored. original finds
// a Reversal's original payment.
func (t *Totals) Add(ctx context.Context, e JournalEntry, original func(ctx context.Context, poiTransactionID string) (JournalEntry, bool, error)) error {
	if e.State != TxDone || e.Response == nil {
		return nil
	}
	switch e.Category {
	case CategoryPayment:
		p, grp, ok := successfulPayment(e)
		if !ok {
			return nil
		}
		typ := TotalsDebit
		if p.Type == PaymentRefund {
			typ = TotalsCredit
		}
		return t.count(grp, p, typ)
	case CategoryReversal:
		resp := e.Response
		if resp.Reversal == nil || resp.Status.Result != Success || e.Request == nil || e.Request.Reversal == nil ||
			e.Request.Reversal.OriginalPOITransactionID.ID == "" {
			return nil
		}
		oe, found, err := original(ctx, e.Request.Reversal.OriginalPOITransactionID.ID)
		if err != nil {
			return fmt.Errorf("totals: original of reversal %s/%s: %w", e.SaleID, e.ServiceID, err)
		}
		if !found {
			return nil // pruned from the journal: nothing to net it against
		}
		p, grp, ok := successfulPayment(oe)
		if !ok {
			return nil
		}
		typ := TotalsReverseDebit
		if p.Type == PaymentRefund {
			typ = TotalsReverseCredit
		}
		if p, ok = partiallyReversed(p, wireDecimal(resp.Reversal.ReversedAmount)); !ok { // refunds: nexo/refund.go
			return nil
		}
		return t.count(grp, p, typ)
	}
	return nil
}

// successfulPayment reads an approved payment entry.
func successfulPayment(e JournalEntry) (*PaymentResult, TotalsGroup, bool) {
	resp := e.Response
	if resp == nil || resp.Payment == nil || resp.Status.Result != Success || resp.Payment.Result == nil {
		return nil, TotalsGroup{}, false
	}
	w := resp.Payment.Result
	res := &PaymentResult{Type: w.Type, InstrumentType: w.InstrumentType, Brand: w.Brand, AuthorizedAmount: w.AuthorizedAmount}
	g := TotalsGroup{POIID: resp.Header.POIID, SaleID: e.SaleID}
	if req := e.Request; req != nil && req.Payment != nil {
		if req.Header.POIID != "" {
			g.POIID = req.Header.POIID
		}
		g.OperatorID, g.ShiftNumber, g.TotalsGroupID = req.Payment.OperatorID, req.Payment.ShiftNumber, req.Payment.TotalsGroupID
	}
	return res, g, true
}

func (t *Totals) count(g TotalsGroup, p *PaymentResult, typ string) error {
	f := t.filter
	for _, c := range [][2]string{{f.POIID, g.POIID}, {f.SaleID, g.SaleID}, {f.OperatorID, g.OperatorID}, {f.ShiftNumber, g.ShiftNumber}, {f.TotalsGroupID, g.TotalsGroupID}} {
		if c[0] != "" && c[0] != c[1] {
			return nil
		}
	}
	var k totalsKey
	if t.details[DetailPOIID] {
		k.POIID = g.POIID
	}
	if t.details[DetailSaleID] {
		k.SaleID = g.SaleID
	}
	if t.details[DetailOperatorID] {
		k.OperatorID = g.OperatorID
	}
	if t.details[DetailShiftNumber] {
		k.ShiftNumber = g.ShiftNumber
	}
	if t.details[DetailTotalsGroupID] {
		k.TotalsGroupID = g.TotalsGroupID
	}
	k.instrument, k.brand, k.currency = p.InstrumentType, p.Brand, p.AuthorizedAmount.Currency
	if k.instrument == "" {
		k.instrument = InstrumentMobile
	}
	byType, ok := t.groups[k]
	if !ok {
		if len(t.groups) >= maxTotalsGroups {
			return Errorf(UnavailableService, "more than %d totals groups; ask for fewer TotalDetails", maxTotalsGroups)
		}
		byType = map[string]*PaymentTotals{}
		t.groups[k] = byType
	}
	pt, ok := byType[typ]
	if !ok {
		pt = &PaymentTotals{Type: typ}
		byType[typ] = pt
	}
	pt.Count++
	pt.Amount += p.AuthorizedAmount.Minor
	return nil
}

// Result returns the totals, in a stable order.
func (t *Totals) Result() []TransactionTotals {
	out := make([]TransactionTotals, 0, len(t.groups))
	for k, byType := range t.groups {
		tt := TransactionTotals{TotalsGroup: k.TotalsGroup, InstrumentType: k.instrument, Brand: k.brand, Currency: k.currency}
		for _, typ := range []string{TotalsDebit, TotalsCredit, TotalsReverseDebit, TotalsReverseCredit} {
			if p, ok := byType[typ]; ok {
				tt.Payments = append(tt.Payments, *p)
			}
		}
		out = append(out, tt)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		ka := []string{a.POIID, a.SaleID, a.OperatorID, a.ShiftNumber, a.TotalsGroupID, a.InstrumentType, a.Brand, a.Currency}
		kb := []string{b.POIID, b.SaleID, b.OperatorID, b.ShiftNumber, b.TotalsGroupID, b.InstrumentType, b.Brand, b.Currency}
		return strings.Join(ka, "\x00") < strings.Join(kb, "\x00")
	})
	return out
}

// reconciliationID renders a period id as a POIReconciliationID.
func reconciliationID(id uint64) string { return strconv.FormatUint(id, 10) }

func parseReconciliationID(field, s string) (uint64, *Error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, formatError(field, "not a POIReconciliationID: %q", s)
	}
	return id, nil
}

// periodTotals scans period id (0: in progress) into totals.
func periodTotals(ctx context.Context, l Ledger, id uint64, details []string, filter *TotalsGroup) (uint64, []TransactionTotals, error) {
	t := NewTotals(details, filter)
	got, err := l.ScanPeriod(ctx, id, func(e JournalEntry) error { return t.Add(ctx, e, l.Original) })
	if err != nil {
		return 0, nil, err
	}
	return got, t.Result(), nil
}

func (s *Server) getTotals(ctx context.Context, req *Request) *Response {
	if s.deps.Ledger == nil {
		return failureResponse(req.Header, Errorf(UnavailableService, "totals are not kept on this POI"))
	}
	g := req.GetTotals
	id, totals, err := periodTotals(ctx, s.deps.Ledger, 0, g.Details, g.Filter)
	if err != nil {
		s.log.Error("get totals", "err", err)
		return failureResponse(req.Header, asError(err, UnavailableService))
	}
	gap, err := s.periodGap(ctx, id) // after the scan: an eviction meanwhile is reported, never missed
	if err != nil {
		s.log.Error("get totals", "err", err)
		return failureResponse(req.Header, asError(err, UnavailableService))
	}
	return s.ok(req.Header, func(r *Response) {
		r.Status.AdditionalResponse = gap
		r.GetTotals = &GetTotalsResponse{POIReconciliationID: reconciliationID(id), Totals: totals}
	})
}

// periodGap is the AdditionalResponse text saying period id's totals are
// incomplete ("incomplete=N&evictedBefore=2026-12-01T08:00:00Z"), or "".
func (s *Server) periodGap(ctx context.Context, id uint64) (string, error) {
	lg, ok := s.deps.Ledger.(LedgerGaps)
	if !ok {
		return "", nil
	}
	n, before, err := lg.PeriodGap(ctx, id)
	if err != nil || n == 0 {
		return "", err
	}
	s.log.Warn("totals incomplete: entries of the period were evicted by the journal budget", "poi_reconciliation_id", id, "evicted", n, "begun_before", before)
	return "incomplete=" + strconv.Itoa(n) + "&evictedBefore=" + url.QueryEscape(formatTime(before)), nil
}

// allDetails groups a reconciliation's totals as finely as the journal can.
var allDetails = []string{DetailPOIID, DetailSaleID, DetailOperatorID, DetailShiftNumber, DetailTotalsGroupID}

func (s *Server) reconcile(ctx context.Context, req *Request) *Response {
	h, rr := req.Header, req.Reconciliation
	if s.deps.Ledger == nil {
		return failureResponse(h, Errorf(UnavailableService, "totals are not kept on this POI"))
	}
	fail := func(what string, err error) *Response {
		s.log.Error("reconciliation", "type", rr.Type, "step", what, "err", err)
		return failureResponse(h, asError(err, UnavailableService))
	}
	resp := &ReconciliationResponse{Type: rr.Type}
	var additional string
	switch rr.Type {
	case ReconSale:
		s.mu.Lock()
		busy := s.current != nil
		s.mu.Unlock()
		if busy {
			return failureResponse(h, Errorf(Busy, "a transaction is in progress; reconcile when it ends"))
		}
		id, err := s.deps.Ledger.ClosePeriod(ctx, s.now())
		if err != nil {
			return fail("close period", err)
		}
		_, totals, err := periodTotals(ctx, s.deps.Ledger, id, allDetails, nil)
		if err != nil {
			return fail("totals", err)
		}
		resp.POIReconciliationID, resp.Totals = reconciliationID(id), totals
		if additional, err = s.periodGap(ctx, id); err != nil {
			return fail("period gap", err)
		}
		s.log.Info("reconciliation period closed", "poi_reconciliation_id", id, "sale_id", h.SaleID)
	case ReconPrevious:
		id, e := parseReconciliationID("ReconciliationRequest.POIReconciliationID", rr.POIReconciliationID)
		if e != nil {
			return failureResponse(h, e)
		}
		_, totals, err := periodTotals(ctx, s.deps.Ledger, id, allDetails, nil)
		if err != nil {
			return fail("totals", err)
		}
		resp.POIReconciliationID, resp.Totals = reconciliationID(id), totals
		if additional, err = s.periodGap(ctx, id); err != nil {
			return fail("period gap", err)
		}
	case ReconAcquirerSynchronisation:
		if s.deps.Synchroniser == nil {
			return failureResponse(h, Errorf(UnavailableService, "no platform to synchronise with"))
		}
		t := NewTotals(allDetails, nil)
		var (
			payments   []JournaledPayment
			start, end time.Time
		)
		reversed := map[string]bool{}
		id, err := s.deps.Ledger.ScanPeriod(ctx, 0, func(e JournalEntry) error {
			if start.IsZero() || e.Started.Before(start) {
				start = e.Started
			}
			if e.Updated.After(end) {
				end = e.Updated
			}
			if err := t.Add(ctx, e, s.deps.Ledger.Original); err != nil {
				return err
			}
			return collectPayment(e, &payments, reversed)
		})
		if err != nil {
			return fail("scan period", err)
		}
		for i := range payments {
			payments[i].Reversed = reversed[payments[i].POITransactionID]
		}
		diffs, err := s.deps.Synchroniser.Synchronise(ctx, start, end, payments)
		if err != nil {
			return fail("synchronise", err)
		}
		resp.POIReconciliationID, resp.Totals = reconciliationID(id), t.Result()
		gap, err := s.periodGap(ctx, id)
		if err != nil {
			return fail("period gap", err)
		}
		if gap != "" {
			// The platform's view may list payments the journal lost:
			// differences, read with the gap.
			additional = differencesText(diffs, maxAdditionalResponse-len(gap)-1) + "&" + gap
		} else {
			additional = differencesText(diffs, maxAdditionalResponse)
		}
		if len(diffs) > 0 {
			s.log.Warn("acquirer synchronisation found differences", "poi_reconciliation_id", id, "differences", len(diffs))
		}
	default:
		return failureResponse(h, Errorf(UnavailableService, "ReconciliationType %s is not served (the platform settles APM payments; use AcquirerSynchronisation to compare)", rr.Type))
	}
	return s.ok(h, func(r *Response) {
		r.Status.AdditionalResponse = additional
		r.Reconciliation = resp
	})
}

// differencesText renders differences for AdditionalResponse:
// "differences=N&difference1=…&difference2=…", each difference cut to
// maxTextLen characters, as many as fit in limit bytes (ASCII: characters),
// then "&more=M" counting those left out, so the total stays honest.
func differencesText(diffs []string, limit int) string {
	var b strings.Builder
	b.WriteString("differences=" + strconv.Itoa(len(diffs)))
	reserve := len("&more=") + len(strconv.Itoa(len(diffs)))
	for i, d := range diffs {
		piece := "&difference" + strconv.Itoa(i+1) + "=" + url.QueryEscape(clip(d, maxTextLen))
		last := i == len(diffs)-1
		if b.Len()+len(piece) > limit || (!last && b.Len()+len(piece)+reserve > limit) {
			b.WriteString("&more=" + strconv.Itoa(len(diffs)-i))
			break
		}
		b.WriteString(piece)
	}
	return b.String()
}

// collectPayment notes an approved payment, or the payment a successful
// Reversal names, for AcquirerSynchronisation.
func collectPayment(e JournalEntry, payments *[]JournaledPayment, reversed map[string]bool) error {
	if e.State != TxDone {
		return nil
	}
	resp := e.Response
	if resp == nil || resp.Status.Result != Success {
		return nil
	}
	switch {
	case resp.Payment != nil && resp.Payment.Result != nil:
		if len(*payments) >= maxSyncPayments {
			return Errorf(UnavailableService, "more than %d payments in the period; reconcile more often", maxSyncPayments)
		}
		p := resp.Payment.Result
		*payments = append(*payments, JournaledPayment{
			POITransactionID: resp.Payment.POITransactionID.ID, PlatformID: p.ApprovalCode,
			Brand: p.Brand, Amount: p.AuthorizedAmount,
		})
	case resp.Reversal != nil:
		if len(reversed) < maxSyncPayments {
			reversed[resp.Reversal.OriginalPOITransactionID.ID] = true
		}
	}
	return nil
}

// withSessionLocked returns the request to journal: a payment without
// OperatorID, ShiftNumber or TotalsGroupID takes its Login's (Nexo: SaleData
// carries them only "if different from the Login"), so totals group it
// right. The duplicate check keeps using the request as sent. s.mu is held.
func (s *Server) withSessionLocked(req *Request) *Request {
	sess, ok := s.sessions.group(req.Header.SaleID)
	if !ok || req.Payment == nil {
		return req
	}
	p := *req.Payment
	if p.OperatorID == "" {
		p.OperatorID = sess.OperatorID
	}
	if p.ShiftNumber == "" {
		p.ShiftNumber = sess.ShiftNumber
	}
	if p.TotalsGroupID == "" {
		p.TotalsGroupID = sess.TotalsGroupID
	}
	c := *req
	c.Payment = &p
	return &c
}

// openPeriod is the POIReconciliationID a payment answered now is counted in
// (ClosePeriod waits for unfinished payments, so it is the one the payment
// began in); "" without a Ledger or when it cannot be read.
func (s *Server) openPeriod(ctx context.Context) string {
	if s.deps.Ledger == nil {
		return ""
	}
	id, err := s.deps.Ledger.OpenPeriod(context.WithoutCancel(ctx))
	if err != nil {
		s.log.Warn("reconciliation period unreadable", "err", err)
		return ""
	}
	return reconciliationID(id)
}
