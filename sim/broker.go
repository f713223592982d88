package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/termagent/termagent/ppaas"
)

// PaymentsConfig configures the qrcode-payment side: the provider and where
// events go.
type PaymentsConfig struct {
	// Provider is the generic provider's mode (default manual).
	Provider ProviderMode
	// Providers configures the modelled providers (PROVIDERS.md).
	Providers ProvidersConfig
	// MQTTAddr is the embedded broker's TLS listener (default 127.0.0.1:0, a free
	// port; cmd/sim should set 127.0.0.1:8883).
	MQTTAddr string
	// ExternalMQTTURL, when set (e.g. ssl://127.0.0.1:8884), replaces the
	// embedded broker: the simulator publishes events to it as a client.
	ExternalMQTTURL      string
	ExternalMQTTUsername string
	ExternalMQTTPassword string // kept in memory only, never logged
}

// broker is where the simulator publishes device events.
type broker interface {
	publisher
	start() error
	stop() error
	url() string
	kick(serial string) error
	// sweep drops the sessions whose token is no longer valid (expired,
	// expired by the platform, or the device's credentials revoked).
	sweep()
}

// embeddedBroker is a mochi-mqtt broker on loopback with TLS and JWT auth:
// username = serial, password = a device access token issued to that serial,
// client id = serial; a device may only subscribe to its own events topic and
// may not publish.
type embeddedBroker struct {
	log    *slog.Logger
	tls    *tls.Config
	verify func(string) (Device, error)

	mu   sync.Mutex
	addr string // requested, then the bound address so a restart reuses the port
	srv  *mqtt.Server

	// tokens are the connected devices' tokens (client id → token), checked
	// every sweepEvery (default 5 s) and at once when tokens are expired or
	// revoked: a session lives no longer than its token.
	tokens     sessionTokens
	sweepEvery time.Duration
	sweepStop  chan struct{}
	sweepDone  chan struct{}
}

// sessionTokens maps the connected MQTT clients to the token they presented.
type sessionTokens struct {
	mu sync.Mutex
	m  map[string]string
}

func (t *sessionTokens) set(id, token string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]string{}
	}
	t.m[id] = token
}

func (t *sessionTokens) snapshot() map[string]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]string, len(t.m))
	for k, v := range t.m {
		out[k] = v
	}
	return out
}

// drop forgets id if it still holds token (a reconnection may have replaced it).
func (t *sessionTokens) drop(id, token string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[id] == token {
		delete(t.m, id)
	}
}

func (b *embeddedBroker) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		return nil
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: b.log.With("component", "mqtt-broker")})
	if err := srv.AddHook(&brokerAuth{verify: b.verify, tokens: &b.tokens}, nil); err != nil {
		return fmt.Errorf("embedded broker: add auth hook: %w", err)
	}
	l := newBrokerListener("tls", b.addr, b.tls)
	if err := srv.AddListener(l); err != nil {
		return fmt.Errorf("embedded broker: listen %s: %w", b.addr, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return fmt.Errorf("embedded broker: serve: %w", err)
	}
	b.addr = l.Address()
	b.srv = srv
	every := b.sweepEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	b.sweepStop, b.sweepDone = make(chan struct{}), make(chan struct{})
	go b.sweeper(srv, every, b.sweepStop, b.sweepDone)
	return nil
}

// sweeper sweeps srv every interval until stop is closed. It never takes
// b.mu, which stop holds while it waits for it.
func (b *embeddedBroker) sweeper(srv *mqtt.Server, every time.Duration, stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			b.sweepServer(srv)
		}
	}
}

func (b *embeddedBroker) sweep() {
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
	if srv != nil {
		b.sweepServer(srv)
	}
}

