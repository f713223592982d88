package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPOSRefundPartialThenTooMuch: `sim pos refund ID AMOUNT` refunds part of
// a payment; asking more than remains is refused, naming the remainder; a
// bad amount is refused before anything is sent.
func TestPOSRefundPartialThenTooMuch(t *testing.T) {
	_, posFlags, ctl := posWorld(t)
	pay := start(t.Context(), append([]string{"pos", "pay", "12.50", "EUR"}, posFlags...)...)
	m := waitFor(t, &pay.out, hintRx)
	poiID := m[1]
	out, err := runOut(t, append([]string{"consumer", "pay", poiID}, ctl...)...)
	require.NoError(t, err, out)
	require.NoError(t, pay.wait(t), pay.out.String())
	require.Contains(t, pay.out.String(), "to refund it: sim pos refund "+poiID+" [AMOUNT CURRENCY]")

	out, err = runOut(t, append([]string{"pos", "refund", poiID, "5.00", "EUR"}, posFlags...)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "Payment Response: Success")
	require.Contains(t, out, "5.00 EUR")

	out, err = runOut(t, append([]string{"pos", "refund", poiID, "8"}, posFlags...)...)
	require.Error(t, err, out)
	require.Contains(t, out, "Refusal")
	require.Contains(t, out, "7.50 EUR", "the refusal names what remains refundable")

	_, err = runOut(t, append([]string{"pos", "refund", poiID, "1.234", "EUR"}, posFlags...)...)
	require.ErrorContains(t, err, "refund:")
	_, err = runOut(t, append([]string{"pos", "refund"}, posFlags...)...)
	require.ErrorContains(t, err, "POI-TRANSACTION-ID [AMOUNT [CURRENCY]]")
}
