package nexo

import "context"

// logoutCategory is Logout: it ends a SaleID's session.
type logoutCategory struct{}

func (logoutCategory) name() MessageCategory { return CategoryLogout }
func (logoutCategory) traits() traits        { return traits{} }

func (logoutCategory) serve(_ context.Context, s *Server, req *Request) *Response {
	s.mu.Lock()
	s.sessions.logout(req.Header.SaleID)
	s.mu.Unlock()
	return s.ok(req.Header, nil)
}

func (logoutCategory) requestFromWire(m *wireMessage, r *Request) *Error {
	if m.LogoutRequest == nil {
		return formatError("LogoutRequest", "missing")
	}
	r.Logout = &LogoutRequest{MaintenanceAllowed: m.LogoutRequest.MaintenanceAllowed}
	return nil
}

func (logoutCategory) requestToWire(r *Request, m *wireMessage) (bool, error) {
	if r.Logout == nil {
		return false, nil
	}
	m.LogoutRequest = &wireLogoutRequest{MaintenanceAllowed: r.Logout.MaintenanceAllowed}
	return true, nil
}

func (logoutCategory) responseToWire(r *Response, m *wireMessage) error {
	m.LogoutResponse = &wireLogoutResponse{Response: statusToWire(r.Status)}
	return nil
}

func (logoutCategory) responseFromWire(m *wireMessage, r *Response) *Error {
	return bodyStatusFromWire("LogoutResponse", m.LogoutResponse, r)
}

func (logoutCategory) request5FromWire(m *wire5Message, r *Request) *Error {
	r.Logout = &LogoutRequest{MaintenanceAllowed: m.SessionManagementRequest.LogoutRequest.MaintenanceAllowed}
	return nil
}

func (logoutCategory) request5ToWire(r *Request, m *wire5Message) (string, error) {
	if r.Logout == nil {
		return "", nil
	}
	m.SessionManagementRequest = &wire5SessionRequest{LogoutRequest: &wire5LogoutRequest{MaintenanceAllowed: r.Logout.MaintenanceAllowed}}
	return root5SessionRequest, nil
}

func (logoutCategory) response5ToWire(r *Response, m *wire5Message) (string, error) {
	m.SessionManagementResponse = &wire5SessionResponse{Response: status5ToWire(r.Status), LogoutResponse: &struct{}{}}
	return root5SessionResponse, nil
}

// The 3.x wire form (wire3.go has the conventions).

type wireLogoutRequest struct {
	MaintenanceAllowed bool `json:",omitempty" xml:",attr,omitempty"`
}

type wireLogoutResponse struct {
	Response *wireResponse `json:",omitempty" xml:",omitempty"`
}
