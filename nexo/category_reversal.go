package nexo

import "context"

// reversalCategory is Reversal: a journaled transaction that reverses one
// of the caller's payments.
type reversalCategory struct{}

func (reversalCategory) name() MessageCategory { return CategoryReversal }
func (reversalCategory) traits() traits        { return traits{} }

func (reversalCategory) serve(ctx context.Context, s *Server, req *Request) *Response {
	return s.transact(ctx, req)
}

// failure names the payment reversed and the reversal's POI transaction.
func (reversalCategory) failure(r *Response, req *Request, poiID TransactionID) {
	r.Reversal = &ReversalResponse{POITransactionID: poiID}
	if req.Reversal != nil {
		r.Reversal.OriginalPOITransactionID = req.Reversal.OriginalPOITransactionID
	}
}

func (reversalCategory) requestFromWire(m *wireMessage, r *Request) (e *Error) {
	r.Reversal, e = reversalFromWire(m.ReversalRequest)
	return e
}

func (reversalCategory) requestToWire(r *Request, m *wireMessage) (bool, error) {
	if r.Reversal == nil {
		return false, nil
	}
	m.ReversalRequest = &wireReversalRequest{
		ReversalReason: r.Reversal.Reason,
		OriginalPOITransaction: &wireOriginalPOITransaction{
			SaleID:           r.Reversal.OriginalSaleID,
			POITransactionID: transactionIDToWire(r.Reversal.OriginalPOITransactionID),
		},
	}
	return true, nil
}

func (reversalCategory) responseToWire(r *Response, m *wireMessage) error {
	m.ReversalResponse = reversalResponseToWire(r.Status, r.Reversal)
	return nil
}

func (reversalCategory) responseFromWire(m *wireMessage, r *Response) *Error {
	e := bodyStatusFromWire("ReversalResponse", m.ReversalResponse, r)
	if e != nil {
		return e
	}
	r.Reversal, e = reversalResponseFromWire(m.ReversalResponse)
	return e
}

func (reversalCategory) request5FromWire(m *wire5Message, r *Request) (e *Error) {
	r.Reversal, e = reversal5FromWire(m.ServiceRequest.ReversalRequest)
	return e
}

func reversalFromWire(w *wireReversalRequest) (*ReversalRequest, *Error) {
	const f = "ReversalRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	if w.OriginalPOITransaction == nil {
		return nil, formatError(f+".OriginalPOITransaction", "missing")
	}
	id, e := transactionIDFromWire(f+".OriginalPOITransaction.POITransactionID", w.OriginalPOITransaction.POITransactionID, false)
	if e != nil {
		return nil, e
	}
	switch w.ReversalReason {
	case "CustCancel", "MerchantCancel", "Malfunction", "Unable2Compl":
	case "":
		return nil, formatError(f+".ReversalReason", "missing")
	default:
		return nil, formatError(f+".ReversalReason", "invalid value %q", clip(w.ReversalReason, 32))
	}
	if e := checkLens(maxRefLen, f+".OriginalPOITransaction.SaleID", w.OriginalPOITransaction.SaleID, f+".OriginalPOITransaction.POIID", w.OriginalPOITransaction.POIID); e != nil {
		return nil, e
	}
	return &ReversalRequest{OriginalPOITransactionID: id, OriginalSaleID: w.OriginalPOITransaction.SaleID, Reason: w.ReversalReason}, nil
}

func reversalResponseToWire(s ResponseStatus, r *ReversalResponse) *wireReversalResponse {
	w := &wireReversalResponse{Response: statusToWire(s)}
	if r == nil {
		return w
	}
	if id := transactionIDToWire(r.POITransactionID); id != nil {
		w.POIData = &wirePOIData{POITransactionID: id}
	}
	if id := transactionIDToWire(r.OriginalPOITransactionID); id != nil {
		w.OriginalPOITransaction = &wireOriginalPOITransaction{POITransactionID: id}
	}
	return w
}

func reversalResponseFromWire(w *wireReversalResponse) (*ReversalResponse, *Error) {
	r := &ReversalResponse{}
	var e *Error
	if w.POIData != nil && w.POIData.POITransactionID != nil {
		if r.POITransactionID, e = transactionIDFromWire("ReversalResponse.POIData.POITransactionID", w.POIData.POITransactionID, false); e != nil {
			return nil, e
		}
	}
	if o := w.OriginalPOITransaction; o != nil && o.POITransactionID != nil {
		if r.OriginalPOITransactionID, e = transactionIDFromWire("ReversalResponse.OriginalPOITransaction.POITransactionID", o.POITransactionID, false); e != nil {
			return nil, e
		}
	}
	return r, nil
}

func (reversalCategory) request5ToWire(r *Request, m *wire5Message) (string, error) {
	if r.Reversal == nil {
		return "", nil
	}
	m.ServiceRequest = &wire5ServiceRequest{ServiceContent: svcReversalRequest, ReversalRequest: &wire5ReversalRequest{
		ReversalReason: r.Reversal.Reason,
		OriginalTransaction: &wire5OriginalTransaction{
			SaleIdentification:           r.Reversal.OriginalSaleID,
			POITransactionIdentification: txID5ToWire(r.Reversal.OriginalPOITransactionID),
		},
	}}
	return root5ServiceRequest, nil
}

func (reversalCategory) response5ToWire(r *Response, m *wire5Message) (string, error) {
	m.ServiceResponse = &wire5ServiceResponse{Response: status5ToWire(r.Status), ServiceContent: svcReversalResponse, ReversalResponse: reversalResponse5ToWire(r.Reversal)}
	return root5ServiceResponse, nil
}

// The 3.x wire form (wire3.go has the conventions).

type wireReversalRequest struct {
	ReversalReason         string                      `json:",omitempty" xml:",attr,omitempty"`
	OriginalPOITransaction *wireOriginalPOITransaction `json:",omitempty" xml:",omitempty"`
}

type wireOriginalPOITransaction struct {
	SaleID           string             `json:",omitempty" xml:",attr,omitempty"`
	POIID            string             `json:",omitempty" xml:",attr,omitempty"`
	POITransactionID *wireTransactionID `json:",omitempty" xml:",omitempty"`
}

type wireReversalResponse struct {
	Response               *wireResponse               `json:",omitempty" xml:",omitempty"`
	POIData                *wirePOIData                `json:",omitempty" xml:",omitempty"`
	OriginalPOITransaction *wireOriginalPOITransaction `json:",omitempty" xml:",omitempty"`
}
