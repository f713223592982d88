package store

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func always(Record) bool { return true }

// Issue 10 item 3: a reversal advice (a critical kind) never expires by time
// alone, whatever TTL it was given — before, it moved silently to the dead
// letters after 7 days (or at once after an RTC reset). A non-critical record
// does expire, and Due hands it back so the caller can say so loudly.
func TestDueNeverExpiresCriticalKinds(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	s, _ := openTest(t, Options{Now: clk.Now})
	status, err := s.Append(ctx, Event{Kind: KindDeviceStatus, TTL: time.Minute})
	require.NoError(t, err)
	adv, err := s.Append(ctx, Event{Kind: KindAdvice, TTL: time.Minute})
	require.NoError(t, err)
	require.True(t, adv.Expires.IsZero())

	clk.Advance(30 * 24 * time.Hour)
	rec, ok, _, expired, err := s.Due(ctx, clk.Now(), always)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, adv.Seq, rec.Seq, "the advice is still there to deliver")
	require.Len(t, expired, 1)
	require.Equal(t, status.Seq, expired[0].Seq)
	require.Equal(t, int64(1), s.Stats().Dead)
}

// Records of one key are delivered in order; other keys do not wait for them.
func TestDueLanes(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	s, _ := openTest(t, Options{Now: clk.Now})
	k := uuid.New()
	a1, err := s.Append(ctx, Event{Kind: KindAdvice, Key: k})
	require.NoError(t, err)
	a2, err := s.Append(ctx, Event{Kind: KindAdvice, Key: k})
	require.NoError(t, err)
	other, err := s.Append(ctx, Event{Kind: KindTransactionResult})
	require.NoError(t, err)

	// a1 waits out a backoff: a2 (same key) waits behind it, other goes.
	require.NoError(t, s.Nack(ctx, a1.Seq, clk.Now().Add(time.Minute), "503"))
	notYet := func(r Record) bool { return !r.NextAttempt.After(clk.Now()) }
	rec, ok, next, _, err := s.Due(ctx, clk.Now(), notYet)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, other.Seq, rec.Seq)

	require.NoError(t, s.AckDeferred(other.Seq))
	_, ok, next, _, err = s.Due(ctx, clk.Now(), notYet)
	require.NoError(t, err)
	require.False(t, ok, "a2 waits for a1; other is acknowledged")
	require.Equal(t, clk.Now().Add(time.Minute), next)

	clk.Advance(time.Minute)
	rec, ok, _, _, err = s.Due(ctx, clk.Now(), notYet)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, a1.Seq, rec.Seq)
	require.NoError(t, s.Ack(ctx, a1.Seq))
	rec, ok, _, _, err = s.Due(ctx, clk.Now(), notYet)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, a2.Seq, rec.Seq)
}
