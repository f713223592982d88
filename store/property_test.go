package store

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// TestOutboxProperty drives the outbox with random interleavings of append,
// lease, ack, nack, dead-letter, retry and reopen, checking after every step
// against a model: nothing is lost, nothing is duplicated, order is kept.
func TestOutboxProperty(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rounds, steps := 8, 300
	if testing.Short() {
		rounds = 2
	}
	for round := range rounds {
		seed := seed + uint64(round)
		t.Logf("round %d seed %d (rerun: set seed in TestOutboxProperty)", round, seed)
		propertyRound(t, seed, steps)
		if t.Failed() {
			return
		}
	}
}

type modelRec struct {
	key  uuid.UUID
	next time.Time
}

func propertyRound(t *testing.T, seed uint64, steps int) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	clk := newFakeClock()
	opts := Options{Now: clk.Now, NoSync: true, MaxCount: 1 << 20, DefaultTTL: -1}
	s, _ := openTest(t, opts)

	var live []modelRec // outbox in order
	var dead []uuid.UUID
	for step := range steps {
		switch op := rng.IntN(100); {
		case op < 40:
			r, err := s.Append(ctx, Event{Kind: Kind(1 + rng.IntN(int(kindMax))), Payload: []byte{byte(step)}})
			if r.Kind.Critical() {
				require.NoError(t, err)
			} else if err != nil {
				require.ErrorIs(t, err, ErrOutboxFull)
				continue
			}
			live = append(live, modelRec{key: r.Key})
		case op < 65: // lease + ack
			r, ok, err := s.Lease(ctx, clk.Now())
			require.NoError(t, err)
			wantOK := len(live) > 0 && !live[0].next.After(clk.Now())
			require.Equal(t, wantOK, ok, "step %d: lease availability", step)
			if !ok {
				continue
			}
			require.Equal(t, live[0].key, r.Key, "step %d: lease returns the head", step)
			require.NoError(t, s.Ack(ctx, r.Seq))
			live = live[1:]
		case op < 75: // lease + nack
			r, ok, err := s.Peek(ctx, clk.Now())
			require.NoError(t, err)
			require.Equal(t, len(live) > 0, ok)
			if !ok {
				continue
			}
			next := clk.Now().Add(time.Duration(rng.IntN(3)) * time.Second)
			require.NoError(t, s.Nack(ctx, r.Seq, next, "down"))
			live[0].next = next
		case op < 80:
			clk.Advance(time.Second)
		case op < 85: // permanent failure of the head
			r, ok, err := s.Peek(ctx, clk.Now())
			require.NoError(t, err)
			if !ok {
				continue
			}
			require.NoError(t, s.DeadLetter(ctx, r.Seq, "permanent"))
			dead = append(dead, live[0].key)
			live = live[1:]
		case op < 88:
			n, err := s.RetryDead(ctx)
			require.NoError(t, err)
			require.Equal(t, len(dead), n)
			for _, k := range dead {
				live = append(live, modelRec{key: k})
			}
			dead = nil
		default:
			s = reopen(t, s, opts)
		}
		checkModel(t, s, step, live, dead)
	}
}

func checkModel(t *testing.T, s *Store, step int, live []modelRec, dead []uuid.UUID) {
	t.Helper()
	recs, err := s.List(t.Context(), len(live)+10)
	require.NoError(t, err)
	require.Len(t, recs, len(live), "step %d: outbox length", step)
	var prev uint64
	for i, r := range recs {
		require.Equal(t, live[i].key, r.Key, "step %d: outbox[%d]", step, i)
		require.Greater(t, r.Seq, prev, "step %d: sequence increases", step)
		prev = r.Seq
	}
	dl, err := s.ListDead(t.Context(), len(dead)+10)
	require.NoError(t, err)
	require.Len(t, dl, len(dead), "step %d: dead letters", step)
	st := s.Stats()
	require.Equal(t, int64(len(live)), st.Depth, "step %d: depth counter", step)
	require.Equal(t, int64(len(dead)), st.Dead, "step %d: dead counter", step)
	var bytes int64
	for _, r := range recs {
		bytes += int64(r.encodedSize())
	}
	require.Equal(t, bytes, st.Bytes, "step %d: byte counter", step)
}
