package nexo

import (
	"context"
	"fmt"
)

// transactionStatusCategory is TransactionStatus: the outcome of the
// caller's last (or a named) transaction, read from the journal, with its
// receipts reprinted on request.
type transactionStatusCategory struct{}

func (transactionStatusCategory) name() MessageCategory { return CategoryTransactionStatus }
func (transactionStatusCategory) traits() traits        { return traits{} }

func (transactionStatusCategory) serve(ctx context.Context, s *Server, req *Request) *Response {
	return s.transactionStatus(ctx, req)
}

func (transactionStatusCategory) requestFromWire(m *wireMessage, r *Request) (e *Error) {
	r.TransactionStatus, e = transactionStatusFromWire(m.TransactionStatusRequest)
	return e
}

func transactionStatusFromWire(w *wireTransactionStatusRequest) (*TransactionStatusRequest, *Error) {
	const f = "TransactionStatusRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	r := &TransactionStatusRequest{}
	var e *Error
	if r.DocumentQualifiers, e = documentQualifiersFromWire(w.DocumentQualifier); e != nil {
		return nil, e
	}
	r.ReceiptReprint = w.ReceiptReprintFlag
	if w.MessageReference != nil {
		ref, e := refFromWire(f+".MessageReference", w.MessageReference)
		if e != nil {
			return nil, e
		}
		r.MessageReference = ref
	}
	return r, nil
}

func (transactionStatusCategory) requestToWire(r *Request, m *wireMessage) (bool, error) {
	if r.TransactionStatus == nil {
		return false, nil
	}
	m.TransactionStatusRequest = &wireTransactionStatusRequest{MessageReference: refToWire(r.TransactionStatus.MessageReference), DocumentQualifier: r.TransactionStatus.DocumentQualifiers, ReceiptReprintFlag: r.TransactionStatus.ReceiptReprint}
	return true, nil
}

func (transactionStatusCategory) responseToWire(r *Response, m *wireMessage) error {
	w := &wireTransactionStatusResponse{Response: statusToWire(r.Status)}
	if t := r.TransactionStatus; t != nil {
		w.MessageReference = refToWire(t.MessageReference)
		if rep := t.Repeated; rep != nil {
			rw, err := repeatedToWire(rep)
			if err != nil {
				return err
			}
			w.RepeatedMessageResponse = rw
		}
	}
	m.TransactionStatusResponse = w
	return nil
}

func repeatedToWire(rep *Response) (*wireRepeatedMessageResponse, error) {
	body := &wireRepeatedBody{}
	switch {
	case rep.Payment != nil || (rep.Reversal == nil && rep.Header.Category == CategoryPayment):
		pw, err := paymentResponseToWire(rep.Status, rep.Payment)
		if err != nil {
			return nil, err
		}
		body.PaymentResponse = pw
	case rep.Reversal != nil || rep.Header.Category == CategoryReversal:
		body.ReversalResponse = reversalResponseToWire(rep.Status, rep.Reversal)
	default:
		return nil, fmt.Errorf("encode RepeatedMessageResponse: unsupported category %q", rep.Header.Category)
	}
	return &wireRepeatedMessageResponse{MessageHeader: headerToWire(rep.Header), RepeatedResponseMessageBody: body}, nil
}

func (transactionStatusCategory) responseFromWire(m *wireMessage, r *Response) *Error {
	w := m.TransactionStatusResponse
	e := bodyStatusFromWire("TransactionStatusResponse", w, r)
	if e != nil {
		return e
	}
	t := &TransactionStatusResponse{}
	if w.MessageReference != nil {
		t.MessageReference, _ = refFromWire("", w.MessageReference)
		if t.MessageReference == nil {
			t.MessageReference = &MessageReference{Category: MessageCategory(w.MessageReference.MessageCategory), SaleID: w.MessageReference.SaleID, POIID: w.MessageReference.POIID}
		}
	}
	if rm := w.RepeatedMessageResponse; rm != nil {
		const f = "TransactionStatusResponse.RepeatedMessageResponse"
		if rm.MessageHeader == nil {
			return formatError(f+".MessageHeader", "missing")
		}
		rep := &Response{Header: headerFromWireLenient(rm.MessageHeader)}
		body := rm.RepeatedResponseMessageBody
		switch {
		case body != nil && body.PaymentResponse != nil:
			if rep.Status, e = statusFromWire(f+".PaymentResponse", body.PaymentResponse.Response); e != nil {
				return e
			}
			if rep.Payment, e = paymentResponseFromWire(body.PaymentResponse); e != nil {
				return e
			}
		case body != nil && body.ReversalResponse != nil:
			if rep.Status, e = statusFromWire(f+".ReversalResponse", body.ReversalResponse.Response); e != nil {
				return e
			}
			if rep.Reversal, e = reversalResponseFromWire(body.ReversalResponse); e != nil {
				return e
			}
		default:
			return formatError(f+".RepeatedResponseMessageBody", "missing")
		}
		t.Repeated = rep
	}
	if t.MessageReference != nil || t.Repeated != nil {
		r.TransactionStatus = t
	}
	return nil
}

