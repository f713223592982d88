package nexo

import (
	"context"
	"fmt"
)

// paymentCategory is Payment (Normal and Refund): a journaled transaction
// run by the PaymentEngine.
type paymentCategory struct{}

func (paymentCategory) name() MessageCategory { return CategoryPayment }
func (paymentCategory) traits() traits        { return traits{} }

func (paymentCategory) serve(ctx context.Context, s *Server, req *Request) *Response {
	return s.transact(ctx, req)
}

// failure names the sale's and the POI's transaction, as every
// PaymentResponse must.
func (paymentCategory) failure(r *Response, req *Request, poiID TransactionID) {
	r.Payment = &PaymentResponse{POITransactionID: poiID}
	if req.Payment != nil {
		r.Payment.SaleTransactionID = req.Payment.SaleTransactionID
	}
}

func (paymentCategory) requestFromWire(m *wireMessage, r *Request) (e *Error) {
	r.Payment, e = paymentFromWire(m.PaymentRequest)
	return e
}

func (paymentCategory) requestToWire(r *Request, m *wireMessage) (bool, error) {
	if r.Payment == nil {
		return false, nil
	}
	w, err := paymentRequestToWire(r.Payment)
	if err != nil {
		return false, fmt.Errorf("encode PaymentRequest: %w", err)
	}
	m.PaymentRequest = w
	return true, nil
}

func (paymentCategory) responseToWire(r *Response, m *wireMessage) error {
	w, err := paymentResponseToWire(r.Status, r.Payment)
	if err != nil {
		return err
	}
	m.PaymentResponse = w
	return nil
}

func (paymentCategory) responseFromWire(m *wireMessage, r *Response) *Error {
	e := bodyStatusFromWire("PaymentResponse", m.PaymentResponse, r)
	if e != nil {
		return e
	}
	r.Payment, e = paymentResponseFromWire(m.PaymentResponse)
	return e
}

func (paymentCategory) request5FromWire(m *wire5Message, r *Request) (e *Error) {
	r.Payment, e = payment5FromWire(m.ServiceRequest.PaymentRequest)
	return e
}

func paymentFromWire(w *wirePaymentRequest) (*PaymentRequest, *Error) {
	const f = "PaymentRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	if w.SaleData == nil {
		return nil, formatError(f+".SaleData", "missing")
	}
	stid, e := transactionIDFromWire(f+".SaleData.SaleTransactionID", w.SaleData.SaleTransactionID, true)
	if e != nil {
		return nil, e
	}
	if w.PaymentTransaction == nil {
		return nil, formatError(f+".PaymentTransaction", "missing")
	}
	ar := w.PaymentTransaction.AmountsReq
	if ar == nil {
		return nil, formatError(f+".PaymentTransaction.AmountsReq", "missing")
	}
	if ar.Currency == "" {
		return nil, formatError(f+".PaymentTransaction.AmountsReq.Currency", "missing")
	}
	if _, ok := CurrencyExponent(ar.Currency); !ok {
		return nil, formatError(f+".PaymentTransaction.AmountsReq.Currency", "unknown currency %q", clip(ar.Currency, 8))
	}
	if e := checkLen(f+".PaymentTransaction.AmountsReq.RequestedAmount", string(ar.RequestedAmount), 32); e != nil {
		return nil, e
	}
	if e := checkLens(maxRefLen, f+".SaleData.SaleReferenceID", w.SaleData.SaleReferenceID, f+".SaleData.OperatorID", w.SaleData.OperatorID); e != nil {
		return nil, e
	}
	minor, e := parseAmount(f+".PaymentTransaction.AmountsReq.RequestedAmount", string(ar.RequestedAmount), ar.Currency)
	if e != nil {
		return nil, e
	}
	if minor == 0 {
		return nil, formatError(f+".PaymentTransaction.AmountsReq.RequestedAmount", "must be greater than zero")
	}
	p := &PaymentRequest{
		SaleTransactionID: stid,
		SaleReferenceID:   w.SaleData.SaleReferenceID,
		OperatorID:        w.SaleData.OperatorID,
		ShiftNumber:       w.SaleData.ShiftNumber,
		TotalsGroupID:     saleTerminalTotalsGroup(w.SaleData.SaleTerminalData),
		Type:              PaymentNormal,
		Amount:            Amount{Minor: minor, Currency: ar.Currency},
	}
	if tc := w.PaymentTransaction.TransactionConditions; tc != nil {
		for _, b := range tc.AllowedPaymentBrand {
			if b == "" {
				return nil, formatError(f+".PaymentTransaction.TransactionConditions.AllowedPaymentBrand", "empty brand")
			}
		}
		if e := checkList(f+".PaymentTransaction.TransactionConditions.AllowedPaymentBrand", tc.AllowedPaymentBrand, maxRefLen); e != nil {
			return nil, e
		}
		p.AllowedBrands = tc.AllowedPaymentBrand
	}
	if pd := w.PaymentData; pd != nil {
		switch PaymentType(pd.PaymentType) {
		case "":
		case PaymentNormal, PaymentRefund:
			p.Type = PaymentType(pd.PaymentType)
		default:
			return nil, formatError(f+".PaymentData.PaymentType", "unsupported value %q (Normal or Refund)", clip(pd.PaymentType, 32))
		}
		if pid := pd.PaymentInstrumentData; pid != nil {
			if e := checkLen(f+".PaymentData.PaymentInstrumentData.PaymentInstrumentType", pid.PaymentInstrumentType, maxRefLen); e != nil {
				return nil, e
			}
			p.InstrumentType = pid.PaymentInstrumentType
			if p.ScannedCode, e = scannedCodeFromWire(f+".PaymentData.PaymentInstrumentData.CardData", pid.CardData); e != nil { // nexo/scan.go
				return nil, e
			}
		}
	}
	if e := refundFromWire(f, w.PaymentData, p); e != nil { // nexo/refund.go
		return nil, e
	}
	return p, nil
}

