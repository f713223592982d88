package agent_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/nexo"
	simworld "github.com/termagent/termagent/sim/world"
)

// payApprovedAfterQR starts a KB payment, approves it at the provider as soon as
// the terminal shows its QR, and returns the response and the time from the
// approval to the POS's answer.
func (w *world) payApprovedAfterQR(serviceID string) (*nexo.Response, time.Duration) {
	w.t.Helper()
	done := w.payAsync(serviceID, 2000)
	s := w.awaitQR()
	approved := time.Now()
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(w.t, err)
	r := w.answer(done, 15*time.Second)
	return r, time.Since(approved)
}

// With no broker configured, polling is the event source: the first status poll
// comes after poll_first (1 s), not after event_wait (5 s), so an approval
// reaches the POS within about one poll interval.
func TestE2EPollingModeAnswersApprovalWithinAPollInterval(t *testing.T) {
	w := startWorld(t, func(c *agent.Config) {
		c.MQTTURL = ""
		c.EventWait = 5 * time.Second // the default: it no longer delays polling mode
	})
	r, took := w.payApprovedAfterQR("POLL1")
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	t.Logf("polling mode: approval answered %s after the consumer paid", took.Round(time.Millisecond))
	require.Less(t, took, 2*time.Second)
	_, sources := w.qrPath(r.Payment.POITransactionID.ID)
	require.Contains(t, sources, "poll", "the outcome came from a poll")
	require.Equal(t, 1, w.charges())
}

// With a broker configured but down, the agent polls as fast as with none.
func TestE2EBrokerDownPollsAtPollFirst(t *testing.T) {
	w := startWorld(t, func(c *agent.Config) { c.EventWait = 5 * time.Second })
	require.NoError(t, w.PPaaS.StopBroker())
	w.waitFor(10*time.Second, "the agent notices the broker is down", func() bool {
		return !hostReachable(w.diagnosis(), "PPaaS-MQTT")
	}, func() string { return "MQTT still reachable" })
	r, took := w.payApprovedAfterQR("POLL2")
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	t.Logf("broker down: approval answered %s after the consumer paid", took.Round(time.Millisecond))
	require.Less(t, took, 2*time.Second)
}

// The document's demo custom-token mode end to end: no device certificate, the
// merchant's login at realm sandbox-ma, the custom token for
// ingenico-{MODEL}-{SERIAL}, then a payment on the API with that token.
func TestE2ECustomTokenModePays(t *testing.T) {
	w := startWorld(t, func(c *agent.Config) {
		base := c.APIURL // the simulator; the realm lives on the same listener
		c.Grant = agent.GrantDemoCustomToken
		c.AuthURL, c.MQTTURL = "", ""
		c.Cert, c.Key = "", "" // no device certificate at all
		c.MerchantTokenURL = base + "/auth/realms/sandbox-ma/protocol/openid-connect/token"
		c.CustomTokenURL = base + "/auth/realms/sandbox-ma/custom-token"
		c.Username, c.Password = "merchant", "@Welcome123"
		c.Serial, c.Model = certs.DefaultSerial, certs.DefaultModel
	})
	r, took := w.payApprovedAfterQR("CUST1")
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	t.Logf("custom-token mode: approval answered %s after the consumer paid", took.Round(time.Millisecond))
	st := w.PPaaS.AuthStats()
	require.Equal(t, 1, st.MerchantLogins)
	require.GreaterOrEqual(t, st.CustomTokens, 1)
	require.Zero(t, w.PPaaS.Stats().Devices, "no merchant credentials were fetched: no certificate was used")
	require.Equal(t, 1, w.charges())
}

// The portal's RENEW: the old secret is refused from then on, the token already
// issued keeps working until it expires, and when the agent must authenticate
// again it fetches the new secret and carries on.
func TestE2ERenewedSecretAgentRecovers(t *testing.T) {
	w := startWorld(t, nil)
	r, _ := w.payApprovedAfterQR("REN1")
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	issued := w.PPaaS.Stats().TokensIssued

	require.NoError(t, w.PPaaS.RenewSecret(w.Agent.Serial()))
	r, _ = w.payApprovedAfterQR("REN2")
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	require.Equal(t, issued, w.PPaaS.Stats().TokensIssued, "the token issued before the renewal still works")

	w.PPaaS.ExpireTokens() // its expiry: the agent must authenticate again
	r, _ = w.payApprovedAfterQR("REN3")
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	require.Greater(t, w.PPaaS.Stats().TokensIssued, issued)
	require.Equal(t, 3, w.charges())
}

// Several merchant credentials for the terminal: without user_domain the agent
// refuses to start and names them; with it, it authenticates with that entry.
func TestE2ESeveralMerchantCredentialsNeedUserDomain(t *testing.T) {
	w := startWorld(t, nil)
	require.NoError(t, w.PPaaS.AddMerchantCredentials(w.Agent.Serial(), "Second Shop", "shop2"))
	run := func(domain string) (*agent.Agent, <-chan error, context.CancelFunc) {
		c := w.Config
		c.DataDir, c.NexoListen, c.UserDomain = t.TempDir(), "127.0.0.1:0", domain
		a, err := agent.New(c, agent.Build{Version: "test"}, slog.New(slog.DiscardHandler), agent.Options{})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		return a, done, cancel
	}

	_, done, cancel := run("")
	defer cancel()
	select {
	case err := <-done:
		require.ErrorContains(t, err, `2 entries for serial `+w.Agent.Serial())
		require.ErrorContains(t, err, `"ppaasfr" (firstname lastname), "shop2" (Second Shop)`)
		require.ErrorContains(t, err, "set user_domain")
	case <-time.After(15 * time.Second):
		t.Fatal("the agent did not refuse to start")
	}

	a, done, cancel := run("shop2")
	defer cancel()
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the agent with user_domain did not become ready")
	}
	cancel()
	require.NoError(t, <-done)
}

// The broker goes down while a payment waits: the agent switches to polling
// within about poll_first instead of waiting out event_wait.
func TestE2EBrokerDownMidPaymentSwitchesToPolling(t *testing.T) {
	w := startWorld(t, func(c *agent.Config) { c.EventWait = 10 * time.Second })
	done := w.payAsync("POLL3", 2000)
	s := w.awaitQR()
	require.NoError(t, w.PPaaS.StopBroker())
	w.waitFor(10*time.Second, "the agent notices the broker is down", func() bool {
		return !hostReachable(w.diagnosis(), "PPaaS-MQTT")
	}, func() string { return "MQTT still reachable" })
	approved := time.Now()
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := w.answer(done, 15*time.Second)
	took := time.Since(approved)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	t.Logf("broker down mid-payment: approval answered %s after the consumer paid", took.Round(time.Millisecond))
	require.Less(t, took, 2500*time.Millisecond, "well before event_wait (10 s)")
}