func (transactionStatusCategory) request5FromWire(m *wire5Message, r *Request) (e *Error) {
	r.TransactionStatus = &TransactionStatusRequest{}
	if m.StatusRequest != nil && m.StatusRequest.MessageReference != nil {
		r.TransactionStatus.MessageReference, e = ref5FromWire("StatusRequest.MessageReference", m.StatusRequest.MessageReference)
	}
	return e
}

func (transactionStatusCategory) request5ToWire(r *Request, m *wire5Message) (string, error) {
	if r.TransactionStatus == nil {
		return "", nil
	}
	ref, err := ref5ToWire(r.TransactionStatus.MessageReference)
	if err != nil {
		return "", fmt.Errorf("encode StatusRequest: %w", err)
	}
	m.StatusRequest = &wire5StatusRequest{MessageReference: ref}
	return root5StatusRequest, nil
}

func (transactionStatusCategory) response5ToWire(r *Response, m *wire5Message) (string, error) {
	sr := &wire5StatusResponse{Response: status5ToWire(r.Status)}
	if t := r.TransactionStatus; t != nil {
		ref, err := ref5ToWire(t.MessageReference)
		if err != nil {
			return "", err
		}
		data := &wire5StatusResponseData{MessageReference: ref}
		if rep := t.Repeated; rep != nil {
			data.TransactionResponse = status5ToWire(rep.Status)
			switch {
			case rep.Payment != nil || (rep.Reversal == nil && rep.Header.Category == CategoryPayment):
				p, err := paymentResponse5ToWire(rep.Payment)
				if err != nil {
					return "", err
				}
				if p == nil {
					p = &wire5PaymentResponse{}
				}
				data.RepeatedPaymentResponse = p
			case rep.Reversal != nil || rep.Header.Category == CategoryReversal:
				data.RepeatedReversalResponse = reversalResponse5ToWire(rep.Reversal)
				if data.RepeatedReversalResponse == nil {
					data.RepeatedReversalResponse = &wire5ReversalResponse{}
				}
			default:
				return "", fmt.Errorf("encode repeated response: unsupported category %q", rep.Header.Category)
			}
		}
		sr.MessageStatusResponseData = data
	}
	m.StatusResponse = sr
	return root5StatusResponse, nil
}

// The 3.x wire form (wire3.go has the conventions).

type wireTransactionStatusRequest struct {
	MessageReference   *wireMessageReference `json:",omitempty" xml:",omitempty"`
	DocumentQualifier  []string              `json:",omitempty" xml:",omitempty"`
	ReceiptReprintFlag bool                  `json:",omitempty" xml:",attr,omitempty"`
}

type wireTransactionStatusResponse struct {
	Response                *wireResponse                `json:",omitempty" xml:",omitempty"`
	MessageReference        *wireMessageReference        `json:",omitempty" xml:",omitempty"`
	RepeatedMessageResponse *wireRepeatedMessageResponse `json:",omitempty" xml:",omitempty"`
}

type wireRepeatedMessageResponse struct {
	MessageHeader               *wireHeader       `json:",omitempty" xml:",omitempty"`
	RepeatedResponseMessageBody *wireRepeatedBody `json:",omitempty" xml:",omitempty"`
}

type wireRepeatedBody struct {
	PaymentResponse  *wirePaymentResponse  `json:",omitempty" xml:",omitempty"`
	ReversalResponse *wireReversalResponse `json:",omitempty" xml:",omitempty"`
}
