package qr

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// mqttConn is one MQTT 3.1.1 session of the Subscriber: a persistent session
// (clean session off) subscribed at QoS 1 to the device's topic. Its one
// reader goroutine decodes every packet and hands a PUBLISH to the handler
// itself, in order; the handler's Ack writes the PUBACK on the connection.
//
// Issue 17: paho's client passed each event through five goroutines (socket
// reader, incoming comms, two forwarding loops, router: four hand-offs on
// unbuffered channels) and every acknowledgement through two more hand-offs:
// on a payment's path, between the broker's delivery and the payment waiting
// for the approval. The
// Subscriber needs only this: connect, subscribe, receive, acknowledge, ping.
type mqttConn struct {
	conn      net.Conn
	br        *bufio.Reader
	keepAlive time.Duration
	timeout   time.Duration

	wmu sync.Mutex // one packet written at a time (reader's acks, pings, subscribe)

	subacks chan *packets.SubackPacket // the reader hands SUBACKs to subscribe
	ended   chan struct{}              // closed when run returns
	endErr  error                      // why run returned; read after ended is closed
}

// errMQTTProtocol: the broker sent something MQTT 3.1.1 does not allow here.
var errMQTTProtocol = errors.New("mqtt protocol error")

// maxMQTTPacket bounds what one packet from the broker may carry: an event is
// a few hundred bytes, and packets.ReadPacket allocates whatever length the
// header announces (up to 256 MiB).
const maxMQTTPacket = 256 << 10

// dialMQTT connects to broker (tcp://, mqtt://, or ssl://, tls://, mqtts://,
// tcps:// with tlsConfig) and completes the CONNECT handshake. A refusal by
// the broker wraps packets.ConnErrors' error for its return code.
func dialMQTT(ctx context.Context, broker string, tlsConfig *tls.Config, clientID, username, password string, keepAlive, timeout time.Duration) (*mqttConn, error) {
	u, err := url.Parse(broker)
	if err != nil {
		return nil, fmt.Errorf("broker URL: %w", err)
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nd := &net.Dialer{}
	var conn net.Conn
	switch u.Scheme {
	case "tcp", "mqtt":
		conn, err = nd.DialContext(dctx, "tcp", u.Host)
	case "ssl", "tls", "mqtts", "tcps":
		td := &tls.Dialer{NetDialer: nd, Config: tlsConfig}
		conn, err = td.DialContext(dctx, "tcp", u.Host)
	default:
		return nil, fmt.Errorf("broker URL %q: unsupported scheme %q", broker, u.Scheme)
	}
	if err != nil {
		return nil, err
	}
	c := &mqttConn{conn: conn, br: bufio.NewReader(conn), keepAlive: keepAlive, timeout: timeout, subacks: make(chan *packets.SubackPacket, 1), ended: make(chan struct{})}
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4
	cp.CleanSession = false
	cp.ClientIdentifier = clientID
	cp.UsernameFlag, cp.Username = true, username
	cp.PasswordFlag, cp.Password = true, []byte(password)
	cp.Keepalive = uint16(min(keepAlive/time.Second, 65535))
	stop := context.AfterFunc(dctx, func() { _ = conn.SetDeadline(time.Now()) }) // ctx ends the handshake
	defer stop()
	if dl, ok := dctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := c.write(cp); err != nil {
		conn.Close()
		return nil, err
	}
	p, err := c.read()
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("read CONNACK: %w", err)
	}
	ack, ok := p.(*packets.ConnackPacket)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("%w: %T instead of CONNACK", errMQTTProtocol, p)
	}
	if ack.ReturnCode != packets.Accepted {
		conn.Close()
		if e, ok := packets.ConnErrors[ack.ReturnCode]; ok {
			return nil, e
		}
		return nil, fmt.Errorf("%w: CONNACK return code %d", errMQTTProtocol, ack.ReturnCode)
	}
	if !stop() || conn.SetDeadline(time.Time{}) != nil {
		conn.Close()
		return nil, fmt.Errorf("connect: %w", context.Cause(dctx))
	}
	return c, nil
}

