package world

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/termagent/termagent/nexo"
)

// Totals asks the POI for the totals of the reconciliation period in
// progress, grouped by details (nexo.Detail* values).
func (p *POS) Totals(ctx context.Context, details []string, filter *nexo.TotalsGroup) (*nexo.Response, error) {
	return p.Client.Do(ctx, &nexo.Request{Header: p.header(nexo.CategoryGetTotals, ""), GetTotals: &nexo.GetTotalsRequest{Details: details, Filter: filter}})
}

// Reconcile sends a Reconciliation of type typ (nexo.Recon* values); id names
// the period of a PreviousReconciliation.
func (p *POS) Reconcile(ctx context.Context, typ, id string) (*nexo.Response, error) {
	return p.Client.Do(ctx, &nexo.Request{Header: p.header(nexo.CategoryReconciliation, ""), Reconciliation: &nexo.ReconciliationRequest{Type: typ, POIReconciliationID: id}})
}

// describeTotals renders totals for people, one line per group with its net.
func describeTotals(id string, ts []nexo.TransactionTotals) string {
	s := "\n  POI reconciliation period: " + id
	if len(ts) == 0 {
		return s + "\n  no transactions"
	}
	for _, t := range ts {
		var grp []string
		for _, kv := range [][2]string{{"POIID", t.POIID}, {"SaleID", t.SaleID}, {"operator", t.OperatorID}, {"shift", t.ShiftNumber}, {"group", t.TotalsGroupID}} {
			if kv[1] != "" {
				grp = append(grp, kv[0]+" "+kv[1])
			}
		}
		brand := t.Brand
		if brand == "" {
			brand = "(no brand)"
		}
		s += fmt.Sprintf("\n  %s %s %s", t.InstrumentType, brand, t.Currency)
		if len(grp) > 0 {
			s += " [" + strings.Join(grp, ", ") + "]"
		}
		for _, pt := range t.Payments {
			s += fmt.Sprintf("\n    %-13s %4d  %s", pt.Type, pt.Count, nexo.Amount{Minor: pt.Amount, Currency: t.Currency})
		}
		s += fmt.Sprintf("\n    %-13s       %s", "net", nexo.Amount{Minor: t.Net(), Currency: t.Currency})
	}
	return s
}

// ShowQR asks the POI to show a QR code (DisplayRequest, OutputFormat
// BarCode) with a line of text on the customer display.
func (p *POS) ShowQR(ctx context.Context, text, payload string) (*nexo.Response, error) {
	h := p.header(nexo.CategoryDisplay, "")
	h.Class = nexo.ClassDevice
	out := nexo.DisplayOutput{Device: "CustomerDisplay", InfoQualify: "Display", QRCode: payload}
	if text != "" {
		out.Text = []string{text}
	}
	return p.Client.Do(ctx, &nexo.Request{Header: h, Display: &nexo.DisplayRequest{Outputs: []nexo.DisplayOutput{out}}})
}

// Receipt asks the POI to reprint the receipts of the payment started with
// serviceID ([SALE-ID/]SERVICE-ID, as for Status): a TransactionStatus with
// DocumentQualifier CashierReceipt and CustomerReceipt.
func (p *POS) Receipt(ctx context.Context, serviceID string) (*nexo.Response, error) {
	h := p.header(nexo.CategoryTransactionStatus, "")
	saleID, serviceID := splitRef(serviceID, h.SaleID)
	return p.Client.Do(ctx, &nexo.Request{Header: h, TransactionStatus: &nexo.TransactionStatusRequest{
		MessageReference:   &nexo.MessageReference{Category: nexo.CategoryPayment, ServiceID: serviceID, SaleID: saleID, POIID: p.POIID},
		DocumentQualifiers: []string{nexo.CashierReceipt, nexo.CustomerReceipt},
	}})
}

// describeReceipts renders receipts as printed text.
func describeReceipts(rs []nexo.PaymentReceipt) string {
	var s string
	for _, r := range rs {
		s += "\n  --- " + r.DocumentQualifier + " ---"
		for _, l := range r.Lines {
			s += "\n  " + l
		}
	}
	return s
}

// checkDayEnd lists how a GetTotals, Reconciliation or receipt reprint
// differs from a scenario's Expect (see Expect.Net).
func checkDayEnd(e *Expect, resp *nexo.Response) []string {
	var (
		problems []string
		id       string
		totals   []nexo.TransactionTotals
	)
	switch {
	case resp.GetTotals != nil:
		id, totals = resp.GetTotals.POIReconciliationID, resp.GetTotals.Totals
	case resp.Reconciliation != nil:
		id, totals = resp.Reconciliation.POIReconciliationID, resp.Reconciliation.Totals
	}
	if e.ReconciliationID != "" && id != e.ReconciliationID {
		problems = append(problems, fmt.Sprintf("reconciliationId is %q, want %q", id, e.ReconciliationID))
	}
	if e.Net != "" {
		byCurrency := map[string]int64{}
		for _, t := range totals {
			byCurrency[t.Currency] += t.Net()
		}
		var parts []string
		for c, n := range byCurrency {
			parts = append(parts, nexo.Amount{Minor: n, Currency: c}.String())
		}
		sort.Strings(parts)
		got := strings.Join(parts, ", ")
		if got == "" {
			got = "none"
		}
		if got != e.Net {
			problems = append(problems, fmt.Sprintf("net is %q, want %q", got, e.Net))
		}
	}
	if e.Receipts != 0 {
		n := 0
		if ts := resp.TransactionStatus; ts != nil && ts.Repeated != nil && ts.Repeated.Payment != nil {
			n = len(ts.Repeated.Payment.Receipts)
		}
		if ts := resp.TransactionStatus; ts != nil && ts.Repeated != nil && ts.Repeated.Reversal != nil { // refunds
			n = len(ts.Repeated.Reversal.Receipts)
		}
		if n != e.Receipts {
			problems = append(problems, fmt.Sprintf("receipts are %d, want %d", n, e.Receipts))
		}
	}
	return problems
}
