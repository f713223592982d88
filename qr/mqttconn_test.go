package qr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/fake"
	"github.com/termagent/termagent/ppaas"
)

// fakeBroker accepts one connection on loopback and gives the test its end.
func fakeBroker(t *testing.T) (url string, accepted <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { c.Close() })
		ch <- c
	}()
	return "tcp://" + ln.Addr().String(), ch
}

func readPacket(t *testing.T, c net.Conn) packets.ControlPacket {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	p, err := packets.ReadPacket(c)
	require.NoError(t, err)
	return p
}

func sendPacket(t *testing.T, c net.Conn, p packets.ControlPacket) {
	t.Helper()
	require.NoError(t, p.Write(c))
}

func publish(id uint16, payload string) *packets.PublishPacket {
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.Qos, p.MessageID, p.TopicName, p.Payload = 1, id, ppaas.EventTopic("S1"), []byte(payload)
	return p
}

// recordingHandler records the events it applied, in order.
type recordingHandler struct {
	mu  sync.Mutex
	ids []string
}

func (h *recordingHandler) HandleEvent(_ context.Context, ev ppaas.Event) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids = append(h.ids, ev.EventID)
	return nil
}

func (h *recordingHandler) applied() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ids...)
}

type tokenCreds struct{}

func (tokenCreds) Token(context.Context) (string, error) { return "tok-1", nil }
func (tokenCreds) Invalidate(string)                     {}

// Issue 17: the Subscriber's own MQTT session (paho's client passed every
// event through four goroutines). What the broker sees: a persistent-session
// CONNECT with the device's credentials, a QoS 1 SUBSCRIBE, each PUBACK only
// once its event was applied, in order (also for messages of the session
// delivered before the SUBACK), PINGREQs at the keep-alive, and DISCONNECT at
// shutdown.
func TestMQTTSessionAsTheBrokerSeesIt(t *testing.T) {
	h := &recordingHandler{}
	s, c, cancel := subscribedToFakeBroker(t, h, time.Second)
	cp, ok := readPacket(t, c).(*packets.ConnectPacket)
	require.True(t, ok)
	require.Equal(t, "MQTT", cp.ProtocolName)
	require.Equal(t, byte(4), cp.ProtocolVersion)
	require.False(t, cp.CleanSession, "persistent session: events queued while offline are delivered")
	require.Equal(t, "S1", cp.ClientIdentifier)
	require.Equal(t, "S1", cp.Username)
	require.Equal(t, "tok-1", string(cp.Password))
	require.Equal(t, uint16(1), cp.Keepalive)
	sendPacket(t, c, packets.NewControlPacket(packets.Connack))

	event := func(id string) string {
		return `{"eventId":"` + id + `","type":"transaction.status","transactionId":"qr-1","status":"pending","sequence":1}`
	}
	sendPacket(t, c, publish(5, event("queued"))) // of the session, before the SUBACK
	var sub *packets.SubscribePacket
	var acks []uint16
	for sub == nil {
		switch p := readPacket(t, c).(type) {
		case *packets.SubscribePacket:
			sub = p
		case *packets.PubackPacket:
			acks = append(acks, p.MessageID)
		default:
			t.Fatalf("unexpected %T", p)
		}
	}
	require.Equal(t, []string{ppaas.EventTopic("S1")}, sub.Topics)
	require.Equal(t, []byte{1}, sub.Qoss)
	sa := packets.NewControlPacket(packets.Suback).(*packets.SubackPacket)
	sa.MessageID, sa.ReturnCodes = sub.MessageID, []byte{1}
	sendPacket(t, c, sa)
	require.NoError(t, s.WaitSubscribed(t.Context()))
	sendPacket(t, c, publish(6, event("live")))

	pinged := false
	for len(acks) < 2 || !pinged {
		switch p := readPacket(t, c).(type) {
		case *packets.PubackPacket:
			acks = append(acks, p.MessageID)
			// The next event may be applied already (it was sent before
			// this PUBACK was read): never fewer applied than acked.
			require.GreaterOrEqual(t, len(h.applied()), len(acks), "acknowledged only once applied")
		case *packets.PingreqPacket:
			pinged = true
			sendPacket(t, c, packets.NewControlPacket(packets.Pingresp))
		default:
			t.Fatalf("unexpected %T", p)
		}
	}
	require.Equal(t, []uint16{5, 6}, acks)
	require.Equal(t, []string{"queued", "live"}, h.applied())

	cancel()
	for {
		p := readPacket(t, c)
		if _, ok := p.(*packets.DisconnectPacket); ok {
			break
		}
	}
}