func paymentRequestToWire(p *PaymentRequest) (*wirePaymentRequest, error) {
	amt, err := formatAmount(p.Amount.Minor, p.Amount.Currency)
	if err != nil {
		return nil, err
	}
	w := &wirePaymentRequest{
		SaleData: &wireSaleData{
			OperatorID:        p.OperatorID,
			ShiftNumber:       p.ShiftNumber,
			SaleReferenceID:   p.SaleReferenceID,
			SaleTransactionID: transactionIDToWire(p.SaleTransactionID),
			SaleTerminalData:  saleTerminalDataToWire(p.TotalsGroupID),
		},
		PaymentTransaction: &wirePaymentTransaction{
			AmountsReq: &wireAmountsReq{Currency: p.Amount.Currency, RequestedAmount: wireDecimal(amt)},
		},
	}
	if len(p.AllowedBrands) > 0 {
		w.PaymentTransaction.TransactionConditions = &wireTransactionConditions{AllowedPaymentBrand: p.AllowedBrands}
	}
	if p.Type != "" || p.InstrumentType != "" || p.ScannedCode != "" {
		w.PaymentData = &wirePaymentData{PaymentType: string(p.Type)}
		if p.InstrumentType != "" || p.ScannedCode != "" {
			w.PaymentData.PaymentInstrumentData = &wirePaymentInstrumentData{PaymentInstrumentType: p.InstrumentType, CardData: scannedCodeToWire(p.ScannedCode)}
		}
	}
	refundToWire(p, w) // nexo/refund.go
	return w, nil
}

