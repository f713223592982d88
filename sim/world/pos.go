package world

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/termagent/termagent/nexo"
)

// POS is the simulator's point-of-sale driver: it sends real Nexo requests to an
// agent (or any Nexo POI) through a nexo.Client.
type POS struct {
	Client *nexo.Client
	SaleID string // the POS's identity, default "POS1"
	POIID  string // the POI addressed
	Now    func() time.Time
	// OperatorID, ShiftNumber and TotalsGroupID are sent with Login: the
	// POI groups the session's payments by them in totals.
	OperatorID, ShiftNumber, TotalsGroupID string
}

// NewServiceID returns a fresh ServiceID: 10 random base-36 characters, so it is
// unique per SaleID for far longer than Nexo's 48 hours.
func NewServiceID() string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func (p *POS) header(cat nexo.MessageCategory, serviceID string) nexo.Header {
	sale := p.SaleID
	if sale == "" {
		sale = "POS1"
	}
	if serviceID == "" {
		serviceID = NewServiceID()
	}
	return nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: cat, Type: nexo.TypeRequest, ServiceID: serviceID, SaleID: sale, POIID: p.POIID}
}

func (p *POS) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// PaymentRequest builds a Payment for amount (minor units) paid with brand.
func (p *POS) PaymentRequest(serviceID string, minor int64, currency, brand string) *nexo.Request {
	h := p.header(nexo.CategoryPayment, serviceID)
	return &nexo.Request{Header: h, Payment: &nexo.PaymentRequest{
		SaleTransactionID: nexo.TransactionID{ID: "ORDER-" + h.ServiceID, TimeStamp: p.now().UTC()},
		Type:              nexo.PaymentNormal,
		Amount:            nexo.Amount{Minor: minor, Currency: currency},
		AllowedBrands:     []string{brand},
	}}
}

// Pay sends a Payment and waits for its response.
func (p *POS) Pay(ctx context.Context, serviceID string, minor int64, currency, brand string) (*nexo.Response, error) {
	return p.Client.Do(ctx, p.PaymentRequest(serviceID, minor, currency, brand))
}

// Reverse reverses (cancels or refunds) a payment by its POI transaction id.
func (p *POS) Reverse(ctx context.Context, poiTransactionID, reason string) (*nexo.Response, error) {
	return p.Client.Do(ctx, &nexo.Request{Header: p.header(nexo.CategoryReversal, ""), Reversal: &nexo.ReversalRequest{
		OriginalPOITransactionID: nexo.TransactionID{ID: poiTransactionID},
		Reason:                   reason,
	}})
}

// Abort aborts the payment started with serviceID: a bare ServiceID (of this
// POS's SaleID) or SALEID/SERVICEID, as a Busy answer names the payment in
// progress.
func (p *POS) Abort(ctx context.Context, serviceID string) error {
	h := p.header(nexo.CategoryAbort, "")
	saleID, serviceID := splitRef(serviceID, h.SaleID)
	_, err := p.Client.Do(ctx, &nexo.Request{Header: h, Abort: &nexo.AbortRequest{
		MessageReference: nexo.MessageReference{Category: nexo.CategoryPayment, ServiceID: serviceID, SaleID: saleID, POIID: p.POIID},
		AbortReason:      "MerchantAbort",
	}})
	return err
}

// Status asks the outcome of the payment started with serviceID (the last one when
// serviceID is empty); serviceID may be SALEID/SERVICEID as for Abort.
func (p *POS) Status(ctx context.Context, serviceID string) (*nexo.Response, error) {
	h := p.header(nexo.CategoryTransactionStatus, "")
	req := &nexo.Request{Header: h, TransactionStatus: &nexo.TransactionStatusRequest{}}
	if serviceID != "" {
		saleID, serviceID := splitRef(serviceID, h.SaleID)
		req.TransactionStatus.MessageReference = &nexo.MessageReference{Category: nexo.CategoryPayment, ServiceID: serviceID, SaleID: saleID, POIID: p.POIID}
	}
	return p.Client.Do(ctx, req)
}

