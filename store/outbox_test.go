package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestOutboxFIFOAndAck(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	opts := Options{Now: clk.Now}
	s, _ := openTest(t, opts)

	recs := appendN(t, s, KindReceipt, 10)
	for i, r := range recs {
		require.Equal(t, uint64(i+1), r.Seq, "sequence numbers are dense and start at 1")
		require.NotEqual(t, uuid.Nil, r.Key)
		require.Equal(t, clk.Now(), r.Created)
		require.Equal(t, clk.Now().Add(7*24*time.Hour), r.Expires, "default TTL")
	}
	require.Equal(t, int64(10), s.Stats().Depth)

	// Reopen in the middle: order and content survive.
	s = reopen(t, s, opts)
	for i := range recs {
		got, ok, err := s.Lease(ctx, clk.Now())
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, recs[i].Seq, got.Seq)
		require.Equal(t, recs[i].Key, got.Key)
		require.Equal(t, recs[i].Payload, got.Payload)
		require.NoError(t, s.Ack(ctx, got.Seq))
		if i == 4 {
			s = reopen(t, s, opts)
		}
	}
	_, ok, err := s.Lease(ctx, clk.Now())
	require.NoError(t, err)
	require.False(t, ok)
	st := s.Stats()
	require.Zero(t, st.Depth)
	require.Zero(t, st.Bytes)
	require.ErrorIs(t, s.Ack(ctx, recs[0].Seq), ErrNotFound)

	// Sequence numbers are never reused, even after the outbox drained and reopened.
	s = reopen(t, s, opts)
	r, err := s.Append(ctx, Event{Kind: KindReceipt})
	require.NoError(t, err)
	require.Equal(t, uint64(11), r.Seq)
}

func TestOutboxNackReschedules(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	s, _ := openTest(t, Options{Now: clk.Now})
	recs := appendN(t, s, KindTransactionResult, 2)

	next := clk.Now().Add(time.Minute)
	require.NoError(t, s.Nack(ctx, recs[0].Seq, next, "503 from PPaaS"))

	_, ok, err := s.Lease(ctx, clk.Now())
	require.NoError(t, err)
	require.False(t, ok, "head not due: the stream waits, it does not skip ahead")

	head, ok, err := s.Peek(ctx, clk.Now())
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, recs[0].Seq, head.Seq)
	require.Equal(t, uint32(1), head.Attempts)
	require.Equal(t, next, head.NextAttempt)
	require.Equal(t, "503 from PPaaS", head.LastError)

	clk.Advance(time.Minute)
	got, ok, err := s.Lease(ctx, clk.Now())
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, recs[0].Seq, got.Seq)
	require.Equal(t, int64(1), s.Stats().Nacked)
	require.ErrorIs(t, s.Nack(ctx, 999, next, "x"), ErrNotFound)
}

func TestOutboxBounds(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		fill     int
		kind     Kind
		wantFull bool
	}{
		{"count bound refuses receipt", Options{MaxCount: 3}, 3, KindReceipt, true},
		{"count bound refuses device status", Options{MaxCount: 3}, 3, KindDeviceStatus, true},
		{"count bound refuses nexo event", Options{MaxCount: 3}, 3, KindNexoEvent, true},
		{"count bound accepts transaction result", Options{MaxCount: 3}, 3, KindTransactionResult, false},
		{"count bound accepts advice", Options{MaxCount: 3}, 3, KindAdvice, false},
		{"below bound accepts receipt", Options{MaxCount: 3}, 2, KindReceipt, false},
		{"byte bound refuses receipt", Options{MaxBytes: 300}, 3, KindReceipt, true},
		{"byte bound accepts advice", Options{MaxBytes: 300}, 3, KindAdvice, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			s, _ := openTest(t, tt.opts)
			for range tt.fill {
				_, err := s.Append(ctx, Event{Kind: KindAdvice, Payload: make([]byte, 64)})
				require.NoError(t, err)
			}
			_, err := s.Append(ctx, Event{Kind: tt.kind, Payload: make([]byte, 64)})
			if tt.wantFull {
				require.ErrorIs(t, err, ErrOutboxFull)
				require.Equal(t, int64(1), s.Stats().Refused)
				require.Equal(t, int64(tt.fill), s.Stats().Depth, "refusal stores nothing")
			} else {
				require.NoError(t, err)
				require.Equal(t, int64(tt.fill+1), s.Stats().Depth)
			}
		})
	}
}

