package nexo

import "context"

// loginCategory is Login: it opens a session for a SaleID (its totals group
// and operator) and is the one category a Strict POI serves logged out.
type loginCategory struct{}

func (loginCategory) name() MessageCategory { return CategoryLogin }
func (loginCategory) traits() traits        { return traits{beforeLogin: true} }

func (loginCategory) serve(_ context.Context, s *Server, req *Request) *Response {
	h := req.Header
	s.mu.Lock()
	evicted, ok := s.sessions.login(h.SaleID, TotalsGroup{OperatorID: req.Login.OperatorID, ShiftNumber: req.Login.ShiftNumber, TotalsGroupID: req.Login.TotalsGroupID})
	s.mu.Unlock()
	if ok {
		s.log.Warn("nexo login: too many SaleIDs logged in; the oldest is logged out", "max", s.cfg.MaxLoggedIn, "logged_out", evicted)
	}
	return s.ok(h, func(r *Response) {
		r.Login = &LoginResponse{POIDateTime: s.now(), GlobalStatus: "OK", POISerialNumber: s.cfg.POISerialNumber}
	})
}

func (loginCategory) requestFromWire(m *wireMessage, r *Request) (e *Error) {
	r.Login, e = loginFromWire(m.LoginRequest)
	return e
}

func loginFromWire(w *wireLoginRequest) (*LoginRequest, *Error) {
	const f = "LoginRequest"
	if w == nil {
		return nil, formatError(f, "missing")
	}
	dt, e := parseTime(f+".DateTime", w.DateTime)
	if e != nil {
		return nil, e
	}
	if w.SaleSoftware == nil {
		return nil, formatError(f+".SaleSoftware", "missing")
	}
	ss := w.SaleSoftware
	for _, kv := range [][2]string{{"ManufacturerID", ss.ManufacturerID}, {"ApplicationName", ss.ApplicationName}, {"SoftwareVersion", ss.SoftwareVersion}} {
		if kv[1] == "" {
			return nil, formatError(f+".SaleSoftware."+kv[0], "missing")
		}
	}
	if w.OperatorLanguage == "" {
		return nil, formatError(f+".OperatorLanguage", "missing")
	}
	if e := checkLens(maxRefLen, f+".SaleSoftware.ManufacturerID", ss.ManufacturerID, f+".SaleSoftware.ApplicationName", ss.ApplicationName,
		f+".SaleSoftware.SoftwareVersion", ss.SoftwareVersion, f+".SaleSoftware.CertificationCode", ss.CertificationCode, f+".OperatorID", w.OperatorID); e != nil {
		return nil, e
	}
	if e := checkLens(maxLangLen, f+".OperatorLanguage", w.OperatorLanguage, f+".ShiftNumber", w.ShiftNumber); e != nil {
		return nil, e
	}
	return &LoginRequest{
		DateTime: dt,
		SaleSoftware: SaleSoftware{
			ManufacturerID: ss.ManufacturerID, ApplicationName: ss.ApplicationName,
			SoftwareVersion: ss.SoftwareVersion, CertificationCode: ss.CertificationCode,
		},
		OperatorLanguage: w.OperatorLanguage,
		OperatorID:       w.OperatorID,
		ShiftNumber:      w.ShiftNumber,
		TotalsGroupID:    saleTerminalTotalsGroup(w.SaleTerminalData),
	}, nil
}

func (loginCategory) requestToWire(r *Request, m *wireMessage) (bool, error) {
	l := r.Login
	if l == nil {
		return false, nil
	}
	m.LoginRequest = &wireLoginRequest{
		DateTime: formatTime(l.DateTime), OperatorLanguage: l.OperatorLanguage,
		OperatorID: l.OperatorID, ShiftNumber: l.ShiftNumber,
		SaleTerminalData: saleTerminalDataToWire(l.TotalsGroupID),
		SaleSoftware: &wireSaleSoftware{
			ManufacturerID: l.SaleSoftware.ManufacturerID, ApplicationName: l.SaleSoftware.ApplicationName,
			SoftwareVersion: l.SaleSoftware.SoftwareVersion, CertificationCode: l.SaleSoftware.CertificationCode,
		},
	}
	return true, nil
}

