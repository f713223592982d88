package qr

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/fake"
	"github.com/termagent/termagent/ppaas"
)

// delivery is one MQTT delivery; acks counts its PUBACKs.
type delivery struct {
	payload []byte
	acks    int
}

func (m *delivery) Duplicate() bool   { return false }
func (m *delivery) Qos() byte         { return 1 }
func (m *delivery) Retained() bool    { return false }
func (m *delivery) Topic() string     { return ppaas.EventTopic("S1") }
func (m *delivery) MessageID() uint16 { return 1 }
func (m *delivery) Payload() []byte   { return m.payload }
func (m *delivery) Ack()              { m.acks++ }

// failingHandler fails its first fail calls (a journal write that did not
// commit: fsync error, store closed at shutdown) and counts the events it
// applied.
type failingHandler struct {
	fail    int
	applied int
}

func (h *failingHandler) HandleEvent(context.Context, ppaas.Event) error {
	if h.fail > 0 {
		h.fail--
		return errors.New("journal after-sale update: store closed")
	}
	h.applied++
	return nil
}

// Review: an event was marked seen before it was applied; when applying it
// failed (the after-sale journal write), the unacked delivery came back on the
// next session, was found "seen", acked and dropped: the chargeback lost. It
// is marked only once applied, so the redelivery applies it; a duplicate
// after that is acked and not applied again.
func TestEventMarkedSeenOnlyOnceApplied(t *testing.T) {
	h := &failingHandler{fail: 1}
	log := &fake.EventLog{}
	s, err := NewSubscriber(SubscriberConfig{BrokerURL: "tcp://127.0.0.1:1", Serial: "S1", Credentials: noCreds{}, Events: log, Handler: h})
	require.NoError(t, err)
	payload := []byte(`{"eventId":"cb1","type":"transaction.status","transactionId":"qr-1","status":"refunded","provider":{"status":"CHARGED_BACK"}}`)

	first := &delivery{payload: payload}
	s.onMessage(t.Context(), first)
	require.Zero(t, first.acks, "not applied: left unacked for the broker to redeliver")
	seen, err := log.SeenEvent(t.Context(), "cb1")
	require.NoError(t, err)
	require.False(t, seen, "not applied: not marked seen")

	again := &delivery{payload: payload}
	s.onMessage(t.Context(), again)
	require.Equal(t, 1, again.acks)
	require.Equal(t, 1, h.applied, "the redelivery is applied")

	dup := &delivery{payload: payload}
	s.onMessage(t.Context(), dup)
	require.Equal(t, 1, dup.acks)
	require.Equal(t, 1, h.applied, "a duplicate of an applied event is not applied again")
}

type noCreds struct{}

func (noCreds) Token(context.Context) (string, error) { return "", errors.New("no token") }
func (noCreds) Invalidate(string)                     {}

// countingLog is an EventLog that counts its reads.
type countingLog struct {
	fake.EventLog
	reads int
}

func (l *countingLog) SeenEvent(ctx context.Context, id string) (bool, error) {
	l.reads++
	return l.EventLog.SeenEvent(ctx, id)
}

// dedupHandler de-duplicates the events it names itself.
type dedupHandler struct {
	failingHandler
	own map[string]bool // event ids it recognises again itself
}

func (h *dedupHandler) DeduplicatesEvent(ev ppaas.Event) bool { return h.own[ev.EventID] }

// Issue 17: the event log was read (a bbolt read transaction) before every
// event, also before the approval a payment in flight waits for, which the
// engine recognises again by itself. A handler that de-duplicates an event
// gets it without that read; the event is still marked once applied, and
// every other event is still checked.
func TestEventTheHandlerDeduplicatesSkipsTheEventLog(t *testing.T) {
	h := &dedupHandler{own: map[string]bool{"ev-inflight": true}}
	log := &countingLog{}
	s, err := NewSubscriber(SubscriberConfig{BrokerURL: "tcp://127.0.0.1:1", Serial: "S1", Credentials: noCreds{}, Events: log, Handler: h})
	require.NoError(t, err)
	inflight := []byte(`{"eventId":"ev-inflight","type":"transaction.status","transactionId":"qr-1","clientTransactionId":"c1","status":"approved","sequence":2}`)

	for range 2 {
		d := &delivery{payload: inflight}
		s.onMessage(t.Context(), d)
		require.Equal(t, 1, d.acks)
	}
	require.Zero(t, log.reads, "the handler de-duplicates this event: the log is not read")
	require.Equal(t, 2, h.applied, "both deliveries reach the handler, which ignores the second itself")
	seen, err := log.EventLog.SeenEvent(t.Context(), "ev-inflight")
	require.NoError(t, err)
	require.True(t, seen, "still marked once applied")

	other := []byte(`{"eventId":"ev-after","type":"transaction.status","transactionId":"qr-2","status":"refunded","sequence":5}`)
	for range 2 {
		d := &delivery{payload: other}
		s.onMessage(t.Context(), d)
		require.Equal(t, 1, d.acks)
	}
	require.Equal(t, 2, log.reads, "an event the handler does not de-duplicate is checked")
	require.Equal(t, 3, h.applied, "and its duplicate dropped")
}

// orderedDelivery checks, when it is acked, that its event was applied and
// marked seen before.
type orderedDelivery struct {
	delivery
	t       *testing.T
	h       *failingHandler
	log     *fake.EventLog
	eventID string
}

func (m *orderedDelivery) Ack() {
	seen, err := m.log.SeenEvent(m.t.Context(), m.eventID)
	require.NoError(m.t, err)
	require.True(m.t, seen, "acked before the event was marked seen")
	require.Equal(m.t, 1, m.h.applied, "acked before the event was applied")
	m.delivery.Ack()
}

// Issue 17: the subscriber yields to the payment an event decided before
// it acks the event; the ack still comes after the event is applied and
// marked.
func TestEventAckedAfterAppliedAndMarked(t *testing.T) {
	h := &failingHandler{}
	log := &fake.EventLog{}
	s, err := NewSubscriber(SubscriberConfig{BrokerURL: "tcp://127.0.0.1:1", Serial: "S1", Credentials: noCreds{}, Events: log, Handler: h})
	require.NoError(t, err)
	m := &orderedDelivery{delivery: delivery{payload: []byte(`{"eventId":"a1","transactionId":"qr-1","status":"approved","sequence":2}`)},
		t: t, h: h, log: log, eventID: "a1"}
	require.NoError(t, s.onMessage(t.Context(), m))
	require.Equal(t, 1, m.acks)
}
