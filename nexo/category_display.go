package nexo

import (
	"context"
	"fmt"
	"time"
)

// displayCategory is Display: texts and QR codes on the POI's displays.
type displayCategory struct{}

func (displayCategory) name() MessageCategory { return CategoryDisplay }
func (displayCategory) traits() traits        { return traits{} }

func (displayCategory) serve(ctx context.Context, s *Server, req *Request) *Response {
	return s.display(ctx, req)
}

func (displayCategory) requestFromWire(m *wireMessage, r *Request) (e *Error) {
	r.Display, e = displayFromWire(m.DisplayRequest)
	return e
}

func displayFromWire(w *wireDisplayRequest) (*DisplayRequest, *Error) {
	const f = "DisplayRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	if len(w.DisplayOutput) == 0 {
		return nil, formatError(f+".DisplayOutput", "missing")
	}
	if len(w.DisplayOutput) > maxListLen {
		return nil, formatError(f+".DisplayOutput", "more than %d entries (%d)", maxListLen, len(w.DisplayOutput))
	}
	d := &DisplayRequest{}
	for i, o := range w.DisplayOutput {
		of := fmt.Sprintf("%s.DisplayOutput[%d]", f, i)
		if o.Device == "" {
			return nil, formatError(of+".Device", "missing")
		}
		if o.InfoQualify == "" {
			return nil, formatError(of+".InfoQualify", "missing")
		}
		if o.OutputContent == nil {
			return nil, formatError(of+".OutputContent", "missing")
		}
		qrValue, e := barcodeFromWire(of+".OutputContent", o.OutputContent)
		if e != nil {
			return nil, e
		}
		if e := checkLens(maxRefLen, of+".Device", o.Device, of+".InfoQualify", o.InfoQualify); e != nil {
			return nil, e
		}
		if len(o.OutputContent.OutputText) > maxListLen {
			return nil, formatError(of+".OutputContent.OutputText", "more than %d entries (%d)", maxListLen, len(o.OutputContent.OutputText))
		}
		for j, t := range o.OutputContent.OutputText {
			if e := checkLen(fmt.Sprintf("%s.OutputContent.OutputText[%d]", of, j), t.Text, maxDisplayText); e != nil {
				return nil, e
			}
		}
		if o.MinimumDisplayTime < 0 {
			return nil, formatError(of+".MinimumDisplayTime", "negative")
		}
		out := DisplayOutput{
			Device: o.Device, InfoQualify: o.InfoQualify, ResponseRequired: o.ResponseRequiredFlag,
			MinimumDisplay: time.Duration(o.MinimumDisplayTime) * time.Second, QRCode: qrValue,
		}
		for _, t := range o.OutputContent.OutputText {
			out.Text = append(out.Text, t.Text)
		}
		if len(out.Text) == 0 && out.QRCode == "" {
			return nil, formatError(of+".OutputContent.OutputText", "missing")
		}
		d.Outputs = append(d.Outputs, out)
	}
	return d, nil
}

func (displayCategory) requestToWire(r *Request, m *wireMessage) (bool, error) {
	if r.Display == nil {
		return false, nil
	}
	w := &wireDisplayRequest{}
	for _, o := range r.Display.Outputs {
		wo := wireDisplayOutput{
			ResponseRequiredFlag: o.ResponseRequired, MinimumDisplayTime: int(o.MinimumDisplay / time.Second),
			Device: o.Device, InfoQualify: o.InfoQualify, OutputContent: &wireOutputContent{OutputFormat: "Text"},
		}
		if o.QRCode != "" {
			wo.OutputContent.OutputFormat = OutputBarCode
			wo.OutputContent.OutputBarcode = &wireOutputBarcode{BarcodeType: BarcodeQRCode, BarcodeValue: o.QRCode}
		}
		for _, t := range o.Text {
			wo.OutputContent.OutputText = append(wo.OutputContent.OutputText, wireOutputText{Text: t})
		}
		w.DisplayOutput = append(w.DisplayOutput, wo)
	}
	m.DisplayRequest = w
	return true, nil
}

func (displayCategory) responseToWire(r *Response, m *wireMessage) error {
	w := &wireDisplayResponse{}
	if d := r.Display; d != nil {
		for _, o := range d.Outputs {
			w.OutputResult = append(w.OutputResult, wireOutputResult{Device: o.Device, InfoQualify: o.InfoQualify, Response: statusToWire(o.Status)})
		}
	}
	if len(w.OutputResult) == 0 {
		// DisplayResponse has no Response of its own; a failure with no
		// output still needs somewhere to say why.
		w.OutputResult = []wireOutputResult{{Response: statusToWire(r.Status)}}
	}
	m.DisplayResponse = w
	return nil
}

func (displayCategory) responseFromWire(m *wireMessage, r *Response) *Error {
	w := m.DisplayResponse
	if w == nil {
		return formatError("DisplayResponse", "missing")
	}
	if len(w.OutputResult) == 0 {
		return formatError("DisplayResponse.OutputResult", "missing")
	}
	d := &DisplayResponse{}
	for i, o := range w.OutputResult {
		st, e := statusFromWire(fmt.Sprintf("DisplayResponse.OutputResult[%d]", i), o.Response)
		if e != nil {
			return e
		}
		if i == 0 || st.Result == Failure {
			r.Status = st
		}
		if o.Device != "" {
			d.Outputs = append(d.Outputs, OutputResult{Device: o.Device, InfoQualify: o.InfoQualify, Status: st})
		}
	}
	if len(d.Outputs) > 0 {
		r.Display = d
	}
	return nil
}

// The 3.x wire form (wire3.go has the conventions).

type wireDisplayRequest struct {
	DisplayOutput []wireDisplayOutput `json:",omitempty" xml:",omitempty"`
}

type wireDisplayOutput struct {
	ResponseRequiredFlag bool               `json:",omitempty" xml:",attr,omitempty"`
	MinimumDisplayTime   int                `json:",omitempty" xml:",attr,omitempty"`
	Device               string             `json:",omitempty" xml:",attr,omitempty"`
	InfoQualify          string             `json:",omitempty" xml:",attr,omitempty"`
	OutputContent        *wireOutputContent `json:",omitempty" xml:",omitempty"`
}

type wireOutputContent struct {
	OutputFormat  string             `json:",omitempty" xml:",attr,omitempty"`
	OutputText    []wireOutputText   `json:",omitempty" xml:",omitempty"`
	OutputBarcode *wireOutputBarcode `json:",omitempty" xml:",omitempty"`
}

type wireOutputBarcode struct {
	BarcodeType  string `json:",omitempty" xml:",attr,omitempty"`
	BarcodeValue string `json:",omitempty" xml:",attr,omitempty"`
}

type wireOutputText struct {
	Text string `xml:",chardata"`
}

type wireDisplayResponse struct {
	OutputResult []wireOutputResult `json:",omitempty" xml:",omitempty"`
}

type wireOutputResult struct {
	Device      string        `json:",omitempty" xml:",attr,omitempty"`
	InfoQualify string        `json:",omitempty" xml:",attr,omitempty"`
	Response    *wireResponse `json:",omitempty" xml:",omitempty"`
}
