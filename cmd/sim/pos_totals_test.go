package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPOSTotalsAndReconcile(t *testing.T) {
	_, posFlags, _ := posWorld(t)
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runPOS(t.Context(), append(append([]string{}, posFlags...), args...), &out, &errOut)
		return out.String(), err
	}
	out, err := run("totals", "SaleID,ShiftNumber")
	require.NoError(t, err, out)
	require.Contains(t, out, "GetTotals Response: Success")
	require.Contains(t, out, "POI reconciliation period: 1")
	out, err = run("reconcile")
	require.NoError(t, err, out)
	require.Contains(t, out, "Reconciliation Response: Success")
	require.Contains(t, out, "POI reconciliation period: 1")
	out, err = run("totals")
	require.NoError(t, err, out)
	require.Contains(t, out, "POI reconciliation period: 2")
	out, err = run("reconcile", "previous", "1")
	require.NoError(t, err, out)
	require.Contains(t, out, "POI reconciliation period: 1")

	out, err = run("receipt", "NOPE")
	require.Error(t, err)
	require.Contains(t, out, "NotFound")
	_, err = run("receipt")
	require.ErrorContains(t, err, "want the ServiceID")

	_, err = run("reconcile", "yesterday")
	require.ErrorContains(t, err, "want sale, sync or previous ID")
	out, err = run("totals", "Brand")
	require.Error(t, err)
	require.Contains(t, out, "MessageFormat")
}