func paymentResponseToWire(s ResponseStatus, p *PaymentResponse) (*wirePaymentResponse, error) {
	w := &wirePaymentResponse{Response: statusToWire(s)}
	if p == nil {
		return w, nil
	}
	if id := transactionIDToWire(p.SaleTransactionID); id != nil {
		w.SaleData = &wireSaleData{SaleTransactionID: id}
	}
	if id := transactionIDToWire(p.POITransactionID); id != nil || p.POIReconciliationID != "" {
		w.POIData = &wirePOIData{POITransactionID: id, POIReconciliationID: p.POIReconciliationID}
	}
	if r := p.Result; r != nil {
		pr := &wirePaymentResult{PaymentType: string(r.Type)}
		if r.Brand != "" || r.InstrumentType != "" {
			pr.PaymentInstrumentData = &wirePaymentInstrumentData{PaymentInstrumentType: r.InstrumentType}
			if r.Brand != "" {
				pr.PaymentInstrumentData.CardData = &wireCardData{PaymentBrand: r.Brand}
			}
		}
		if r.AuthorizedAmount.Currency != "" {
			amt, err := formatAmount(r.AuthorizedAmount.Minor, r.AuthorizedAmount.Currency)
			if err != nil {
				return nil, fmt.Errorf("encode AuthorizedAmount: %w", err)
			}
			pr.AmountsResp = &wireAmountsResp{Currency: r.AuthorizedAmount.Currency, AuthorizedAmount: wireDecimal(amt)}
		}
		if r.AcquirerID != "" || r.ProviderReference != "" || r.ApprovalCode != "" || r.MerchantID != "" || r.AcquirerPOIID != "" {
			pr.PaymentAcquirerData = &wirePaymentAcquirerData{
				AcquirerID: r.AcquirerID, MerchantID: r.MerchantID, AcquirerPOIID: r.AcquirerPOIID, ApprovalCode: r.ApprovalCode,
				AcquirerTransactionID: transactionIDToWire(TransactionID{ID: r.ProviderReference}),
			}
		}
		w.PaymentResult = pr
	}
	w.PaymentReceipt = receiptsToWire(p.Receipts)
	return w, nil
}

func paymentResponseFromWire(w *wirePaymentResponse) (*PaymentResponse, *Error) {
	const f = "PaymentResponse"
	p := &PaymentResponse{}
	var e *Error
	if w.SaleData != nil && w.SaleData.SaleTransactionID != nil {
		if p.SaleTransactionID, e = transactionIDFromWire(f+".SaleData.SaleTransactionID", w.SaleData.SaleTransactionID, false); e != nil {
			return nil, e
		}
	}
	if w.POIData != nil && w.POIData.POITransactionID != nil {
		if p.POITransactionID, e = transactionIDFromWire(f+".POIData.POITransactionID", w.POIData.POITransactionID, false); e != nil {
			return nil, e
		}
	}
	if w.POIData != nil {
		p.POIReconciliationID = w.POIData.POIReconciliationID
	}
	if r := w.PaymentResult; r != nil {
		pr := &PaymentResult{Type: PaymentType(r.PaymentType), POITransactionID: p.POITransactionID}
		if pid := r.PaymentInstrumentData; pid != nil {
			pr.InstrumentType = pid.PaymentInstrumentType
			if pid.CardData != nil {
				pr.Brand = pid.CardData.PaymentBrand
			}
		}
		if a := r.AmountsResp; a != nil {
			minor, e := parseAmount(f+".PaymentResult.AmountsResp.AuthorizedAmount", string(a.AuthorizedAmount), a.Currency)
			if e != nil {
				return nil, e
			}
			pr.AuthorizedAmount = Amount{Minor: minor, Currency: a.Currency}
		}
		if ad := r.PaymentAcquirerData; ad != nil {
			pr.AcquirerID, pr.ApprovalCode = ad.AcquirerID, ad.ApprovalCode
			pr.MerchantID, pr.AcquirerPOIID = ad.MerchantID, ad.AcquirerPOIID
			if ad.AcquirerTransactionID != nil {
				pr.ProviderReference = ad.AcquirerTransactionID.TransactionID
			}
		}
		p.Result = pr
	}
	p.Receipts = receiptsFromWire(w.PaymentReceipt)
	return p, nil
}

func (paymentCategory) request5ToWire(r *Request, m *wire5Message) (string, error) {
	if r.Payment == nil {
		return "", nil
	}
	p, err := payment5ToWire(r.Payment)
	if err != nil {
		return "", fmt.Errorf("encode PaymentRequest: %w", err)
	}
	m.ServiceRequest = &wire5ServiceRequest{ServiceContent: svcPaymentRequest, PaymentRequest: p}
	return root5ServiceRequest, nil
}

func (paymentCategory) response5ToWire(r *Response, m *wire5Message) (string, error) {
	p, err := paymentResponse5ToWire(r.Payment)
	if err != nil {
		return "", err
	}
	m.ServiceResponse = &wire5ServiceResponse{Response: status5ToWire(r.Status), ServiceContent: svcPaymentResponse, PaymentResponse: p}
	return root5ServiceResponse, nil
}

