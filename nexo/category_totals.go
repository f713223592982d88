package nexo

import "context"

// getTotalsCategory is GetTotals: the totals of the open reconciliation
// period, from the journal.
type getTotalsCategory struct{}

func (getTotalsCategory) name() MessageCategory { return CategoryGetTotals }
func (getTotalsCategory) traits() traits        { return traits{} }

func (getTotalsCategory) serve(ctx context.Context, s *Server, req *Request) *Response {
	return s.getTotals(ctx, req)
}

func (getTotalsCategory) requestFromWire(m *wireMessage, r *Request) (e *Error) {
	r.GetTotals, e = getTotalsFromWire(m.GetTotalsRequest)
	return e
}

func (getTotalsCategory) requestToWire(r *Request, m *wireMessage) (bool, error) {
	if r.GetTotals == nil {
		return false, nil
	}
	m.GetTotalsRequest = getTotalsToWire(r.GetTotals)
	return true, nil
}

func (getTotalsCategory) responseToWire(r *Response, m *wireMessage) error {
	w := &wireGetTotalsResponse{Response: statusToWire(r.Status)}
	if g := r.GetTotals; g != nil {
		tt, err := totalsToWire(g.Totals)
		if err != nil {
			return err
		}
		w.POIReconciliationID, w.TransactionTotals = g.POIReconciliationID, tt
	}
	m.GetTotalsResponse = w
	return nil
}

func (getTotalsCategory) responseFromWire(m *wireMessage, r *Response) *Error {
	w := m.GetTotalsResponse
	e := bodyStatusFromWire("GetTotalsResponse", w, r)
	if e != nil {
		return e
	}
	if w.POIReconciliationID != "" || len(w.TransactionTotals) > 0 {
		g := &GetTotalsResponse{POIReconciliationID: w.POIReconciliationID}
		if g.Totals, e = totalsFromWire("GetTotalsResponse", w.TransactionTotals); e != nil {
			return e
		}
		r.GetTotals = g
	}
	return nil
}

// reconciliationCategory is Reconciliation: closes (or reads) a
// reconciliation period and answers its totals.
type reconciliationCategory struct{}

func (reconciliationCategory) name() MessageCategory { return CategoryReconciliation }
func (reconciliationCategory) traits() traits        { return traits{} }

func (reconciliationCategory) serve(ctx context.Context, s *Server, req *Request) *Response {
	return s.reconcile(ctx, req)
}

func (reconciliationCategory) requestFromWire(m *wireMessage, r *Request) (e *Error) {
	r.Reconciliation, e = reconciliationFromWire(m.ReconciliationRequest)
	return e
}

func (reconciliationCategory) requestToWire(r *Request, m *wireMessage) (bool, error) {
	if r.Reconciliation == nil {
		return false, nil
	}
	m.ReconciliationRequest = reconciliationToWire(r.Reconciliation)
	return true, nil
}

func (reconciliationCategory) responseToWire(r *Response, m *wireMessage) error {
	w := &wireReconciliationResponse{Response: statusToWire(r.Status)}
	if c := r.Reconciliation; c != nil {
		tt, err := totalsToWire(c.Totals)
		if err != nil {
			return err
		}
		w.ReconciliationType, w.POIReconciliationID, w.TransactionTotals = c.Type, c.POIReconciliationID, tt
	}
	m.ReconciliationResponse = w
	return nil
}

func (reconciliationCategory) responseFromWire(m *wireMessage, r *Response) *Error {
	w := m.ReconciliationResponse
	e := bodyStatusFromWire("ReconciliationResponse", w, r)
	if e != nil {
		return e
	}
	if w.ReconciliationType != "" || w.POIReconciliationID != "" || len(w.TransactionTotals) > 0 {
		c := &ReconciliationResponse{Type: w.ReconciliationType, POIReconciliationID: w.POIReconciliationID}
		if c.Totals, e = totalsFromWire("ReconciliationResponse", w.TransactionTotals); e != nil {
			return e
		}
		r.Reconciliation = c
	}
	return nil
}
