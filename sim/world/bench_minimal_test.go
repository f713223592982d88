package world_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

// minimalSerial is the minimal agent's own device on the simulator (the
// fleet's serials start at 900000000000000000000001).
const minimalSerial = "900000000000000099999999"

// minimalAgent is a hand-written minimal agent doing a payment's work against
// the same simulated platform as the agent, and nothing else: its own device
// (serial, certificate, merchant credentials, a token fetched at setup, an
// MQTT session subscribed at setup), then per payment the POS's request over
// HTTPS (the agent's Nexo certificate and TLS settings), a durable step (a
// page written and fdatasynced twice: one bbolt commit's two syncs), the
// simulator's QR create over mTLS carrying the JSON the agent sends (built
// once from the agent's first payment; a fresh clientTransactionId and the
// POS's order id put in by concatenation), the events read from its own
// connection to the simulator's broker until the approval, each acknowledged
// (a bare MQTT 3.1.1 client: no goroutine, the handler reads the socket), a
// second durable step and canned answer bytes back. Its share is its total
// minus the simulator's PaymentAPITime during its payment, as the agent's is.
// Its token is fetched once: a run past the token's life (the simulator's
// 300 s) fails loudly (a refused create, or the broker ending the session)
// rather than measuring a refresh.
type minimalAgent struct {
	sim       *sim.PPaaS
	f         *os.File
	page      []byte
	api       *http.Client // mTLS to the simulator, the agent's transport settings
	createURL string
	bearer    string
	mq        *bareMQTT
	canned    func() []byte
	pos       *world.POS

	mu         sync.Mutex // one payment at a time (the handler owns mq)
	pre, mid   []byte     // the create's JSON before its clientTransactionId, between it and the orderId
	post       []byte     // and after the orderId
	body       []byte     // the create's bytes, reused
	lastErr    error      // the handler's last failure, for the benchmark's message
	payments   int        // creates answered 201
	serverDone chan struct{}
}

// newMinimalAgent registers the minimal agent's device with the simulator
// (a certificate from the world's CA, as the fleet issues them; merchant
// credentials and a token fetched now), connects and subscribes its MQTT
// session and starts its Nexo server presenting pair. The POS's client
// settings come from tr (the POS's transport), the answer's bytes from
// canned. Its create body is set by prepare.
func newMinimalAgent(tb testing.TB, w *world.World, f *os.File, pair tls.Certificate, tr *http.Transport, canned func() []byte) *minimalAgent {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 20*time.Second)
	defer cancel()
	certsDir := filepath.Dir(w.Config.Cert)
	devDir := filepath.Join(tb.TempDir(), minimalSerial)
	if err := certs.IssueDevice(certsDir, devDir, certs.DefaultModel, minimalSerial); err != nil {
		tb.Fatalf("minimal agent: issue its device certificate: %v", err)
	}
	dev, err := mtls.LoadDeviceTLS(mtls.TLSFiles{Cert: filepath.Join(devDir, certs.ClientCertFile), Key: filepath.Join(devDir, certs.ClientKeyFile), CA: filepath.Join(devDir, certs.BundleFile)}, nil)
	if err != nil {
		tb.Fatalf("minimal agent: load its device TLS: %v", err)
	}
	api := mtls.NewHTTPClient(dev, nil, nil, 10*time.Second) // the agent's transport, without the token-adding wrapper
	auth, err := mtls.NewAuthenticator(mtls.AuthConfig{BaseURL: w.PPaaS.URL(), Serial: minimalSerial, Client: api})
	if err != nil {
		tb.Fatalf("minimal agent: %v", err)
	}
	token, err := auth.Token(ctx)
	if err != nil {
		tb.Fatalf("minimal agent: fetch its device token: %v", err)
	}
	mq, err := dialBareMQTT(ctx, w.PPaaS.MQTTURL(), dev.Config(), minimalSerial, token)
	if err != nil {
		tb.Fatalf("minimal agent: %v", err)
	}
	tb.Cleanup(func() { _ = mq.conn.Close() })
	m := &minimalAgent{
		sim: w.PPaaS, f: f, page: make([]byte, 4096), api: api, bearer: "Bearer " + token, mq: mq, canned: canned,
		createURL: w.PPaaS.URL() + "/qrcode-payment/v1/transactions", serverDone: make(chan struct{}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(m.serveNexo), ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}}
	go func() { defer close(m.serverDone); _ = srv.ServeTLS(ln, "", "") }()
	tb.Cleanup(func() { _ = srv.Close(); <-m.serverDone })
	m.pos = &world.POS{
		Client: &nexo.Client{URL: "https://" + ln.Addr().String() + "/nexo", HTTP: &http.Client{Timeout: 10 * time.Second, Transport: tr.Clone()}},
		POIID:  w.Agent.POIID(), SaleID: "POS1",
	}
	return m
}

