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
