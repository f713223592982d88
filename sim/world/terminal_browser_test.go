package world_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim/world"
)

// TestVirtualTerminalInChromium drives a payment and watches it on the
// virtual terminal page in a real headless Chromium over the DevTools
// protocol: the amount and the QR image appear, the consumer clicks "Consumer
// pays" on the page, and the page ends on the approved screen. Screenshots of
// both screens are kept as test artifacts.
func TestVirtualTerminalInChromium(t *testing.T) {
	bin := chromiumBinary()
	if bin == "" {
		t.Skip("chromium not found (apt-get install chromium; .ci/run installs it): the virtual terminal browser test needs it")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	w, pos := startWorld(t, nil)
	b := startChromium(t, ctx, bin)
	page := b.newPage(t, ctx)
	_, err := page.call(ctx, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 420, "height": 640, "deviceScaleFactor": 1, "mobile": false})
	require.NoError(t, err)
	_, err = page.call(ctx, "Page.navigate", map[string]any{"url": w.PPaaS.TerminalURL(w.Agent.Serial())})
	require.NoError(t, err)
	page.waitFor(t, ctx, "the idle page with its event stream open", func(s pageState) bool {
		return s.State == "idle" && s.StreamOpen
	})

	done := payAsync(t, pos, pos.PaymentRequest("WEB1", 1250, "EUR", "KB"))
	shown := page.waitFor(t, ctx, "the amount and the QR image", func(s pageState) bool {
		return s.State == "awaiting_consumer" && s.QRWidth > 0 && s.QRVisible
	})
	require.Equal(t, "12.50 EUR", shown.Amount)
	screen, ok := w.PPaaS.Terminals().Current(w.Agent.Serial())
	require.True(t, ok)
	require.Equal(t, screen.QRPayload, shown.QRPayload, "the page shows the provider's QR")
	require.GreaterOrEqual(t, shown.QRWidth, 21, "the QR image decoded in the browser")
	require.False(t, shown.PayDisabled, "the consumer's buttons are enabled while the QR waits")
	require.Equal(t, screen.ClientTransactionID, shown.POIID, "the page shows the POI transaction id")
	require.Equal(t, screen.TransactionID, shown.PPaaSID, "the page shows the PPaaS transaction id")
	require.NotEmpty(t, shown.POIID)
	require.NotEmpty(t, shown.PPaaSID)
	page.screenshot(t, ctx, "terminal-qr.png")

	page.click(t, ctx, "#pay")
	final := page.waitFor(t, ctx, "the approved screen", func(s pageState) bool { return s.State == "approved" })
	require.Equal(t, "12.50 EUR", final.Amount)
	require.Equal(t, "pay sent", final.Status, "the click reached the control API")
	require.False(t, final.QRVisible, "the QR is gone once paid")
	require.True(t, final.PayDisabled)
	page.screenshot(t, ctx, "terminal-approved.png")

	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, nexo.Success, r.resp.Status.Result, world.Describe(r.resp))
	_, charges := w.PPaaS.Transactions()
	require.Equal(t, 1, charges[w.Agent.Serial()])
}

func chromiumBinary() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// pageState is what the test reads from the virtual terminal page.
type pageState struct {
	State       string `json:"state"`
	Amount      string `json:"amount"`
	Message     string `json:"message"`
	QRPayload   string `json:"qrPayload"`
	QRWidth     int    `json:"qrWidth"`
	QRVisible   bool   `json:"qrVisible"`
	PayDisabled bool   `json:"payDisabled"`
	Status      string `json:"status"`
	StreamOpen  bool   `json:"streamOpen"`
	POIID       string `json:"poiId"`
	PPaaSID     string `json:"ppaasId"`
}

const pageStateJS = `(() => {
  const q = id => document.getElementById(id);
  if (!q("screen")) return JSON.stringify({});
  const qr = q("qr");
  return JSON.stringify({
    state: q("screen").dataset.state, amount: q("amount").textContent, message: q("message").textContent,
    qrPayload: qr.dataset.payload || "", qrWidth: qr.complete && qr.getAttribute("src") ? qr.naturalWidth : 0,
    qrVisible: getComputedStyle(qr).display !== "none", payDisabled: q("pay").disabled,
    status: q("status").textContent, streamOpen: typeof es !== "undefined" && es.readyState === 1,
    poiId: q("poi-id").textContent, ppaasId: q("ppaas-id").textContent,
  });
})()`