// ctidMark and orderMark stand for the per-payment ids in the create's
// template.
const ctidMark, orderMark = "\x01ctid\x01", "\x01order\x01"

// prepare makes the create's bytes from the agent's request as the
// simulator recorded it (transaction id): json.Marshal of a CreateRequest is
// the agent's encoding byte for byte (qr.marshalCreate), its two ids then
// replaced per payment.
func (m *minimalAgent) prepare(tb testing.TB, id string) {
	tb.Helper()
	tx, ok := m.sim.Transaction(id)
	if !ok {
		tb.Fatalf("minimal agent: the agent's transaction %s is not on the simulator", id)
	}
	if tx.PaymentScenario != ppaas.ConsumerScan {
		tb.Fatalf("minimal agent: the agent's payment is %s, the minimal agent does consumerscan only", tx.PaymentScenario)
	}
	tmpl, err := json.Marshal(ppaas.CreateRequest{PaymentType: tx.PaymentType, PaymentScenario: tx.PaymentScenario,
		ClientTransactionID: ctidMark, PaymentAmount: tx.PaymentAmount,
		Order: ppaas.Order{OrderID: orderMark, OrderDescription: tx.Order.OrderDescription}})
	if err != nil {
		tb.Fatal(err)
	}
	quoted := func(s string) []byte { q, _ := json.Marshal(s); return q[1 : len(q)-1] }
	pre, rest, ok1 := bytes.Cut(tmpl, quoted(ctidMark))
	mid, post, ok2 := bytes.Cut(rest, quoted(orderMark))
	if !ok1 || !ok2 {
		tb.Fatalf("minimal agent: the create's template %s has no place for its ids", tmpl)
	}
	m.pre, m.mid, m.post = pre, mid, post
}

// saleTransactionMark precedes the POS's order id in a Nexo JSON payment
// request (nexo's codec writes no spaces).
var saleTransactionMark = []byte(`"SaleTransactionID":{"TransactionID":"`)

// orderID is the POS's SaleTransactionID.TransactionID in req, still
// JSON-escaped (the create carries it as it came), which the agent makes the
// order id.
func orderID(req []byte) ([]byte, bool) {
	_, rest, ok := bytes.Cut(req, saleTransactionMark)
	if !ok {
		return nil, false
	}
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '\\':
			i++
		case '"':
			return rest[:i], i > 0
		}
	}
	return nil, false
}

// durable is one commit's floor: a page written and fdatasynced twice.
// With BENCH_NOSYNC, as the agent's store then, it writes without syncing,
// so that the two stay comparable.
func (m *minimalAgent) durable() error {
	noSync := os.Getenv("BENCH_NOSYNC") != ""
	for range 2 {
		if _, err := m.f.WriteAt(m.page, 0); err != nil {
			return fmt.Errorf("write the page: %w", err)
		}
		if noSync {
			continue
		}
		if err := fdatasync(m.f); err != nil {
			return fmt.Errorf("fdatasync: %w", err)
		}
	}
	return nil
}

func (m *minimalAgent) serveNexo(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.pay(r); err != nil {
		m.lastErr = err
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(m.canned())
}

// pay is a payment's work between the POS's request and its answer.
func (m *minimalAgent) pay(r *http.Request) error {
	req, err := io.ReadAll(r.Body)
	if err != nil {
		return fmt.Errorf("read the POS's request: %w", err)
	}
	order, ok := orderID(req)
	if !ok {
		return errors.New("the POS's request has no SaleTransactionID")
	}
	if m.pre == nil {
		return errors.New("no create template yet")
	}
	if err := m.durable(); err != nil {
		return fmt.Errorf("first durable step: %w", err)
	}
	ctid := uuid.NewString()
	m.body = append(append(append(append(append(m.body[:0], m.pre...), ctid...), m.mid...), order...), m.post...)
	hr, err := http.NewRequestWithContext(r.Context(), http.MethodPost, m.createURL, bytes.NewReader(m.body))
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", m.bearer)
	resp, err := m.api.Do(hr)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	created, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("create: %d %s (%v)", resp.StatusCode, created, err)
	}
	m.payments++
	if err := m.mq.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return fmt.Errorf("await the approval: %w", err)
	}
	for {
		ev, err := m.mq.publish()
		if err != nil {
			return fmt.Errorf("await the approval: %w", err)
		}
		if bytes.Contains(ev, []byte(ctid)) && bytes.Contains(ev, approvedStatus) {
			break
		}
	}
	if err := m.durable(); err != nil {
		return fmt.Errorf("second durable step: %w", err)
	}
	return nil
}

// approvedStatus is how an approval event says so (ppaas.Event's JSON).
var approvedStatus = []byte(`"status":"` + ppaas.Approved + `"`)

