package ppaas

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Issue 10 item 8: a status spelling the agent does not know is a pending
// state (keep polling), reported once per spelling and counted — before it was
// a decode error, i.e. an unknown outcome with a reversal that could never
// resolve. Configured spellings map to the state they name.
func TestStatusesTolerantDecoding(t *testing.T) {
	var reported []string
	s, err := ParseStatuses("AUTHORIZED=approved, Refused=declined")
	require.NoError(t, err)
	s.OnUnknown = func(raw string) { reported = append(reported, raw) }

	tx, err := s.DecodeTransaction([]byte(`{"transactionId":"x","status":"authorized"}`))
	require.NoError(t, err)
	require.Equal(t, Approved, tx.Status)
	require.Equal(t, "authorized", tx.RawStatus)
	for range 3 {
		ev, err := s.DecodeEvent([]byte(`{"eventId":"e","transactionId":"x","status":"PENDING_REVIEW"}`))
		require.NoError(t, err)
		require.Equal(t, Pending, ev.Status)
	}
	ev, err := s.DecodeEvent([]byte(`{"eventId":"e","transactionId":"x","status":"unknown"}`))
	require.NoError(t, err)
	require.Equal(t, Pending, ev.Status, "the agent-only state is not a PPaaS answer")
	require.Equal(t, []string{"PENDING_REVIEW", "unknown"}, reported, "logged once per spelling")
	require.Equal(t, int64(4), s.UnknownCount(), "every occurrence counted")

	// Without configuration, our own spellings still decode.
	tx, err = DecodeTransaction([]byte(`{"transactionId":"x","status":"confirming"}`))
	require.NoError(t, err)
	require.Equal(t, Confirming, tx.Status)

	for _, bad := range []string{"AUTHORIZED", "AUTHORIZED=paid", "=approved", "X=unknown"} {
		_, err := ParseStatuses(bad)
		require.Error(t, err, bad)
	}
	// A peer cannot grow the remembered spellings without bound.
	for i := range 1000 {
		s.State(string(rune('A'+i%26)) + string(rune(i)))
	}
	require.LessOrEqual(t, len(s.seen), maxSeenSpellings)
}

func FuzzParseStatuses(f *testing.F) {
	f.Add("AUTHORIZED=approved,PENDING=pending")
	f.Add("=,,x=")
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseStatuses(spec)
		if err != nil {
			return
		}
		for _, st := range s.m {
			if !st.wire() {
				t.Fatalf("mapped to a non-wire state %q", st)
			}
		}
	})
}