func (b *embeddedBroker) sweepServer(srv *mqtt.Server) {
	for id, tok := range b.tokens.snapshot() {
		cl, ok := srv.Clients.Get(id)
		if !ok || cl.Closed() {
			b.tokens.drop(id, tok)
			continue
		}
		if _, err := b.verify(tok); err != nil {
			b.log.Info("mqtt session dropped: its token is no longer valid", "client_id", id, "reason", err.Error())
			_ = srv.DisconnectClient(cl, packets.ErrNotAuthorized) // reports the code it closed with
			b.tokens.drop(id, tok)
		}
	}
}

func (b *embeddedBroker) stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return nil
	}
	close(b.sweepStop)
	<-b.sweepDone
	err := b.srv.Close()
	b.srv = nil
	return err
}

func (b *embeddedBroker) url() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return "ssl://" + b.addr
}

func (b *embeddedBroker) Publish(_ context.Context, topic string, payload []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return errors.New("embedded broker is stopped")
	}
	return b.srv.Publish(topic, payload, false, 1)
}

func (b *embeddedBroker) kick(serial string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return errors.New("embedded broker is stopped")
	}
	cl, ok := b.srv.Clients.Get(serial)
	if !ok || cl.Closed() {
		return fmt.Errorf("device %s is not connected", serial)
	}
	// DisconnectClient reports the reason code it closed with as an error.
	_ = b.srv.DisconnectClient(cl, packets.ErrAdministrativeAction)
	return nil
}

// brokerAuth authenticates devices by JWT and confines them to their topic.
type brokerAuth struct {
	mqtt.HookBase
	verify func(string) (Device, error)
	tokens *sessionTokens
}

func (h *brokerAuth) ID() string { return "ppaas-device-jwt" }

func (h *brokerAuth) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func (h *brokerAuth) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	d, err := h.verify(string(pk.Connect.Password))
	if err != nil || d.Serial != user || cl.ID != user {
		h.Log.Info("mqtt device refused", "client_id", cl.ID, "username", user, "reason", reason(err))
		return false
	}
	h.tokens.set(cl.ID, string(pk.Connect.Password))
	return true
}

func reason(err error) string {
	if err != nil {
		return err.Error()
	}
	return "username or client id is not the token's serial"
}

func (h *brokerAuth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	return !write && topic == ppaas.EventTopic(string(cl.Properties.Username))
}

// externalBroker publishes to a broker run elsewhere (Mosquitto in tests).
type externalBroker struct {
	log    *slog.Logger
	broker string
	client paho.Client
}

func newExternalBroker(log *slog.Logger, url, user, password string, tlsCfg *tls.Config) *externalBroker {
	opts := paho.NewClientOptions().
		AddBroker(url).
		SetClientID("ppaas-sim-publisher").
		SetUsername(user).
		SetPassword(password).
		SetTLSConfig(tlsCfg).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).
		SetMaxReconnectInterval(2 * time.Second)
	return &externalBroker{log: log, broker: url, client: paho.NewClient(opts)}
}

func (b *externalBroker) start() error {
	// Wait a little for the first connection so early events are not lost;
	// ConnectRetry keeps trying in the background, so an external broker
	// started after the simulator is fine too.
	t := b.client.Connect()
	if !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		b.log.Warn("simulated PPaaS: external broker not reachable yet; retrying in the background", "broker", b.broker, "err", t.Error())
	}
	return nil
}

func (b *externalBroker) stop() error {
	b.client.Disconnect(250)
	return nil
}

func (b *externalBroker) url() string { return b.broker }

// sweep is the external broker's business: it checks tokens itself.
func (b *externalBroker) sweep() {}

func (b *externalBroker) kick(string) error {
	return errors.New("kick is not supported with an external broker")
}

func (b *externalBroker) Publish(ctx context.Context, topic string, payload []byte) error {
	if !b.client.IsConnectionOpen() {
		return fmt.Errorf("publish to %s: not connected", b.broker)
	}
	t := b.client.Publish(topic, 1, false, payload)
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return fmt.Errorf("publish to %s: %w", b.broker, ctx.Err())
	}
}
