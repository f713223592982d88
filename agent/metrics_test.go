package agent

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

func scrapeSize(t *testing.T, m *metrics) int {
	t.Helper()
	mfs, err := m.reg.Gather()
	require.NoError(t, err)
	var buf bytes.Buffer
	for _, mf := range mfs {
		_, err := expfmt.MetricFamilyToText(&buf, mf)
		require.NoError(t, err)
	}
	return buf.Len()
}

// What a peer sends never becomes a label value: 2,000 requests with
// distinct 20 KB categories, results and conditions add one "other" series.
func TestMetricLabelsFromClosedSets(t *testing.T) {
	m := newMetrics()
	m.knowMethods(map[string]qr.Method{"KB": {PaymentType: "KB", Scenario: ppaas.ConsumerScan}})
	m.ObserveRequest(nexo.CategoryPayment, nexo.Success, "", time.Millisecond)
	before := scrapeSize(t, m)
	for i := range 2000 {
		junk := fmt.Sprintf("%d-%s", i, strings.Repeat("x", 20<<10))
		m.ObserveRequest(nexo.MessageCategory(junk), nexo.Result(junk), nexo.ErrorCondition(junk), time.Millisecond)
		m.apmOutcome(junk, junk)
	}
	m.apmOutcome(string(qr.ResultApproved), "KB")
	after := scrapeSize(t, m)
	require.Less(t, after-before, 8<<10, "scrape grew %d bytes", after-before)
	series := map[string]float64{}
	mfs, err := m.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "termagent_") {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var ls []string
			for _, l := range mt.GetLabel() {
				ls = append(ls, l.GetValue())
			}
			series[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = mt.GetCounter().GetValue()
		}
	}
	require.Equal(t, map[string]float64{
		"termagent_nexo_requests_total{Payment,,Success}":  1,
		"termagent_nexo_requests_total{other,other,other}": 2000,
		"termagent_nexo_request_duration_seconds{Payment}": 0,
		"termagent_nexo_request_duration_seconds{other}":   0,
		"termagent_apm_transactions_total{other,other}":    2000,
		"termagent_apm_transactions_total{approved,KB}":    1,
	}, series)
}

func TestReadyzJournalWarning(t *testing.T) {
	require.Empty(t, journalWarning(store.JournalStats{Bytes: 89, MaxBytes: 100}))
	require.Empty(t, journalWarning(store.JournalStats{Bytes: 1 << 40}))
	require.Contains(t, journalWarning(store.JournalStats{Bytes: 93, MaxBytes: 100}), "journal at 93% of journal_max_bytes")
}