func TestOutboxRefusalDoesNotFailBatch(t *testing.T) {
	// Refused and accepted appends committed in the same group: the refusal
	// must not roll back its neighbours.
	ctx := t.Context()
	s, _ := openTest(t, Options{MaxCount: 10})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, full int
	for i := range 200 {
		wg.Go(func() {
			kind := KindReceipt
			if i%2 == 0 {
				kind = KindTransactionResult
			}
			_, err := s.Append(ctx, Event{Kind: kind})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrOutboxFull):
				full++
			default:
				t.Errorf("append: %v", err)
			}
		})
	}
	wg.Wait()
	require.Equal(t, 200, ok+full)
	require.GreaterOrEqual(t, ok, 100, "every transaction result is accepted")
	recs, err := s.List(ctx, 1000)
	require.NoError(t, err)
	require.Len(t, recs, ok)
	require.Equal(t, int64(ok), s.Stats().Depth)
}

func TestOutboxValidation(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{MaxRecordBytes: 10})
	_, err := s.Append(ctx, Event{Kind: KindUnknown})
	require.Error(t, err)
	_, err = s.Append(ctx, Event{Kind: Kind(99)})
	require.Error(t, err)
	_, err = s.Append(ctx, Event{Kind: KindReceipt, Payload: make([]byte, 11)})
	require.ErrorIs(t, err, ErrTooLarge)
	key := uuid.New()
	r, err := s.Append(ctx, Event{Kind: KindReceipt, Key: key})
	require.NoError(t, err)
	require.Equal(t, key, r.Key, "caller-chosen idempotency key is kept")
}

func TestOutboxExpiryToDeadLetter(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	s, _ := openTest(t, Options{Now: clk.Now})
	short1, err := s.Append(ctx, Event{Kind: KindDeviceStatus, TTL: time.Minute})
	require.NoError(t, err)
	short2, err := s.Append(ctx, Event{Kind: KindDeviceStatus, TTL: time.Minute})
	require.NoError(t, err)
	long, err := s.Append(ctx, Event{Kind: KindTransactionResult, TTL: time.Hour})
	require.NoError(t, err)
	never, err := s.Append(ctx, Event{Kind: KindTransactionResult, TTL: -1})
	require.NoError(t, err)
	require.True(t, never.Expires.IsZero())

	clk.Advance(2 * time.Minute)
	head, ok, err := s.Lease(ctx, clk.Now())
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, long.Seq, head.Seq, "expired heads moved out of the way")

	st := s.Stats()
	require.Equal(t, int64(2), st.Dead)
	require.Equal(t, int64(2), st.Expired)
	require.Equal(t, int64(2), st.Depth)
	dead, err := s.ListDead(ctx, 10)
	require.NoError(t, err)
	require.Len(t, dead, 2)
	require.Equal(t, short1.Key, dead[0].Key)
	require.Equal(t, short2.Key, dead[1].Key)
	require.Equal(t, "expired", dead[0].LastError)
	require.Equal(t, clk.Now(), dead[0].DeadAt)

	// Retry brings them back at the tail with a fresh TTL of the same length.
	n, err := s.RetryDead(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	recs, err := s.List(ctx, 10)
	require.NoError(t, err)
	require.Len(t, recs, 4)
	require.Equal(t, []uuid.UUID{long.Key, never.Key, short1.Key, short2.Key},
		[]uuid.UUID{recs[0].Key, recs[1].Key, recs[2].Key, recs[3].Key})
	require.Greater(t, recs[2].Seq, never.Seq, "retried records get new sequence numbers")
	require.Equal(t, clk.Now().Add(time.Minute), recs[2].Expires)
	require.Zero(t, recs[2].Attempts)
	require.Zero(t, s.Stats().Dead)
}

