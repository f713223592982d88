package nexo

import (
	"context"
	"strconv"
	"strings"
)

// diagnosisCategory is Diagnosis: the POI's health, its hosts' reachability
// and its outbox depth. It never waits for a transaction's journal write.
type diagnosisCategory struct{}

func (diagnosisCategory) name() MessageCategory { return CategoryDiagnosis }
func (diagnosisCategory) traits() traits        { return traits{} }

func (diagnosisCategory) serve(ctx context.Context, s *Server, req *Request) *Response {
	return s.diagnose(ctx, req)
}

func (diagnosisCategory) requestFromWire(m *wireMessage, r *Request) *Error {
	if m.DiagnosisRequest == nil {
		return formatError("DiagnosisRequest", "missing")
	}
	if e := checkList("DiagnosisRequest.AcquirerID", m.DiagnosisRequest.AcquirerID, maxRefLen); e != nil {
		return e
	}
	r.Diagnosis = &DiagnosisRequest{HostDiagnosis: m.DiagnosisRequest.HostDiagnosisFlag, AcquirerIDs: m.DiagnosisRequest.AcquirerID}
	return nil
}

func (diagnosisCategory) requestToWire(r *Request, m *wireMessage) (bool, error) {
	if r.Diagnosis == nil {
		return false, nil
	}
	m.DiagnosisRequest = &wireDiagnosisRequest{HostDiagnosisFlag: r.Diagnosis.HostDiagnosis, AcquirerID: r.Diagnosis.AcquirerIDs}
	return true, nil
}

// outboxDepthKey carries DiagnosisResponse.OutboxDepth inside
// AdditionalResponse, in the key=value form existing Nexo JSON APIs use there.
const outboxDepthKey = "outboxDepth="

func (diagnosisCategory) responseToWire(r *Response, m *wireMessage) error {
	w := &wireDiagnosisResponse{Response: statusToWire(r.Status)}
	if d := r.Diagnosis; d != nil {
		ok := d.CommunicationOK
		w.LoggedSaleID = d.LoggedSaleIDs
		w.POIStatus = &wirePOIStatus{GlobalStatus: d.GlobalStatus, CommunicationOKFlag: &ok}
		for _, h := range d.Hosts {
			w.HostStatus = append(w.HostStatus, wireHostStatus{AcquirerID: h.AcquirerID, IsReachableFlag: h.Reachable})
		}
		kv := outboxDepthKey + strconv.Itoa(d.OutboxDepth)
		if w.Response.AdditionalResponse == "" {
			w.Response.AdditionalResponse = kv
		} else {
			w.Response.AdditionalResponse += "&" + kv
		}
	}
	m.DiagnosisResponse = w
	return nil
}

func (diagnosisCategory) responseFromWire(m *wireMessage, r *Response) *Error {
	w := m.DiagnosisResponse
	e := bodyStatusFromWire("DiagnosisResponse", w, r)
	if e != nil {
		return e
	}
	d := &DiagnosisResponse{LoggedSaleIDs: w.LoggedSaleID}
	if w.POIStatus != nil {
		d.GlobalStatus = w.POIStatus.GlobalStatus
		d.CommunicationOK = w.POIStatus.CommunicationOKFlag != nil && *w.POIStatus.CommunicationOKFlag
	}
	for _, h := range w.HostStatus {
		d.Hosts = append(d.Hosts, HostStatus{AcquirerID: h.AcquirerID, Reachable: h.IsReachableFlag})
	}
	ar := r.Status.AdditionalResponse
	if i := strings.LastIndex(ar, outboxDepthKey); i >= 0 && (i == 0 || ar[i-1] == '&') {
		if n, err := strconv.Atoi(ar[i+len(outboxDepthKey):]); err == nil {
			d.OutboxDepth = n
			r.Status.AdditionalResponse = strings.TrimSuffix(ar[:i], "&")
		}
	}
	r.Diagnosis = d
	return nil
}

func (diagnosisCategory) request5FromWire(m *wire5Message, r *Request) *Error {
	d := m.SessionManagementRequest.DiagnosisRequest
	r.Diagnosis = &DiagnosisRequest{HostDiagnosis: d.HostDiagnosisFlag, AcquirerIDs: d.AcquirerIdentification}
	return nil
}

func (diagnosisCategory) request5ToWire(r *Request, m *wire5Message) (string, error) {
	if r.Diagnosis == nil {
		return "", nil
	}
	m.SessionManagementRequest = &wire5SessionRequest{DiagnosisRequest: &wire5DiagnosisRequest{HostDiagnosisFlag: r.Diagnosis.HostDiagnosis, AcquirerIdentification: r.Diagnosis.AcquirerIDs}}
	return root5SessionRequest, nil
}

func (diagnosisCategory) response5ToWire(r *Response, m *wire5Message) (string, error) {
	w := &wire5DiagnosisResponse{}
	if d := r.Diagnosis; d != nil {
		ok, depth := d.CommunicationOK, d.OutboxDepth
		w = &wire5DiagnosisResponse{GlobalStatus: d.GlobalStatus, CommunicationOKFlag: &ok, LoggedSaleIdentification: d.LoggedSaleIDs, OutboxDepth: &depth}
		for _, hs := range d.Hosts {
			w.HostStatus = append(w.HostStatus, wire5HostStatus{AcquirerIdentification: hs.AcquirerID, IsReachableFlag: hs.Reachable})
		}
	}
	m.SessionManagementResponse = &wire5SessionResponse{Response: status5ToWire(r.Status), DiagnosisResponse: w}
	return root5SessionResponse, nil
}

// The 3.x wire form (wire3.go has the conventions).

type wireDiagnosisRequest struct {
	HostDiagnosisFlag bool     `json:",omitempty" xml:",attr,omitempty"`
	AcquirerID        []string `json:",omitempty" xml:",omitempty"`
}

type wireDiagnosisResponse struct {
	Response     *wireResponse    `json:",omitempty" xml:",omitempty"`
	LoggedSaleID []string         `json:",omitempty" xml:",omitempty"`
	POIStatus    *wirePOIStatus   `json:",omitempty" xml:",omitempty"`
	HostStatus   []wireHostStatus `json:",omitempty" xml:",omitempty"`
}

type wireHostStatus struct {
	AcquirerID      string `json:",omitempty" xml:",attr,omitempty"`
	IsReachableFlag bool   `xml:",attr"`
}