// splitRef reads SALEID/SERVICEID (the form Busy and InProgress answers
// print) or a bare SERVICEID of defaultSale.
func splitRef(ref, defaultSale string) (saleID, serviceID string) {
	if i := strings.LastIndexByte(ref, '/'); i > 0 && i < len(ref)-1 {
		return ref[:i], ref[i+1:]
	}
	return defaultSale, ref
}

// Diagnosis asks the POI for its health and its hosts' reachability.
func (p *POS) Diagnosis(ctx context.Context) (*nexo.Response, error) {
	return p.Client.Do(ctx, &nexo.Request{Header: p.header(nexo.CategoryDiagnosis, ""), Diagnosis: &nexo.DiagnosisRequest{HostDiagnosis: true}})
}

// Login opens a session (required by agents in strict mode).
func (p *POS) Login(ctx context.Context) (*nexo.Response, error) {
	return p.Client.Do(ctx, &nexo.Request{Header: p.header(nexo.CategoryLogin, ""), Login: &nexo.LoginRequest{
		DateTime:         p.now().UTC(),
		SaleSoftware:     nexo.SaleSoftware{ManufacturerID: "termagent", ApplicationName: "sim pos", SoftwareVersion: "1", CertificationCode: "sim"},
		OperatorLanguage: "en",
		OperatorID:       p.OperatorID,
		ShiftNumber:      p.ShiftNumber,
		TotalsGroupID:    p.TotalsGroupID,
	}})
}

// Logout closes the session.
func (p *POS) Logout(ctx context.Context) (*nexo.Response, error) {
	return p.Client.Do(ctx, &nexo.Request{Header: p.header(nexo.CategoryLogout, ""), Logout: &nexo.LogoutRequest{}})
}

// Describe renders a response for people: one line of outcome plus the details
// a cashier or integrator looks for.
func Describe(r *nexo.Response) string {
	if r == nil {
		return "(no response body: accepted)"
	}
	s := fmt.Sprintf("%s %s: %s", r.Header.Category, r.Header.Type, r.Status.Result)
	if r.Status.Result != nexo.Success {
		s += fmt.Sprintf(" (%s)", r.Status.ErrorCondition)
	}
	if r.Status.AdditionalResponse != "" {
		s += " — " + r.Status.AdditionalResponse
	}
	if p := r.Payment; p != nil {
		s += fmt.Sprintf("\n  POI transaction: %s", p.POITransactionID.ID)
		if p.Result != nil {
			s += fmt.Sprintf("\n  brand: %s  amount: %s  provider reference: %s  acquirer: %s", p.Result.Brand, p.Result.AuthorizedAmount, p.Result.ProviderReference, p.Result.AcquirerID)
		}
	}
	if rv := r.Reversal; rv != nil {
		s += fmt.Sprintf("\n  reversed: %s  reversal: %s", rv.OriginalPOITransactionID.ID, rv.POITransactionID.ID)
	}
	if ts := r.TransactionStatus; ts != nil && ts.Repeated != nil {
		s += "\n  original response: " + indent(Describe(ts.Repeated))
		if p := ts.Repeated.Payment; p != nil {
			s += describeReceipts(p.Receipts)
		}
	}
	if g := r.GetTotals; g != nil {
		s += describeTotals(g.POIReconciliationID, g.Totals)
	}
	if c := r.Reconciliation; c != nil {
		s += describeTotals(c.POIReconciliationID, c.Totals)
	}
	if d := r.Diagnosis; d != nil {
		s += fmt.Sprintf("\n  status: %s  communication OK: %v  outbox depth: %d", d.GlobalStatus, d.CommunicationOK, d.OutboxDepth)
		for _, h := range d.Hosts {
			s += fmt.Sprintf("\n  host %s reachable: %v", h.AcquirerID, h.Reachable)
		}
	}
	return s
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }
