package nexo

import "fmt"

// Nexo 3.x wire form of GetTotals and Reconciliation, and their mapping (see
// wire3.go and map3.go for the conventions).

type wireSaleTerminalData struct {
	TotalsGroupID string `json:",omitempty" xml:",attr,omitempty"`
}

type wireTotalFilter struct {
	POIID         string `json:",omitempty" xml:",attr,omitempty"`
	SaleID        string `json:",omitempty" xml:",attr,omitempty"`
	OperatorID    string `json:",omitempty" xml:",attr,omitempty"`
	ShiftNumber   string `json:",omitempty" xml:",attr,omitempty"`
	TotalsGroupID string `json:",omitempty" xml:",attr,omitempty"`
}

type wireGetTotalsRequest struct {
	TotalDetails []string         `json:",omitempty" xml:",omitempty"`
	TotalFilter  *wireTotalFilter `json:",omitempty" xml:",omitempty"`
}

type wirePaymentTotals struct {
	TransactionType   string      `json:",omitempty" xml:",attr,omitempty"`
	TransactionCount  int         `xml:",attr"`
	TransactionAmount wireDecimal `xml:",attr"`
}

type wireTransactionTotals struct {
	PaymentInstrumentType string              `json:",omitempty" xml:",attr,omitempty"`
	CardBrand             string              `json:",omitempty" xml:",attr,omitempty"`
	POIID                 string              `json:",omitempty" xml:",attr,omitempty"`
	SaleID                string              `json:",omitempty" xml:",attr,omitempty"`
	OperatorID            string              `json:",omitempty" xml:",attr,omitempty"`
	ShiftNumber           string              `json:",omitempty" xml:",attr,omitempty"`
	TotalsGroupID         string              `json:",omitempty" xml:",attr,omitempty"`
	PaymentCurrency       string              `json:",omitempty" xml:",attr,omitempty"`
	PaymentTotals         []wirePaymentTotals `json:",omitempty" xml:",omitempty"`
}

type wireGetTotalsResponse struct {
	Response            *wireResponse           `json:",omitempty" xml:",omitempty"`
	POIReconciliationID string                  `json:",omitempty" xml:",attr,omitempty"`
	TransactionTotals   []wireTransactionTotals `json:",omitempty" xml:",omitempty"`
}

type wireReconciliationRequest struct {
	ReconciliationType  string   `json:",omitempty" xml:",attr,omitempty"`
	POIReconciliationID string   `json:",omitempty" xml:",attr,omitempty"`
	AcquirerID          []string `json:",omitempty" xml:",omitempty"`
}

type wireReconciliationResponse struct {
	Response            *wireResponse           `json:",omitempty" xml:",omitempty"`
	ReconciliationType  string                  `json:",omitempty" xml:",attr,omitempty"`
	POIReconciliationID string                  `json:",omitempty" xml:",attr,omitempty"`
	TransactionTotals   []wireTransactionTotals `json:",omitempty" xml:",omitempty"`
}

// maxTotalDetails bounds TotalDetails (there are five values; a list
// repeating them is refused rather than processed).
const maxTotalDetails = 5

func getTotalsFromWire(w *wireGetTotalsRequest) (*GetTotalsRequest, *Error) {
	const f = "GetTotalsRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	if len(w.TotalDetails) > maxTotalDetails {
		return nil, formatError(f+".TotalDetails", "more than %d values", maxTotalDetails)
	}
	g := &GetTotalsRequest{}
	for _, d := range w.TotalDetails {
		switch d {
		case DetailPOIID, DetailSaleID, DetailOperatorID, DetailShiftNumber, DetailTotalsGroupID:
			g.Details = append(g.Details, d)
		default:
			return nil, formatError(f+".TotalDetails", "invalid value %q (POIID, SaleID, OperatorID, ShiftNumber or TotalsGroupID)", d)
		}
	}
	if tf := w.TotalFilter; tf != nil {
		g.Filter = &TotalsGroup{POIID: tf.POIID, SaleID: tf.SaleID, OperatorID: tf.OperatorID, ShiftNumber: tf.ShiftNumber, TotalsGroupID: tf.TotalsGroupID}
	}
	return g, nil
}

