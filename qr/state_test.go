package qr

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/termagent/termagent/ppaas"
)

func TestCanMove(t *testing.T) {
	tests := []struct {
		from, to ppaas.State
		ok       bool
	}{
		{ppaas.Created, ppaas.AwaitingConsumer, true},
		{ppaas.Created, ppaas.Pending, true},
		{ppaas.Created, ppaas.Approved, true}, // events may be lost: intermediate states can be skipped
		{ppaas.AwaitingConsumer, ppaas.Pending, true},
		{ppaas.AwaitingConsumer, ppaas.Cancelled, true},
		{ppaas.AwaitingConsumer, ppaas.Expired, true},
		{ppaas.Pending, ppaas.Approved, true},
		{ppaas.Pending, ppaas.Declined, true},
		{ppaas.Pending, Unknown, true},
		{ppaas.Pending, ppaas.AwaitingConsumer, false}, // never backwards
		{ppaas.Pending, ppaas.Created, false},
		{ppaas.Approved, ppaas.Declined, false},
		{ppaas.Approved, ppaas.Cancelled, false},
		{ppaas.Approved, ppaas.Refunded, true},
		{ppaas.Declined, ppaas.Approved, false},
		{ppaas.Cancelled, ppaas.Approved, false},
		{ppaas.Expired, ppaas.Pending, false},
		{ppaas.Refunded, ppaas.Approved, false},
		{Unknown, ppaas.Approved, true}, // the truth learnt later
		{Unknown, ppaas.Cancelled, true},
		{Unknown, ppaas.Created, false},
		{ppaas.Approved, ppaas.Approved, false}, // staying is not a move
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
	for s, want := range map[ppaas.State]bool{
		ppaas.Created: false, ppaas.AwaitingConsumer: false, ppaas.Pending: false, Unknown: false,
		ppaas.Approved: true, ppaas.Declined: true, ppaas.Cancelled: true, ppaas.Expired: true, ppaas.Refunded: true,
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