func TestDeadLetterRetryPurge(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	opts := Options{Now: clk.Now}
	s, _ := openTest(t, opts)
	recs := appendN(t, s, KindReceipt, 5)
	require.NoError(t, s.DeadLetter(ctx, recs[1].Seq, "permanent: 400 bad payload"))
	require.NoError(t, s.DeadLetter(ctx, recs[3].Seq, "permanent: 400 bad payload"))
	require.ErrorIs(t, s.DeadLetter(ctx, recs[3].Seq, "again"), ErrNotFound)

	s = reopen(t, s, opts)
	st := s.Stats()
	require.Equal(t, int64(3), st.Depth)
	require.Equal(t, int64(2), st.Dead)
	require.Positive(t, st.DeadBytes)

	n, err := s.RetryDead(ctx, recs[3].Seq)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = s.RetryDead(ctx, 12345)
	require.ErrorIs(t, err, ErrNotFound)

	n, err = s.PurgeDead(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	s = reopen(t, s, opts)
	st = s.Stats()
	require.Equal(t, int64(4), st.Depth)
	require.Zero(t, st.Dead)
	require.Zero(t, st.DeadBytes)
	dead, err := s.ListDead(ctx, 10)
	require.NoError(t, err)
	require.Empty(t, dead)
}

func TestRetryDeadChunks(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, MaxCount: 1 << 30})
	const n = moveChunk + 123
	recs := appendN(t, s, KindAdvice, n)
	for _, r := range recs {
		require.NoError(t, s.DeadLetter(ctx, r.Seq, "x"))
	}
	got, err := s.RetryDead(ctx)
	require.NoError(t, err)
	require.Equal(t, n, got)
	st := s.Stats()
	require.Equal(t, int64(n), st.Depth)
	require.Zero(t, st.Dead)
	list, err := s.List(ctx, n)
	require.NoError(t, err)
	for i := range list {
		require.Equal(t, recs[i].Key, list[i].Key, "retry keeps the original order")
	}
}

func TestStatsOldestAgeAndCounters(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	s, _ := openTest(t, Options{Now: clk.Now})
	require.Zero(t, s.Stats().OldestAge)
	appendN(t, s, KindReceipt, 3)
	clk.Advance(90 * time.Second)
	st := s.Stats()
	require.Equal(t, 90*time.Second, st.OldestAge)
	require.Equal(t, int64(3), st.Appended)
	require.Positive(t, st.Commits)
	require.GreaterOrEqual(t, st.Ops, st.Commits)
	require.NoError(t, s.Ack(ctx, 1))
	require.Equal(t, int64(1), s.Stats().Acked)
}

func TestAppendedNotification(t *testing.T) {
	s, _ := openTest(t, Options{})
	select {
	case <-s.Appended():
		t.Fatal("notification before any append")
	default:
	}
	appendN(t, s, KindReceipt, 3)
	select {
	case <-s.Appended():
	case <-t.Context().Done():
		t.Fatal("no notification")
	}
}

func TestClosedStore(t *testing.T) {
	s, _ := openTest(t, Options{})
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")
	_, err := s.Append(context.Background(), Event{Kind: KindReceipt})
	require.ErrorIs(t, err, ErrClosed)
	_, _, err = s.Peek(context.Background(), time.Now())
	require.ErrorIs(t, err, ErrClosed)
}

func TestCloseFlushesPendingWrites(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var stored []uuid.UUID
	for range 32 {
		wg.Go(func() {
			for range 20 {
				r, err := s.Append(ctx, Event{Kind: KindTransactionResult})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				stored = append(stored, r.Key)
				mu.Unlock()
			}
		})
	}
	require.NoError(t, s.Close()) // races with the producers on purpose
	wg.Wait()
	s2, err := Open(ctx, s.Path(), Options{})
	require.NoError(t, err)
	defer s2.Close()
	recs, err := s2.List(ctx, 10000)
	require.NoError(t, err)
	have := map[uuid.UUID]bool{}
	for _, r := range recs {
		have[r.Key] = true
	}
	for _, k := range stored {
		require.True(t, have[k], "append acknowledged before Close must be stored")
	}
}
