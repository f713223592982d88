package agent

import (
	"time"

	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
)

// The desk tells a chargeback from a refund by the
// platform's configured spellings and reason phrases (ppaas.Statuses), not
// by a hard-coded substring. With the defaults a provider status
// RETROCESSION is a refund; configured (ppaas_statuses
// RETROCESSION=charged_back) it is a chargeback. Reason phrases switched off
// (ppaas_chargeback_reasons none), a reason alone no longer tells one.
func TestAfterSaleChargebackSpellingsConfigured(t *testing.T) {
	configured, err := ppaas.ParseStatuses("RETROCESSION=charged_back")
	require.NoError(t, err)
	none, err := ppaas.ParseChargebackReasons("none")
	require.NoError(t, err)
	configured.SetChargebackReasons(none)

	for _, c := range []struct {
		name     string
		statuses *ppaas.Statuses
		provider string
		reason   string
		kind     string
	}{
		{"defaults: PTI's CHARGED_BACK", nil, "CHARGED_BACK", "", afterChargedBack},
		{"defaults: the reason says it", nil, "", "charged back by the card holder", afterChargedBack},
		{"defaults: an unknown spelling is a refund", nil, "RETROCESSION", "", afterRefunded},
		{"configured spelling", configured, "retrocession", "", afterChargedBack},
		{"configured: the defaults still hold", configured, "CHARGEBACK", "", afterChargedBack},
		{"configured: reasons off", configured, "", "charged back by the card holder", afterRefunded},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newAfterSaleRig(t, false)
			r.j.after.useStatuses(c.statuses)
			ctx := t.Context()
			id := beginPayment(t, r.j, "S1", 1234)
			require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S1"}, successResponse(t, "S1", id, 1234), time.Now()))
			ev := ppaas.Event{EventID: "e1", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-1", Status: ppaas.Refunded, RawStatus: "refunded", StatusReason: c.reason}
			if c.provider != "" {
				ev.Provider = map[string]string{"status": c.provider}
			}
			handled, err := r.j.after.event(ctx, ev, false)
			require.NoError(t, err)
			require.True(t, handled)
			recs := afterSaleRecords(t, r.j.st, id)
			require.Len(t, recs, 1)
			require.Equal(t, c.kind, recs[0].Kind)
		})
	}
}

func TestConfigChargebackReasonsValidated(t *testing.T) {
	c := DefaultConfig()
	c.Serial, c.Model = "2097CD800007", "DX8000"
	c.PPaaSChargebackReasons = "cb"
	require.ErrorContains(t, c.Validate(), "ppaas_chargeback_reasons")
	c.PPaaSChargebackReasons = "none"
	c.PPaaSStatuses = "CB=charged_back"
	err := c.Validate()
	if err != nil {
		require.NotContains(t, err.Error(), "ppaas_chargeback_reasons")
		require.NotContains(t, err.Error(), "ppaas_statuses")
	}
}

// Review: REFUNDED=charged_back was accepted, and every plain refund was then
// notified as a chargeback. A chargeback spelling that is a PPaaS status, or
// a spelling both a chargeback and a status, is a configuration error naming
// the field.
func TestConfigChargebackSpellingThatIsAStatusRefused(t *testing.T) {
	c := DefaultConfig()
	c.Serial, c.Model = "2097CD800007", "DX8000"
	for _, spec := range []string{"REFUNDED=charged_back", "AUTHORIZED=approved,authorized=charged_back"} {
		c.PPaaSStatuses = spec
		require.ErrorContains(t, c.Validate(), "ppaas_statuses", spec)
	}
}
