package world

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim"
)

func TestCheckResponseRepeatedAndNotMessage(t *testing.T) {
	original := &nexo.Response{Status: nexo.ResponseStatus{Result: nexo.Failure, ErrorCondition: nexo.Aborted,
		AdditionalResponse: "reversed after the outcome was unknown: refunded at PPaaS"}}
	status := &nexo.Response{Status: nexo.ResponseStatus{Result: nexo.Success},
		TransactionStatus: &nexo.TransactionStatusResponse{Repeated: original}}

	for _, tc := range []struct {
		name string
		e    Expect
		want []string // problems, by substring; none: it holds
	}{
		{"holds", Expect{Result: "Success", Repeated: &Expect{Result: "Failure", ErrorCondition: "Aborted", Message: "refunded", NotMessage: "never created"}}, nil},
		{"repeated result", Expect{Repeated: &Expect{Result: "Success"}}, []string{`original response result is "Failure", want "Success"`}},
		{"repeated message", Expect{Repeated: &Expect{Message: "manual action"}}, []string{`original response message is`, "…manual action…"}},
		{"repeated notMessage", Expect{Repeated: &Expect{NotMessage: "refunded at"}}, []string{`want no "refunded at" in it`}},
		{"outer notMessage", Expect{NotMessage: "x", Repeated: &Expect{ErrorCondition: "Refusal"}}, []string{`original response errorCondition is "Aborted", want "Refusal"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problems, err := checkResponse(&tc.e, status)
			require.NoError(t, err)
			if tc.want == nil {
				require.Empty(t, problems)
				return
			}
			require.Len(t, problems, 1, "%v", problems)
			for _, w := range tc.want {
				require.Contains(t, problems[0], w)
			}
		})
	}
	// A response without an original response cannot satisfy repeated.
	problems, err := checkResponse(&Expect{Repeated: &Expect{Result: "Failure"}}, original)
	require.NoError(t, err)
	require.Equal(t, []string{"no original response (RepeatedMessageResponse) to check"}, problems)
}

func TestCheckPPaaS(t *testing.T) {
	tx := sim.SimTransaction{Transaction: ppaas.Transaction{TransactionID: "qr-1", PaymentType: "KB", Status: ppaas.Approved,
		PaymentAmount: ppaas.Amount{Amount: 2000, Currency: "EUR"}}, Charges: 1, RefundPending: 2000}
	one := 1
	require.NoError(t, checkPPaaS(&ExpectPPaaS{Status: "approved", Charged: "20", Refunded: "0.00", RefundPending: "20.00", Charges: &one}, tx))
	err := checkPPaaS(&ExpectPPaaS{Status: "refunded", Refunded: "20.00"}, tx)
	require.ErrorContains(t, err, `status is "approved", want "refunded"`)
	require.ErrorContains(t, err, "refunded is 0.00 EUR, want 20.00")
	require.ErrorContains(t, err, "refund pending 20.00")

	tx.Charges = 0
	require.ErrorContains(t, checkPPaaS(&ExpectPPaaS{Charged: "20.00"}, tx), "charged is 0.00 EUR, want 20.00")
	require.NoError(t, checkPPaaS(&ExpectPPaaS{Charged: "0"}, tx))

}

func TestApplyAgentConfig(t *testing.T) {
	c := agent.DefaultConfig()
	c.DataDir = "/data/here"
	require.NoError(t, applyAgentConfig(&c, map[string]json.RawMessage{
		"payment_timeout": json.RawMessage(`1500000000`), "strict": json.RawMessage(`true`)}))
	require.Equal(t, 1500*time.Millisecond, c.PaymentTimeout, "durations in nanoseconds")
	require.True(t, c.Strict)
	require.Equal(t, "/data/here", c.DataDir, "keys not named keep their value")

	err := applyAgentConfig(&c, map[string]json.RawMessage{"nope": json.RawMessage(`1`)})
	require.ErrorContains(t, err, `"nope" is not an agent configuration key`)
	err = applyAgentConfig(&c, map[string]json.RawMessage{"strict": json.RawMessage(`"yes"`)})
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "strict") || strings.Contains(err.Error(), "bool"), err.Error())
	require.True(t, c.Strict, "a failed override changes nothing")
}

func TestSettle(t *testing.T) {
	// Holds from the start: settles after the settling time.
	start := time.Now()
	require.NoError(t, settle(t.Context(), func() (bool, error) { return true, nil }))
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)

	// Never holds: the last error once the context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	n := 0
	err := settle(ctx, func() (bool, error) { n++; return false, fmt.Errorf("attempt %d", n) })
	require.ErrorContains(t, err, fmt.Sprintf("attempt %d", n))

	// A change within the settling time starts it again (a late duplicate
	// charge is caught).
	calls := 0
	ctx2, cancel2 := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel2()
	start = time.Now()
	require.NoError(t, settle(ctx2, func() (bool, error) { calls++; return calls != 5, errors.New("changed") }))
	require.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond)
}
