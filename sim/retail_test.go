package sim

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRetailAsyncEndedByClose: an async exchange whose answer never comes
// (the device went away with it) is ended by Close, not left to wait out the
// relay timeout; its slot is given back.
func TestRetailAsyncEndedByClose(t *testing.T) {
	p := &PPaaS{log: slog.New(slog.DiscardHandler)}
	rt := &retail{p: p, cfg: RetailConfig{RelayTimeout: time.Hour, MaxAsync: 1}, devices: map[string]*relayDevice{},
		waiters: map[string]*relayWaiter{}, webhook: newWebhookClient(nil)}
	rt.ctx, rt.stop = context.WithCancel(context.Background())
	p.retail = rt
	wt := &relayWaiter{serial: "S1", answer: make(chan []byte, 1), lost: make(chan struct{}), async: true}
	rt.waiters["R1"] = wt
	rt.async++
	rt.hooks.Add(1)
	go rt.awaitAsync(&RetailSession{SessionID: "S1", WebhookURL: "http://127.0.0.1:9/hook"}, "R1", wt)

	closed := make(chan struct{})
	go func() { p.closeRetail(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for an async exchange nobody will answer")
	}
	require.Zero(t, rt.async)
	require.Empty(t, rt.waiters)
}

// TestWebhookHosts: loopback only by default, an allow-list adds hosts, and
// the default client refuses to dial anything that is not loopback (a name
// resolving elsewhere, a redirect).
func TestWebhookHosts(t *testing.T) {
	for _, tc := range []struct {
		host  string
		allow []string
		ok    bool
	}{
		{"127.0.0.1", nil, true},
		{"127.9.9.9", nil, true},
		{"::1", nil, true},
		{"LOCALHOST", nil, true},
		{"192.0.2.1", nil, false},
		{"pos.example", nil, false},
		{"0.0.0.0", nil, false},
		{"pos.example", []string{"pos.example"}, true},
		{"other.example", []string{"pos.example"}, false},
	} {
		err := webhookHostAllowed(tc.host, tc.allow)
		if tc.ok {
			require.NoError(t, err, tc.host)
		} else {
			require.Error(t, err, tc.host)
		}
	}
	_, err := newWebhookClient(nil).Post("http://192.0.2.1:9/hook", "application/json", nil)
	require.ErrorContains(t, err, "not a loopback address")
}