// The 3.x wire form (wire3.go has the conventions).

type wirePaymentRequest struct {
	SaleData           *wireSaleData           `json:",omitempty" xml:",omitempty"`
	PaymentTransaction *wirePaymentTransaction `json:",omitempty" xml:",omitempty"`
	PaymentData        *wirePaymentData        `json:",omitempty" xml:",omitempty"`
}

type wireSaleData struct {
	OperatorID        string                `json:",omitempty" xml:",attr,omitempty"`
	ShiftNumber       string                `json:",omitempty" xml:",attr,omitempty"`
	SaleReferenceID   string                `json:",omitempty" xml:",attr,omitempty"`
	SaleTransactionID *wireTransactionID    `json:",omitempty" xml:",omitempty"`
	SaleTerminalData  *wireSaleTerminalData `json:",omitempty" xml:",omitempty"`
}

type wirePaymentTransaction struct {
	AmountsReq            *wireAmountsReq            `json:",omitempty" xml:",omitempty"`
	TransactionConditions *wireTransactionConditions `json:",omitempty" xml:",omitempty"`
}

type wireAmountsReq struct {
	Currency        string      `json:",omitempty" xml:",attr,omitempty"`
	RequestedAmount wireDecimal `json:",omitempty" xml:",attr,omitempty"`
}

type wireTransactionConditions struct {
	AllowedPaymentBrand []string `json:",omitempty" xml:",omitempty"`
}

type wirePaymentData struct {
	PaymentType           string                     `json:",omitempty" xml:",attr,omitempty"`
	PaymentInstrumentData *wirePaymentInstrumentData `json:",omitempty" xml:",omitempty"`
	// Refunds (nexo/refund.go).
	OriginalPOITransaction *wireOriginalPOITransaction `json:",omitempty" xml:",omitempty"`
}

type wirePaymentInstrumentData struct {
	PaymentInstrumentType string        `json:",omitempty" xml:",attr,omitempty"`
	CardData              *wireCardData `json:",omitempty" xml:",omitempty"`
}

type wireCardData struct {
	PaymentBrand string `json:",omitempty" xml:",attr,omitempty"`
	// A consumer-presented code (nexo/scan.go).
	EntryMode    wireList          `json:",omitempty" xml:",attr,omitempty"`
	PaymentToken *wirePaymentToken `json:",omitempty" xml:",omitempty"`
}

type wirePaymentResponse struct {
	Response       *wireResponse        `json:",omitempty" xml:",omitempty"`
	SaleData       *wireSaleData        `json:",omitempty" xml:",omitempty"`
	POIData        *wirePOIData         `json:",omitempty" xml:",omitempty"`
	PaymentResult  *wirePaymentResult   `json:",omitempty" xml:",omitempty"`
	PaymentReceipt []wirePaymentReceipt `json:",omitempty" xml:",omitempty"`
}

type wirePaymentResult struct {
	PaymentType           string                     `json:",omitempty" xml:",attr,omitempty"`
	PaymentInstrumentData *wirePaymentInstrumentData `json:",omitempty" xml:",omitempty"`
	AmountsResp           *wireAmountsResp           `json:",omitempty" xml:",omitempty"`
	PaymentAcquirerData   *wirePaymentAcquirerData   `json:",omitempty" xml:",omitempty"`
}

type wireAmountsResp struct {
	Currency         string      `json:",omitempty" xml:",attr,omitempty"`
	AuthorizedAmount wireDecimal `json:",omitempty" xml:",attr,omitempty"`
}

type wirePaymentAcquirerData struct {
	AcquirerID            string             `json:",omitempty" xml:",attr,omitempty"`
	MerchantID            string             `json:",omitempty" xml:",attr,omitempty"`
	AcquirerPOIID         string             `json:",omitempty" xml:",attr,omitempty"`
	ApprovalCode          string             `json:",omitempty" xml:",attr,omitempty"`
	AcquirerTransactionID *wireTransactionID `json:",omitempty" xml:",omitempty"`
}