func (loginCategory) responseToWire(r *Response, m *wireMessage) error {
	w := &wireLoginResponse{Response: statusToWire(r.Status)}
	if l := r.Login; l != nil {
		w.POISystemData = &wirePOISystemData{DateTime: formatTime(l.POIDateTime), POISerialNumber: l.POISerialNumber}
		if l.GlobalStatus != "" {
			w.POISystemData.POIStatus = &wirePOIStatus{GlobalStatus: l.GlobalStatus}
		}
	}
	m.LoginResponse = w
	return nil
}

func (loginCategory) responseFromWire(m *wireMessage, r *Response) *Error {
	e := bodyStatusFromWire("LoginResponse", m.LoginResponse, r)
	if e != nil {
		return e
	}
	if sd := m.LoginResponse.POISystemData; sd != nil {
		l := &LoginResponse{POISerialNumber: sd.POISerialNumber}
		if sd.DateTime != "" {
			if l.POIDateTime, e = parseTime("LoginResponse.POISystemData.DateTime", sd.DateTime); e != nil {
				return e
			}
		}
		if sd.POIStatus != nil {
			l.GlobalStatus = sd.POIStatus.GlobalStatus
		}
		r.Login = l
	}
	return nil
}

func (loginCategory) request5FromWire(m *wire5Message, r *Request) (e *Error) {
	r.Login, e = login5FromWire(m.SessionManagementRequest.LoginRequest)
	return e
}

func (loginCategory) request5ToWire(r *Request, m *wire5Message) (string, error) {
	l := r.Login
	if l == nil {
		return "", nil
	}
	m.SessionManagementRequest = &wire5SessionRequest{LoginRequest: &wire5LoginRequest{
		LoginDateTime: formatTime(l.DateTime), OperatorLanguage: l.OperatorLanguage,
		OperatorIdentification: l.OperatorID, ShiftNumber: l.ShiftNumber,
		SaleSoftware: &wire5SaleSoftware{
			ProviderIdentification: l.SaleSoftware.ManufacturerID, ApplicationName: l.SaleSoftware.ApplicationName,
			SoftwareVersion: l.SaleSoftware.SoftwareVersion, CertificationCode: l.SaleSoftware.CertificationCode,
		},
	}}
	return root5SessionRequest, nil
}

func (loginCategory) response5ToWire(r *Response, m *wire5Message) (string, error) {
	w := &wire5LoginResponse{}
	if l := r.Login; l != nil {
		w = &wire5LoginResponse{POIDateTime: formatTime(l.POIDateTime), POISerialNumber: l.POISerialNumber, GlobalStatus: l.GlobalStatus}
	}
	m.SessionManagementResponse = &wire5SessionResponse{Response: status5ToWire(r.Status), LoginResponse: w}
	return root5SessionResponse, nil
}

// The 3.x wire form (wire3.go has the conventions).

type wireLoginRequest struct {
	DateTime         string                `json:",omitempty" xml:",attr,omitempty"`
	OperatorLanguage string                `json:",omitempty" xml:",attr,omitempty"`
	OperatorID       string                `json:",omitempty" xml:",attr,omitempty"`
	ShiftNumber      string                `json:",omitempty" xml:",attr,omitempty"`
	SaleSoftware     *wireSaleSoftware     `json:",omitempty" xml:",omitempty"`
	SaleTerminalData *wireSaleTerminalData `json:",omitempty" xml:",omitempty"`
}

type wireSaleSoftware struct {
	ManufacturerID    string `json:",omitempty" xml:",attr,omitempty"`
	ApplicationName   string `json:",omitempty" xml:",attr,omitempty"`
	SoftwareVersion   string `json:",omitempty" xml:",attr,omitempty"`
	CertificationCode string `json:",omitempty" xml:",attr,omitempty"`
}

type wireLoginResponse struct {
	Response      *wireResponse      `json:",omitempty" xml:",omitempty"`
	POISystemData *wirePOISystemData `json:",omitempty" xml:",omitempty"`
}

type wirePOISystemData struct {
	DateTime        string         `json:",omitempty" xml:",attr,omitempty"`
	POISerialNumber string         `json:",omitempty" xml:",attr,omitempty"`
	POIStatus       *wirePOIStatus `json:",omitempty" xml:",omitempty"`
}
