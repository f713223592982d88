package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func runR(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runRefund(t.Context(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

// `agent refund` names what is missing and writes nothing it was not asked
// to; the whole close is tested in package agent (refund_close_test.go).
func TestRefundCommandRefusals(t *testing.T) {
	dir := queueDataDir(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing command (list, close)"},
		{[]string{"reopen"}, `unknown command "reopen"`},
		{[]string{"close", "-data-dir", dir}, "missing the refund's POI transaction id"},
		{[]string{"close", "t1", "-data-dir", dir, "-yes"}, "-refunded or -not-refunded"},
		{[]string{"close", "t1", "-data-dir", dir, "-refunded", "-not-refunded", "-yes"}, "-refunded or -not-refunded"},
		{[]string{"close", "t1", "-data-dir", dir, "-refunded"}, "add -yes"},
		{[]string{"close", "t1", "-data-dir", dir, "-refunded", "-yes"}, "not a refund given up to a person"},
		{[]string{"close", "nope", "-data-dir", dir, "-not-refunded", "-yes"}, "no such transaction"},
		{[]string{"list", "-data-dir", t.TempDir()}, "no store at"},
	} {
		_, err := runR(t, tc.args...)
		require.ErrorContains(t, err, tc.want, "%q", tc.args)
	}
	out, err := runR(t, "list", "-data-dir", dir)
	require.NoError(t, err)
	require.Contains(t, out, "no refund is waiting for a person")
	out, err = runR(t, "list", "-json", "-data-dir", dir)
	require.NoError(t, err)
	require.JSONEq(t, "[]", out)
}
