package qr

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCanMove(t *testing.T) {
	tests := []struct {
		from, to State
		ok       bool
	}{
		{Created, AwaitingConsumer, true},
		{Created, Pending, true},
		{Created, Approved, true}, // events may be lost: intermediate states can be skipped
		{AwaitingConsumer, Pending, true},
		{AwaitingConsumer, Cancelled, true},
		{AwaitingConsumer, Expired, true},
		{Pending, Approved, true},
		{Pending, Declined, true},
		{Pending, Unknown, true},
		{Pending, AwaitingConsumer, false}, // never backwards
		{Pending, Created, false},
		{Approved, Declined, false},
		{Approved, Cancelled, false},
		{Approved, Refunded, true},
		{Declined, Approved, false},
		{Cancelled, Approved, false},
		{Expired, Pending, false},
		{Refunded, Approved, false},
		{Unknown, Approved, true}, // the truth learnt later
		{Unknown, Cancelled, true},
		{Unknown, Created, false},
		{Approved, Approved, false}, // staying is not a move
	}
	for _, tc := range tests {
		t.Run(string(tc.from)+"→"+string(tc.to), func(t *testing.T) {
			require.Equal(t, tc.ok, CanMove(tc.from, tc.to))
			m := machine{state: tc.from}
			err := m.move(tc.to)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrIllegalTransition)
			}
		})
	}
}

func TestFinal(t *testing.T) {
	for s, want := range map[State]bool{
		Created: false, AwaitingConsumer: false, Pending: false, Unknown: false,
		Approved: true, Declined: true, Cancelled: true, Expired: true, Refunded: true,
	} {
		require.Equal(t, want, s.Final(), s)
	}
}

func TestBackoffCappedWithJitter(t *testing.T) {
	for n := 1; n < 40; n++ {
		d := backoff(100*time.Millisecond, 2*time.Second, n)
		require.LessOrEqual(t, d, 2*time.Second)
		require.Positive(t, d)
	}
}