// sample is one payment through the minimal agent: its share (total minus
// the simulator's payment API time during it), its total and its events'
// wait in the simulator's queue.
func (m *minimalAgent) sample(tb testing.TB) (share, total, queueWait time.Duration) {
	tb.Helper()
	before, waited := m.sim.PaymentAPITime(), m.sim.EventQueueWait()
	t0 := time.Now()
	got, err := m.pos.Pay(tb.Context(), "", 1250, "EUR", "KB")
	total = time.Since(t0)
	if err != nil || got.Status.Result != nexo.Success {
		m.mu.Lock()
		herr := m.lastErr
		m.mu.Unlock()
		tb.Fatalf("minimal agent: %v %s (handler: %v)", err, world.Describe(got), herr)
	}
	return total - (m.sim.PaymentAPITime() - before), total, m.sim.EventQueueWait() - waited
}

// created is how many creates the simulator answered 201 for the minimal agent.
func (m *minimalAgent) created() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.payments
}

// bareMQTT is a hand-written MQTT 3.1.1 client over TLS, the least a device
// needs to take its events: CONNECT, SUBSCRIBE at QoS 1, then read each
// PUBLISH and write its PUBACK on the reader's goroutine. It never pings: the
// benchmark's PUBACKs keep the session within its keep-alive.
type bareMQTT struct {
	conn   *tls.Conn
	br     *bufio.Reader
	buf    []byte
	puback [4]byte
}

// dialBareMQTT connects to broker (ssl://host:port) as the agent does
// (client id and username the serial, the device token as password, a
// persistent session, keep-alive 30 s) and subscribes to the device's event
// topic at QoS 1.
func dialBareMQTT(ctx context.Context, broker string, cfg *tls.Config, serial, token string) (*bareMQTT, error) {
	u, err := url.Parse(broker)
	if err != nil {
		return nil, fmt.Errorf("mqtt: broker URL: %w", err)
	}
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("mqtt: dial %s: %w", u.Host, err)
	}
	c := &bareMQTT{conn: conn.(*tls.Conn), br: bufio.NewReader(conn), puback: [4]byte{0x40, 2}}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := c.handshake(serial, token); err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

func (c *bareMQTT) handshake(serial, token string) error {
	str := func(b []byte, s string) []byte { return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...) }
	connect := str(nil, "MQTT")
	connect = append(connect, 4, 0xC0, 0, 30) // level 4, username and password flags, clean session off, keep-alive 30 s
	connect = str(str(str(connect, serial), serial), token)
	if _, err := c.conn.Write(append(appendRemaining([]byte{0x10}, len(connect)), connect...)); err != nil {
		return fmt.Errorf("mqtt: CONNECT: %w", err)
	}
	typ, body, err := c.read()
	if err != nil || typ != 0x20 || len(body) != 2 || body[1] != 0 {
		return fmt.Errorf("mqtt: CONNACK %#x % x: %v", typ, body, err)
	}
	sub := str([]byte{0, 1}, ppaas.EventTopic(serial)) // packet id 1
	sub = append(sub, 1)                               // QoS 1
	if _, err := c.conn.Write(append(appendRemaining([]byte{0x82}, len(sub)), sub...)); err != nil {
		return fmt.Errorf("mqtt: SUBSCRIBE: %w", err)
	}
	typ, body, err = c.read()
	if err != nil || typ != 0x90 || len(body) != 3 || body[2] != 1 {
		return fmt.Errorf("mqtt: SUBACK %#x % x: %v", typ, body, err)
	}
	return nil
}

// read reads one packet: its first byte and its body (valid until the next read).
func (c *bareMQTT) read() (byte, []byte, error) {
	h, err := c.br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n := 0
	for shift := 0; ; shift += 7 {
		d, err := c.br.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(d&0x7f) << shift
		if d&0x80 == 0 {
			break
		}
		if shift == 21 {
			return 0, nil, errors.New("mqtt: remaining length over 4 bytes")
		}
	}
	if n > 256<<10 {
		return 0, nil, fmt.Errorf("mqtt: packet of %d bytes", n)
	}
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	body := c.buf[:n]
	_, err = io.ReadFull(c.br, body)
	return h, body, err
}