// read reads one packet, refusing one longer than maxMQTTPacket before
// anything of it is allocated.
func (c *mqttConn) read() (packets.ControlPacket, error) {
	p, _, err := c.readPacket(false)
	return p, err
}

// readPacket is read; with skip, a PUBLISH longer than maxMQTTPacket is read
// past instead of refused, its bytes discarded as they come (never buffered
// whole), and returned without its payload, with its length in oversize. A
// refused one would end the session unacknowledged, and the broker would
// deliver it first again on every session: no event would ever be pushed.
func (c *mqttConn) readPacket(skip bool) (p packets.ControlPacket, oversize int, err error) {
	n, err := remainingLength(c.br)
	if err != nil {
		return nil, 0, err
	}
	if n <= maxMQTTPacket {
		p, err := packets.ReadPacket(c.br)
		return p, 0, err
	}
	if first, _ := c.br.Peek(1); !skip || first[0]>>4 != packets.Publish {
		return nil, 0, fmt.Errorf("%w: packet of %d bytes, at most %d accepted", errMQTTProtocol, n, maxMQTTPacket)
	}
	pp, err := c.skipPublish(n)
	if err != nil {
		return nil, 0, fmt.Errorf("read past a PUBLISH of %d bytes: %w", n, err)
	}
	return pp, n, nil
}

// maxSkippedTopic bounds the topic kept of a PUBLISH read past (for its log).
const maxSkippedTopic = 128

// skipPublish consumes a PUBLISH whose remaining length is n (its fixed
// header not yet consumed): it keeps the flags, the topic's first
// maxSkippedTopic bytes and the packet identifier, and discards the rest.
func (c *mqttConn) skipPublish(n int) (*packets.PublishPacket, error) {
	first, err := c.br.ReadByte()
	if err != nil {
		return nil, err
	}
	for { // the remaining length, decoded already (remainingLength)
		b, err := c.br.ReadByte()
		if err != nil {
			return nil, err
		}
		if b&0x80 == 0 {
			break
		}
	}
	pp := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pp.Dup, pp.Qos, pp.Retain = first&0x08 != 0, (first>>1)&0x03, first&0x01 != 0
	if pp.Qos > 1 {
		return nil, fmt.Errorf("%w: PUBLISH at QoS %d, subscribed at 1", errMQTTProtocol, pp.Qos)
	}
	var b [2]byte
	if _, err := io.ReadFull(c.br, b[:]); err != nil {
		return nil, err
	}
	topicLen := int(binary.BigEndian.Uint16(b[:]))
	header := 2 + topicLen + 2*int(pp.Qos)
	if header > n {
		return nil, fmt.Errorf("%w: PUBLISH of %d bytes with a %d-byte variable header", errMQTTProtocol, n, header)
	}
	topic := make([]byte, min(topicLen, maxSkippedTopic))
	if _, err := io.ReadFull(c.br, topic); err != nil {
		return nil, err
	}
	if _, err := io.CopyN(io.Discard, c.br, int64(topicLen-len(topic))); err != nil {
		return nil, err
	}
	pp.TopicName = string(topic)
	if pp.Qos == 1 {
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return nil, err
		}
		pp.MessageID = binary.BigEndian.Uint16(b[:])
	}
	if _, err := io.CopyN(io.Discard, c.br, int64(n-header)); err != nil {
		return nil, err
	}
	return pp, nil
}