func getTotalsToWire(g *GetTotalsRequest) *wireGetTotalsRequest {
	w := &wireGetTotalsRequest{TotalDetails: g.Details}
	if f := g.Filter; f != nil {
		w.TotalFilter = &wireTotalFilter{POIID: f.POIID, SaleID: f.SaleID, OperatorID: f.OperatorID, ShiftNumber: f.ShiftNumber, TotalsGroupID: f.TotalsGroupID}
	}
	return w
}

func reconciliationFromWire(w *wireReconciliationRequest) (*ReconciliationRequest, *Error) {
	const f = "ReconciliationRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	switch w.ReconciliationType {
	case ReconSale, ReconAcquirerSynchronisation, ReconAcquirer, ReconPrevious:
	case "":
		return nil, formatError(f+".ReconciliationType", "missing")
	default:
		return nil, formatError(f+".ReconciliationType", "invalid value %q", w.ReconciliationType)
	}
	switch {
	case w.ReconciliationType == ReconPrevious && w.POIReconciliationID == "":
		return nil, formatError(f+".POIReconciliationID", "missing (PreviousReconciliation names the period)")
	case w.ReconciliationType != ReconPrevious && w.POIReconciliationID != "":
		return nil, formatError(f+".POIReconciliationID", "only with PreviousReconciliation")
	}
	if len(w.AcquirerID) > 16 {
		return nil, formatError(f+".AcquirerID", "more than 16 values")
	}
	return &ReconciliationRequest{Type: w.ReconciliationType, POIReconciliationID: w.POIReconciliationID, AcquirerIDs: w.AcquirerID}, nil
}

func reconciliationToWire(r *ReconciliationRequest) *wireReconciliationRequest {
	return &wireReconciliationRequest{ReconciliationType: r.Type, POIReconciliationID: r.POIReconciliationID, AcquirerID: r.AcquirerIDs}
}

func totalsToWire(ts []TransactionTotals) ([]wireTransactionTotals, error) {
	var out []wireTransactionTotals
	for _, t := range ts {
		w := wireTransactionTotals{
			PaymentInstrumentType: t.InstrumentType, CardBrand: t.Brand, POIID: t.POIID, SaleID: t.SaleID,
			OperatorID: t.OperatorID, ShiftNumber: t.ShiftNumber, TotalsGroupID: t.TotalsGroupID, PaymentCurrency: t.Currency,
		}
		for _, p := range t.Payments {
			amt, err := formatAmount(p.Amount, t.Currency)
			if err != nil {
				return nil, fmt.Errorf("encode TransactionTotals: %w", err)
			}
			w.PaymentTotals = append(w.PaymentTotals, wirePaymentTotals{TransactionType: p.Type, TransactionCount: p.Count, TransactionAmount: wireDecimal(amt)})
		}
		out = append(out, w)
	}
	return out, nil
}

func totalsFromWire(field string, ws []wireTransactionTotals) ([]TransactionTotals, *Error) {
	var out []TransactionTotals
	for i, w := range ws {
		f := fmt.Sprintf("%s.TransactionTotals[%d]", field, i)
		t := TransactionTotals{
			TotalsGroup:    TotalsGroup{POIID: w.POIID, SaleID: w.SaleID, OperatorID: w.OperatorID, ShiftNumber: w.ShiftNumber, TotalsGroupID: w.TotalsGroupID},
			InstrumentType: w.PaymentInstrumentType, Brand: w.CardBrand, Currency: w.PaymentCurrency,
		}
		for j, p := range w.PaymentTotals {
			minor, e := parseAmount(fmt.Sprintf("%s.PaymentTotals[%d].TransactionAmount", f, j), string(p.TransactionAmount), w.PaymentCurrency)
			if e != nil {
				return nil, e
			}
			t.Payments = append(t.Payments, PaymentTotals{Type: p.TransactionType, Count: p.TransactionCount, Amount: minor})
		}
		out = append(out, t)
	}
	return out, nil
}

func saleTerminalTotalsGroup(w *wireSaleTerminalData) string {
	if w == nil {
		return ""
	}
	return w.TotalsGroupID
}

func saleTerminalDataToWire(totalsGroupID string) *wireSaleTerminalData {
	if totalsGroupID == "" {
		return nil
	}
	return &wireSaleTerminalData{TotalsGroupID: totalsGroupID}
}