// browser is a headless Chromium driven over the DevTools protocol.
type browser struct {
	conn    *websocket.Conn
	mu      sync.Mutex // writes and pending
	next    int
	pending map[int]chan cdpReply
	readErr chan error
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type page struct {
	b       *browser
	session string
}

var devtoolsURL = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

func startChromium(t *testing.T, ctx context.Context, bin string) *browser {
	t.Helper()
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--user-data-dir="+t.TempDir(), "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers go with it
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	urls := make(chan string, 1)
	var logMu sync.Mutex
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if m := devtoolsURL.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	var wsURL string
	select {
	case wsURL = <-urls:
	case <-exited:
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("chromium exited before DevTools listened:\n%s", log.String())
	case <-ctx.Done():
		t.Fatalf("chromium did not start DevTools: %v", ctx.Err())
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, wsURL, nil)
	require.NoError(t, err, "connect to chromium DevTools")
	b := &browser{conn: conn, pending: map[int]chan cdpReply{}, readErr: make(chan error, 1)}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		b.readLoop()
	}()
	t.Cleanup(func() {
		conn.Close()
		<-readDone
	})
	return b
}

// readLoop dispatches replies to their callers; events are not needed.
func (b *browser) readLoop() {
	for {
		var msg struct {
			ID int `json:"id"`
			cdpReply
		}
		if err := b.conn.ReadJSON(&msg); err != nil {
			b.readErr <- err
			return
		}
		if msg.ID == 0 {
			continue
		}
		b.mu.Lock()
		ch := b.pending[msg.ID]
		delete(b.pending, msg.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- msg.cdpReply
		}
	}
}

func (b *browser) call(ctx context.Context, session, method string, params any) (json.RawMessage, error) {
	ch := make(chan cdpReply, 1)
	b.mu.Lock()
	b.next++
	id := b.next
	b.pending[id] = ch
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	err := b.conn.WriteJSON(msg)
	b.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("cdp %s: %w", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return nil, fmt.Errorf("cdp %s: %d %s", method, r.Error.Code, r.Error.Message)
		}
		return r.Result, nil
	case err := <-b.readErr:
		b.readErr <- err
		return nil, fmt.Errorf("cdp %s: connection: %w", method, err)
	case <-ctx.Done():
		return nil, fmt.Errorf("cdp %s: %w", method, ctx.Err())
	}
}

func (b *browser) newPage(t *testing.T, ctx context.Context) *page {
	t.Helper()
	raw, err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"})
	require.NoError(t, err)
	var target struct {
		TargetID string `json:"targetId"`
	}
	require.NoError(t, json.Unmarshal(raw, &target))
	raw, err = b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true})
	require.NoError(t, err)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	require.NoError(t, json.Unmarshal(raw, &att))
	return &page{b: b, session: att.SessionID}
}

func (p *page) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	return p.b.call(ctx, p.session, method, params)
}

// eval evaluates a JavaScript expression returning a string.
func (p *page) eval(ctx context.Context, expr string) (string, error) {
	raw, err := p.call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if err != nil {
		return "", err
	}
	var res struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return "", err
	}
	if res.Exception != nil {
		return "", errors.New("javascript: " + res.Exception.Text)
	}
	s, _ := res.Result.Value.(string)
	return s, nil
}

// waitFor polls the page every 50 ms until cond holds or ctx ends.
func (p *page) waitFor(t *testing.T, ctx context.Context, what string, cond func(pageState) bool) pageState {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last pageState
	for {
		out, err := p.eval(ctx, pageStateJS)
		if err == nil && out != "" {
			var s pageState
			if json.Unmarshal([]byte(out), &s) == nil {
				last = s
				if cond(s) {
					return s
				}
			}
		}
		select {
		case <-ctx.Done():
			p.screenshot(t, context.Background(), "terminal-timeout.png")
			t.Fatalf("the page never showed %s; last state %+v (err %v)", what, last, err)
		case <-tick.C:
		}
	}
}

// click presses and releases the mouse on the element's centre, as a user would.
func (p *page) click(t *testing.T, ctx context.Context, selector string) {
	t.Helper()
	out, err := p.eval(ctx, fmt.Sprintf(`(() => { const r = document.querySelector(%q).getBoundingClientRect(); return JSON.stringify({x: r.x + r.width/2, y: r.y + r.height/2}); })()`, selector))
	require.NoError(t, err)
	var pt struct{ X, Y float64 }
	require.NoError(t, json.Unmarshal([]byte(out), &pt))
	for _, typ := range []string{"mouseMoved", "mousePressed", "mouseReleased"} {
		_, err := p.call(ctx, "Input.dispatchMouseEvent", map[string]any{"type": typ, "x": pt.X, "y": pt.Y, "button": "left", "clickCount": 1})
		require.NoError(t, err, typ)
	}
}

// screenshot keeps a PNG of the page in $TERMAGENT_ARTIFACTS or the test's
// artifact directory (go test -artifacts keeps it).
func (p *page) screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := p.call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"})
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	var shot struct {
		Data string `json:"data"`
	}
	require.NoError(t, json.Unmarshal(raw, &shot))
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	require.NoError(t, err)
	dir := os.Getenv("TERMAGENT_ARTIFACTS")
	if dir == "" {
		dir = t.ArtifactDir()
	} else {
		dir = filepath.Join(dir, t.Name())
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}