// remainingLength peeks at the fixed header's remaining length (1 to 4
// bytes after the packet type) without consuming it.
func remainingLength(br *bufio.Reader) (int, error) {
	for k := 2; k <= 5; k++ {
		b, err := br.Peek(k)
		if err != nil {
			return 0, err
		}
		if b[k-1]&0x80 != 0 {
			continue
		}
		n, mul := 0, 1
		for _, x := range b[1:k] {
			n += int(x&0x7f) * mul
			mul *= 128
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: remaining length longer than 4 bytes", errMQTTProtocol)
}

// write sends one packet.
func (c *mqttConn) write(p packets.ControlPacket) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return p.Write(c.conn)
}

// subscribe asks for topic at QoS 1 and returns the granted code (0x80: refused).
// The reader must be running (run): it hands the SUBACK over.
func (c *mqttConn) subscribe(ctx context.Context, topic string) (byte, error) {
	sp := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	sp.MessageID, sp.Topics, sp.Qoss = 1, []string{topic}, []byte{1}
	if err := c.write(sp); err != nil {
		return 0, err
	}
	t := time.NewTimer(c.timeout)
	defer t.Stop()
	var ack *packets.SubackPacket
	select {
	case ack = <-c.subacks:
	case <-c.ended: // the reader is gone: a SUBACK it handed over first still counts
		select {
		case ack = <-c.subacks:
		default:
			return 0, fmt.Errorf("connection lost before SUBACK: %w", c.endErr)
		}
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-t.C:
		return 0, errors.New("timed out")
	}
	if ack.MessageID != sp.MessageID || len(ack.ReturnCodes) != 1 {
		return 0, fmt.Errorf("%w: SUBACK for message %d with %d codes", errMQTTProtocol, ack.MessageID, len(ack.ReturnCodes))
	}
	return ack.ReturnCodes[0], nil
}

// run reads packets until the connection fails or is closed, handing each
// PUBLISH to handle in the order received (one longer than maxMQTTPacket
// without its payload: mqttMessage.Oversize). Any other packet longer than
// maxMQTTPacket ends it. The broker must send something
// (a PINGRESP at least: ping sends PINGREQs) within keepAlive + timeout.
func (c *mqttConn) run(handle func(*mqttMessage)) (err error) {
	defer func() {
		c.endErr = err
		close(c.ended)
	}()
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(c.keepAlive + c.timeout))
		p, oversize, err := c.readPacket(true)
		if err != nil {
			return err
		}
		switch p := p.(type) {
		case *packets.PublishPacket:
			if p.Qos > 1 {
				return fmt.Errorf("%w: PUBLISH at QoS %d, subscribed at 1", errMQTTProtocol, p.Qos)
			}
			handle(&mqttMessage{c: c, p: p, oversize: oversize})
		case *packets.SubackPacket:
			select {
			case c.subacks <- p:
			default: // not asked for
			}
		case *packets.PingrespPacket, *packets.PubackPacket, *packets.UnsubackPacket:
		default:
			return fmt.Errorf("%w: unexpected %T", errMQTTProtocol, p)
		}
	}
}

// ping sends a PINGREQ every keepAlive until done is closed or a write fails.
func (c *mqttConn) ping(done <-chan struct{}) error {
	t := time.NewTicker(c.keepAlive)
	defer t.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-t.C:
			if err := c.write(packets.NewControlPacket(packets.Pingreq)); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		}
	}
}

// close sends DISCONNECT (best effort) and closes the connection.
func (c *mqttConn) close() {
	_ = c.write(packets.NewControlPacket(packets.Disconnect))
	_ = c.conn.Close()
}

// mqttMessage is a received PUBLISH (mqtt.Message, for onMessage).
type mqttMessage struct {
	c        *mqttConn
	p        *packets.PublishPacket
	oversize int // the length of a PUBLISH read past (its payload discarded); 0 for the others
	once     sync.Once
}

// Oversize is the length of a PUBLISH longer than maxMQTTPacket, whose
// payload was discarded unread (Payload is nil, Topic clipped); 0 otherwise.
func (m *mqttMessage) Oversize() int { return m.oversize }

func (m *mqttMessage) Duplicate() bool   { return m.p.Dup }
func (m *mqttMessage) Qos() byte         { return m.p.Qos }
func (m *mqttMessage) Retained() bool    { return m.p.Retain }
func (m *mqttMessage) Topic() string     { return m.p.TopicName }
func (m *mqttMessage) MessageID() uint16 { return m.p.MessageID }
func (m *mqttMessage) Payload() []byte   { return m.p.Payload }

// Ack sends the PUBACK of a QoS 1 message, once. A failed write is the
// connection failing: the reader sees it, and the broker redelivers.
func (m *mqttMessage) Ack() {
	if m.p.Qos != 1 {
		return
	}
	m.once.Do(func() {
		pa := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
		pa.MessageID = m.p.MessageID
		_ = m.c.write(pa)
	})
}
