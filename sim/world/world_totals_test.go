package world_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/sim/world"
)

// payApproved runs one payment through the world, the consumer paying.
func payApproved(t *testing.T, w *world.World, pos *world.POS, serviceID string, minor int64, brand string) *nexo.Response {
	t.Helper()
	done := payAsync(t, pos, pos.PaymentRequest(serviceID, minor, "EUR", brand))
	s := awaitScreen(t, w, "awaiting_consumer")
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, nexo.Success, r.resp.Status.Result, world.Describe(r.resp))
	awaitScreen(t, w, "approved")
	return r.resp
}

// TestWorldTotalsAndReconciliation: day-end through the agent's journal. Two
// cashiers' payments are totalled per shift, a reversal is netted, the
// SaleReconciliation closes the period and GetTotals then starts afresh.
func TestWorldTotalsAndReconciliation(t *testing.T) {
	w, pos := startWorld(t, nil)
	ctx := t.Context()
	pos.OperatorID, pos.ShiftNumber = "alice", "1"
	login, err := pos.Login(ctx)
	require.NoError(t, err)
	require.Equal(t, w.Agent.Serial(), login.Login.POISerialNumber, "LoginResponse POISystemData names the terminal")
	p1 := payApproved(t, w, pos, "T1", 2000, "KB")
	payApproved(t, w, pos, "T2", 550, "KB")
	pos.OperatorID, pos.ShiftNumber = "bob", "2"
	_, err = pos.Login(ctx)
	require.NoError(t, err)
	payApproved(t, w, pos, "T3", 1000, "KB")
	rev, err := pos.Reverse(ctx, p1.Payment.POITransactionID.ID, "MerchantCancel")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, rev.Status.Result, world.Describe(rev))

	resp, err := pos.Totals(ctx, []string{nexo.DetailShiftNumber}, nil)
	require.NoError(t, err)
	require.Equal(t, nexo.Success, resp.Status.Result, world.Describe(resp))
	require.Equal(t, "1", resp.GetTotals.POIReconciliationID)
	require.Len(t, resp.GetTotals.Totals, 2, world.Describe(resp))
	s1, s2 := resp.GetTotals.Totals[0], resp.GetTotals.Totals[1]
	require.Equal(t, "1", s1.ShiftNumber)
	require.Equal(t, []nexo.PaymentTotals{{Type: nexo.TotalsDebit, Count: 2, Amount: 2550}, {Type: nexo.TotalsReverseDebit, Count: 1, Amount: 2000}}, s1.Payments)
	require.Equal(t, int64(550), s1.Net())
	require.Equal(t, "KB", s1.Brand)
	require.Equal(t, nexo.InstrumentMobile, s1.InstrumentType, "a listed PaymentInstrumentType, not QRCode")
	require.Equal(t, "EUR", s1.Currency)
	require.Equal(t, "2", s2.ShiftNumber)
	require.Equal(t, int64(1000), s2.Net())

	rec, err := pos.Reconcile(ctx, nexo.ReconSale, "")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, rec.Status.Result, world.Describe(rec))
	require.Equal(t, "1", rec.Reconciliation.POIReconciliationID)
	var net int64
	for _, tt := range rec.Reconciliation.Totals {
		net += tt.Net()
	}
	require.Equal(t, int64(1550), net)

	after, err := pos.Totals(ctx, nil, nil)
	require.NoError(t, err)
	require.Equal(t, "2", after.GetTotals.POIReconciliationID)
	require.Empty(t, after.GetTotals.Totals)
	require.Equal(t, "1", p1.Payment.POIReconciliationID, "POIData names the payment's period")
	p4 := payApproved(t, w, pos, "T4", 100, "KB")
	require.Equal(t, "2", p4.Payment.POIReconciliationID)
	prev, err := pos.Reconcile(ctx, nexo.ReconPrevious, "1") // unchanged by the payment of period 2
	require.NoError(t, err)
	require.Equal(t, rec.Reconciliation.Totals, prev.Reconciliation.Totals)
}

