package qr_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/fake"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
)

// issuingCreds issues a new token on every Token and records the invalidated ones.
type issuingCreds struct {
	mu          sync.Mutex
	issued      int
	invalidated []string
}

func (c *issuingCreds) Token(context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.issued++
	return fmt.Sprintf("token-%d", c.issued), nil
}

func (c *issuingCreds) Invalidate(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.invalidated = append(c.invalidated, tok)
}

// refusingBroker answers every MQTT CONNECT "not authorized" and reports the
// password each connect carried.
func refusingBroker(t *testing.T) (url string, passwords <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ch := make(chan string, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			p, err := packets.ReadPacket(conn)
			if c, ok := p.(*packets.ConnectPacket); err == nil && ok {
				select {
				case ch <- string(c.Password):
				default:
				}
				ack := packets.NewControlPacket(packets.Connack).(*packets.ConnackPacket)
				ack.ReturnCode = packets.ErrRefusedNotAuthorised
				_ = ack.Write(conn)
			}
			conn.Close()
		}
	}()
	return "tcp://" + ln.Addr().String(), ch
}

// TestSubscriberInvalidatesARefusedToken: a token the broker refuses reaches
// Credentials.Invalidate, and the quick retry connects with a fresh one.
func TestSubscriberInvalidatesARefusedToken(t *testing.T) {
	url, passwords := refusingBroker(t)
	creds := &issuingCreds{}
	sub, err := qr.NewSubscriber(qr.SubscriberConfig{
		BrokerURL: url, Serial: "220597303201181723869389", Credentials: creds, Events: &fake.EventLog{}, Handler: nopHandler{},
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, DeniedBackoff: time.Hour, Timeout: 5 * time.Second,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	// paho may send a refused CONNECT again (protocol 3.1.1, then 3.1) with
	// the same password: what counts is the sequence of distinct tokens.
	var seen []string
	for len(seen) < 2 {
		select {
		case got := <-passwords:
			if len(seen) == 0 || seen[len(seen)-1] != got {
				seen = append(seen, got)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("connects seen: %v; want a retry with a fresh token", seen)
		}
	}
	require.Equal(t, []string{"token-1", "token-2"}, seen, "the retry connects with a freshly issued token")
	require.Eventually(t, func() bool {
		creds.mu.Lock()
		defer creds.mu.Unlock()
		return len(creds.invalidated) == 2
	}, 10*time.Second, time.Millisecond)
	creds.mu.Lock()
	require.Equal(t, []string{"token-1", "token-2"}, creds.invalidated, "each refused token is invalidated, the first before the quick retry")
	creds.mu.Unlock()
	require.False(t, sub.Connected())
}

type nopHandler struct{}

func (nopHandler) HandleEvent(context.Context, ppaas.Event) error { return nil }