// A refusal in the CONNACK is the broker's answer, told apart: not
// authorized is what the Subscriber backs off from.
func TestMQTTConnectRefused(t *testing.T) {
	url, accepted := fakeBroker(t)
	go func() {
		c := <-accepted
		if _, err := packets.ReadPacket(c); err != nil {
			return
		}
		ack := packets.NewControlPacket(packets.Connack).(*packets.ConnackPacket)
		ack.ReturnCode = packets.ErrRefusedNotAuthorised
		_ = ack.Write(c)
	}()
	_, err := dialMQTT(t.Context(), url, nil, "S1", "S1", "tok", time.Second, 5*time.Second)
	require.ErrorIs(t, err, packets.ErrorRefusedNotAuthorised)
}

// Everything a peer controls is bounded: a packet other than a PUBLISH
// announcing more than maxMQTTPacket ends the session before anything of it
// is allocated (a PUBLISH is read past: TestMQTTOversizedEventIsAckedAndSkipped).
func TestMQTTPacketOverTheBoundEndsTheSession(t *testing.T) {
	url, accepted := fakeBroker(t)
	go func() {
		c := <-accepted
		if _, err := packets.ReadPacket(c); err != nil {
			return
		}
		_ = packets.NewControlPacket(packets.Connack).Write(c)
		// A SUBACK announcing 200 MiB, and nothing after it.
		_, _ = c.Write([]byte{0x90, 0x80, 0x80, 0x80, 0x64})
	}()
	c, err := dialMQTT(t.Context(), url, nil, "S1", "S1", "tok", time.Second, 5*time.Second)
	require.NoError(t, err)
	defer c.close()
	handled := false
	err = c.run(func(*mqttMessage) { handled = true })
	require.ErrorIs(t, err, errMQTTProtocol)
	require.False(t, handled)
}

// remainingLength decodes the fixed header's variable-length integer (as
// remainingOf, written out plainly), refuses more than 4 bytes of it, and
// never consumes input: the packet is then read whole.
func FuzzRemainingLength(f *testing.F) {
	for _, seed := range [][]byte{{0x30, 0x00}, {0x30, 0x7f}, {0x30, 0x80, 0x01}, {0x30, 0xff, 0xff, 0xff, 0x7f}, {0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, {0x30}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		n, err := remainingLength(br)
		rest, rerr := io.ReadAll(br)
		require.NoError(t, rerr)
		require.Equal(t, b, append([]byte{}, rest...), "nothing consumed")
		switch {
		case err == nil:
			require.Equal(t, remainingOf(b), n)
			require.Less(t, n, 1<<28)
		case errors.Is(err, errMQTTProtocol):
			require.GreaterOrEqual(t, len(b), 5)
			require.NotZero(t, b[4]&0x80, "five length bytes: the fourth continues")
		default:
			require.ErrorIs(t, err, io.EOF, "a header cut short")
		}
	})
}

// remainingOf decodes the remaining length of b's fixed header.
func remainingOf(b []byte) int {
	n, mul := 0, 1
	for _, x := range b[1:] {
		n += int(x&0x7f) * mul
		mul *= 128
		if x&0x80 == 0 {
			break
		}
	}
	return n
}

// The broker accepts the session, then drops the connection before its
// SUBACK (a session takeover, a broker restart): subscribe returns the lost
// connection at once, not "timed out" after Timeout.
func TestMQTTSubscribeNoticesTheConnectionDropped(t *testing.T) {
	url, accepted := fakeBroker(t)
	go func() {
		c := <-accepted
		defer c.Close()
		if _, err := packets.ReadPacket(c); err != nil { // CONNECT
			return
		}
		_ = packets.NewControlPacket(packets.Connack).Write(c)
		_, _ = packets.ReadPacket(c) // SUBSCRIBE, never answered
	}()
	c, err := dialMQTT(t.Context(), url, nil, "S1", "S1", "tok", 30*time.Second, time.Minute)
	require.NoError(t, err)
	defer c.close()
	go func() { _ = c.run(func(*mqttMessage) {}) }()
	got := make(chan error, 1)
	go func() { _, err := c.subscribe(t.Context(), "t"); got <- err }()
	select {
	case err := <-got:
		require.ErrorContains(t, err, "connection lost before SUBACK")
	case <-time.After(20 * time.Second):
		t.Fatal("subscribe waits for a SUBACK on a connection that is gone")
	}
}