// publish reads the next PUBLISH, acknowledges it if QoS 1 and returns its
// payload (valid until the next read).
func (c *bareMQTT) publish() ([]byte, error) {
	h, body, err := c.read()
	if err != nil {
		return nil, err
	}
	if h>>4 != 3 {
		return nil, fmt.Errorf("mqtt: packet %#x where a PUBLISH was awaited", h)
	}
	if len(body) < 2 {
		return nil, errors.New("mqtt: PUBLISH too short")
	}
	p := 2 + int(binary.BigEndian.Uint16(body))
	if qos := h >> 1 & 3; qos > 0 {
		if len(body) < p+2 {
			return nil, errors.New("mqtt: PUBLISH too short")
		}
		c.puback[2], c.puback[3] = body[p], body[p+1]
		if _, err := c.conn.Write(c.puback[:]); err != nil {
			return nil, fmt.Errorf("mqtt: PUBACK: %w", err)
		}
		p += 2
	}
	if len(body) < p {
		return nil, errors.New("mqtt: PUBLISH too short")
	}
	return body[p:], nil
}

// appendRemaining appends MQTT's remaining length n (1 to 4 bytes).
func appendRemaining(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		if n /= 128; n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// The minimal agent's payments are real payments on the simulator, made as
// the agent makes them: the create carries the agent's JSON with the
// minimal agent's own ids (the POS's order id), the approval reaches it on
// its own MQTT session, and each is charged once to its own device.
func TestMinimalAgentPaysThroughTheSimulator(t *testing.T) {
	w, pos := startWorld(t, func(cfg *world.WorldConfig) { cfg.PPaaS.Payments.Provider = sim.ProviderApprove })
	resp, err := pos.Pay(t.Context(), "", 1250, "EUR", "KB")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, resp.Status.Result, world.Describe(resp))
	canned, err := nexo.JSONCodec{}.EncodeResponse(resp)
	require.NoError(t, err)

	f, err := os.OpenFile(filepath.Join(t.TempDir(), "page.bin"), os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	pair, err := mtls.LoadKeyPair(w.Config.NexoCert, w.Config.NexoKey)
	require.NoError(t, err)
	tr := pos.Client.HTTP.Transport.(*http.Transport).Clone()
	m := newMinimalAgent(t, w, f, pair, tr, func() []byte { return canned })
	m.prepare(t, resp.Payment.Result.ApprovalCode)

	agentTx, ok := w.PPaaS.Transaction(resp.Payment.Result.ApprovalCode)
	require.True(t, ok)
	want, err := json.Marshal(ppaas.CreateRequest{PaymentType: agentTx.PaymentType, PaymentScenario: agentTx.PaymentScenario,
		ClientTransactionID: agentTx.ClientTransactionID, PaymentAmount: agentTx.PaymentAmount, Order: agentTx.Order})
	require.NoError(t, err)
	rebuilt := slices.Concat(m.pre, []byte(agentTx.ClientTransactionID), m.mid, []byte(agentTx.Order.OrderID), m.post)
	require.Equal(t, string(want), string(rebuilt), "the template with the agent's ids is the agent's create")

	const payments = 3
	for range payments {
		share, total, _ := m.sample(t)
		require.Positive(t, share)
		require.LessOrEqual(t, share, total)
	}
	txs, charges := w.PPaaS.Transactions()
	require.Equal(t, payments, charges[minimalSerial], "each minimal payment charged once to its own device")
	require.Equal(t, 1, charges[w.Agent.Serial()], "the agent's charges are its own")
	require.Equal(t, payments, m.created())
	var mine int
	for _, tx := range txs {
		if tx.Serial != minimalSerial {
			continue
		}
		mine++
		require.Equal(t, ppaas.Approved, tx.Status)
		require.Equal(t, agentTx.PaymentType, tx.PaymentType)
		require.Equal(t, agentTx.PaymentAmount, tx.PaymentAmount)
		require.NotEqual(t, agentTx.ClientTransactionID, tx.ClientTransactionID)
		require.True(t, strings.HasPrefix(tx.Order.OrderID, "ORDER-"), "the POS's SaleTransactionID is the order id: %q", tx.Order.OrderID)
	}
	require.Equal(t, payments, mine)
}

func TestOrderIDFromTheNexoRequest(t *testing.T) {
	pos := &world.POS{POIID: "POI1"}
	req, err := nexo.JSONCodec{}.EncodeRequest(pos.PaymentRequest("SVC1", 1250, "EUR", "KB"))
	require.NoError(t, err)
	id, ok := orderID(req)
	require.True(t, ok, "%s", req)
	require.Equal(t, "ORDER-SVC1", string(id))
	for _, tc := range []struct{ in, want string }{
		{`{"SaleTransactionID":{"TransactionID":"A\"B","TimeStamp":"x"}}`, `A\"B`},
		{`{"SaleTransactionID":{"TransactionID":"","TimeStamp":"x"}}`, ""},
		{`{"SaleTransactionID":{"TransactionID":"AB`, ""},
		{`{}`, ""},
	} {
		id, ok := orderID([]byte(tc.in))
		require.Equal(t, tc.want != "", ok, tc.in)
		require.Equal(t, tc.want, string(id), tc.in)
	}
}
