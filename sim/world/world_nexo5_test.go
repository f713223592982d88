package world_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim/world"
)

// TestWorldNexoV5PaymentApproved: a POS speaking Nexo v5 (casp.001) pays
// through the real agent beside a 3.x POS on the same /nexo port; each sees
// the other's payment through TransactionStatus / MessageStatus, and each
// payment is charged once.
func TestWorldNexoV5PaymentApproved(t *testing.T) {
	w, pos3 := startWorld(t, nil)
	c5 := *pos3.Client
	c5.Codec = nexo.JSON5Codec{}
	pos5 := &world.POS{Client: &c5, POIID: pos3.POIID, SaleID: "POS5"}

	reqs := map[string]*nexo.Request{}
	pay := func(pos *world.POS, serviceID string, minor int64) *nexo.Response {
		reqs[serviceID] = pos.PaymentRequest(serviceID, minor, "EUR", "KB")
		done := payAsync(t, pos, reqs[serviceID])
		s := awaitScreen(t, w, "awaiting_consumer")
		require.Equal(t, minor, s.Amount)
		_, err := w.PPaaS.Act(s.TransactionID, "pay")
		require.NoError(t, err)
		r := <-done
		require.NoError(t, r.err)
		require.Equal(t, nexo.Success, r.resp.Status.Result, world.Describe(r.resp))
		require.Equal(t, minor, r.resp.Payment.Result.AuthorizedAmount.Minor)
		require.NotEmpty(t, r.resp.Payment.POITransactionID.ID)
		awaitScreen(t, w, "approved")
		return r.resp
	}
	v5 := pay(pos5, "V5PAY1", 1250)
	v3 := pay(pos3, "V3PAY1", 700)

	// A v5 POS asks the outcome of its payment and of the 3.x one.
	st, err := pos5.Status(t.Context(), "V5PAY1")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, st.Status.Result, world.Describe(st))
	require.Equal(t, v5.Payment.POITransactionID.ID, st.TransactionStatus.Repeated.Payment.POITransactionID.ID)
	other := &world.POS{Client: &c5, POIID: pos3.POIID, SaleID: "POS1"}
	st, err = other.Status(t.Context(), "V3PAY1")
	require.NoError(t, err)
	require.Equal(t, v3.Payment.POITransactionID.ID, st.TransactionStatus.Repeated.Payment.POITransactionID.ID)
	// And a 3.x POS of the v5 one.
	st, err = (&world.POS{Client: pos3.Client, POIID: pos3.POIID, SaleID: "POS5"}).Status(t.Context(), "V5PAY1")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, st.TransactionStatus.Repeated.Status.Result)
	require.Equal(t, int64(1250), st.TransactionStatus.Repeated.Payment.Result.AuthorizedAmount.Minor)

	// The v5 retry of the same exchange is replayed, not charged again.
	again, err := pos5.Client.Do(t.Context(), reqs["V5PAY1"])
	require.NoError(t, err)
	require.Equal(t, v5.Payment.POITransactionID.ID, again.Payment.POITransactionID.ID)
	_, charges := w.PPaaS.Transactions()
	require.Equal(t, 2, charges[w.Agent.Serial()], "one charge per payment")
}