// One event over maxMQTTPacket used to end the session unacknowledged, and
// the broker delivered it first again on every session: no event was ever
// pushed again. It is read past (its payload discarded), acknowledged,
// counted, and the approval after it is applied on the same session.
func TestMQTTOversizedEventIsAckedAndSkipped(t *testing.T) {
	h := &recordingHandler{}
	s, c, _ := subscribedToFakeBroker(t, h, 30*time.Second)
	_, ok := readPacket(t, c).(*packets.ConnectPacket)
	require.True(t, ok)
	sendPacket(t, c, packets.NewControlPacket(packets.Connack))
	sub, ok := readPacket(t, c).(*packets.SubscribePacket)
	require.True(t, ok)
	sa := packets.NewControlPacket(packets.Suback).(*packets.SubackPacket)
	sa.MessageID, sa.ReturnCodes = sub.MessageID, []byte{1}
	sendPacket(t, c, sa)
	require.NoError(t, s.WaitSubscribed(t.Context()))

	event := func(id, reason string) string {
		return `{"eventId":"` + id + `","transactionId":"qr-1","status":"approved","statusReason":"` + reason + `","sequence":2}`
	}
	sendPacket(t, c, publish(7, event("big", strings.Repeat("z", 300<<10))))
	sendPacket(t, c, publish(8, event("approval", "ok")))
	var acks []uint16
	for len(acks) < 2 {
		switch p := readPacket(t, c).(type) {
		case *packets.PubackPacket:
			acks = append(acks, p.MessageID)
		case *packets.PingreqPacket:
		default:
			t.Fatalf("unexpected %T", p)
		}
	}
	require.Equal(t, []uint16{7, 8}, acks, "the oversized event acknowledged, in order")
	require.Equal(t, []string{"approval"}, h.applied())
	require.Equal(t, uint64(1), s.Stats().OversizedEvents)
	require.True(t, s.Connected(), "the session stays up")
	sendPacket(t, c, publish(9, event("after", "ok")))
	pa, ok := readPacket(t, c).(*packets.PubackPacket)
	require.True(t, ok)
	require.Equal(t, uint16(9), pa.MessageID, "the same session goes on")
	require.Equal(t, []string{"approval", "after"}, h.applied())
}

// Reading past an oversized PUBLISH buffers none of it: the topic is kept
// clipped, the packet identifier and flags read, the payload discarded; a
// QoS 2 one (never subscribed to) is a protocol error.
func TestMQTTReadPastOversizedPublish(t *testing.T) {
	var buf bytes.Buffer
	p := publish(42, strings.Repeat("x", 4<<20))
	p.TopicName = strings.Repeat("t", 1000)
	p.Dup = true
	require.NoError(t, p.Write(&buf))
	small := publish(43, "{}")
	require.NoError(t, small.Write(&buf))
	wire := buf.Bytes()

	c := &mqttConn{br: bufio.NewReader(bytes.NewReader(wire))}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, n, err := c.readPacket(true)
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("read past a %d-byte PUBLISH: %d bytes allocated", n, allocated)
	require.Less(t, allocated, uint64(64<<10), "the payload was buffered")
	gp := got.(*packets.PublishPacket)
	require.Equal(t, 2+1000+2+4<<20, n, "the remaining length")
	require.Equal(t, uint16(42), gp.MessageID)
	require.Equal(t, byte(1), gp.Qos)
	require.True(t, gp.Dup)
	require.Equal(t, strings.Repeat("t", maxSkippedTopic), gp.TopicName)
	require.Nil(t, gp.Payload)
	next, n, err := c.readPacket(true)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, uint16(43), next.(*packets.PublishPacket).MessageID, "the next packet read whole")

	q2 := bytes.Clone(wire)
	q2[0] = q2[0]&^0x06 | 0x04 // QoS 2
	c = &mqttConn{br: bufio.NewReader(bytes.NewReader(q2))}
	_, _, err = c.readPacket(true)
	require.ErrorIs(t, err, errMQTTProtocol)
	c = &mqttConn{br: bufio.NewReader(bytes.NewReader(wire))}
	_, err = c.read()
	require.ErrorIs(t, err, errMQTTProtocol, "read (the CONNACK's) still refuses it")
}

// subscribedToFakeBroker runs a Subscriber (serial S1, handler h) against a
// fake broker until the test ends or cancel, and returns it with the
// broker's end of its connection; Run must end without an error.
func subscribedToFakeBroker(t *testing.T, h EventHandler, keepAlive time.Duration) (*Subscriber, net.Conn, context.CancelFunc) {
	t.Helper()
	url, accepted := fakeBroker(t)
	s, err := NewSubscriber(SubscriberConfig{BrokerURL: url, Serial: "S1", Credentials: tokenCreds{}, Events: &fake.EventLog{}, Handler: h,
		KeepAlive: keepAlive, Timeout: 5 * time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ran:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	select {
	case c := <-accepted:
		return s, c, cancel
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
		return nil, nil, nil
	}
}