// TestWorldAcquirerSynchronisation: the journal agrees with the platform until
// the provider charges a payment back behind the agent's back; the
// synchronisation then names it, and does not close the period.
func TestWorldAcquirerSynchronisation(t *testing.T) {
	w, pos := startWorld(t, nil)
	ctx := t.Context()
	payApproved(t, w, pos, "K1", 1200, "KB")
	pti := payApproved(t, w, pos, "P1", 3000, "PTI")
	kb2 := payApproved(t, w, pos, "K2", 800, "KB")
	rev, err := pos.Reverse(ctx, kb2.Payment.POITransactionID.ID, "MerchantCancel")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, rev.Status.Result, world.Describe(rev))

	sync, err := pos.Reconcile(ctx, nexo.ReconAcquirerSynchronisation, "")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, sync.Status.Result, world.Describe(sync))
	require.Equal(t, "differences=0", sync.Status.AdditionalResponse)
	require.Equal(t, "1", sync.Reconciliation.POIReconciliationID)

	ptiID := pti.Payment.Result.ApprovalCode
	_, err = w.PPaaS.Act(ptiID, "capture")
	require.NoError(t, err)
	_, err = w.PPaaS.Act(ptiID, "chargeback")
	require.NoError(t, err)
	sync, err = pos.Reconcile(ctx, nexo.ReconAcquirerSynchronisation, "")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, sync.Status.Result, world.Describe(sync))
	require.Contains(t, sync.Status.AdditionalResponse, "differences=1&difference1=payment+"+pti.Payment.POITransactionID.ID+"+has+")
	require.Contains(t, sync.Status.AdditionalResponse, "no+reversal+in+the+journal")
	again, err := pos.Totals(ctx, nil, nil)
	require.NoError(t, err)
	require.Equal(t, "1", again.GetTotals.POIReconciliationID, "synchronisation leaves the period open")
}

// TestWorldImageOnlyQRReachesTheTerminal: a provider that returns only an
// image still gets its code shown, and the payment completes.
func TestWorldImageOnlyQRReachesTheTerminal(t *testing.T) {
	w, pos := startWorld(t, func(c *world.WorldConfig) { c.PPaaS.Payments.Providers.KBImageOnly = true })
	done := payAsync(t, pos, pos.PaymentRequest("I1", 700, "EUR", "KB"))
	s := awaitScreen(t, w, "awaiting_consumer")
	require.Empty(t, s.QRPayload, "the provider sent no payload")
	require.NoError(t, qr.CheckImage(s.QRPNG), "the provider's PNG is on the terminal")
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, nexo.Success, r.resp.Status.Result, world.Describe(r.resp))
}

// TestWorldDisplayQRFromThePOS: a DisplayRequest with a QR code (BarCode)
// shows the code on the virtual terminal.
func TestWorldDisplayQRFromThePOS(t *testing.T) {
	w, pos := startWorld(t, nil)
	resp, err := pos.ShowQR(t.Context(), "Your receipt", "https://shop.example/r/77")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, resp.Status.Result, world.Describe(resp))
	s := awaitScreen(t, w, "message")
	require.Equal(t, "Your receipt", s.Message)
	require.Equal(t, "https://shop.example/r/77", s.QRPayload)
	require.NoError(t, qr.CheckImage(s.QRPNG))

	resp, err = pos.ShowQR(t.Context(), "", string(make([]byte, 3000)))
	require.NoError(t, err)
	require.Equal(t, nexo.Failure, resp.Status.Result, "a code no QR can hold is refused")
}

// TestWorldReceipts: a payment's response carries its cashier and customer
// receipts; TransactionStatus with DocumentQualifier reprints them.
func TestWorldReceipts(t *testing.T) {
	w, pos := startWorld(t, nil)
	paid := payApproved(t, w, pos, "R1", 1234, "KB")
	rs := paid.Payment.Receipts
	require.Len(t, rs, 2)
	require.Equal(t, nexo.CashierReceipt, rs[0].DocumentQualifier)
	require.Equal(t, nexo.CustomerReceipt, rs[1].DocumentQualifier)
	lines := strings.Join(rs[1].Lines, "\n")
	require.Contains(t, lines, "Amount: 12.34 EUR")
	require.Contains(t, lines, "Wallet: KB")
	require.Contains(t, lines, "POI transaction: "+paid.Payment.POITransactionID.ID)
	require.Contains(t, lines, "PPaaS transaction: "+paid.Payment.Result.ApprovalCode)

	again, err := pos.Receipt(t.Context(), "R1")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, again.Status.Result, world.Describe(again))
	re := again.TransactionStatus.Repeated.Payment.Receipts
	require.Len(t, re, 2)
	require.Equal(t, "DUPLICATE", re[1].Lines[0])
	require.Equal(t, rs[1].Lines, re[1].Lines[1:])
	require.Contains(t, world.Describe(again), "--- CustomerReceipt ---")
}
