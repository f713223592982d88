package world_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

// cloudWorld is a world whose agent keeps its cloud connection to the
// simulator's relay, and a cloud POS with a session open to it.
type cloudWorld struct {
	w      *world.World
	local  *world.POS // 3.x on the agent's /nexo
	rc     *world.RetailClient
	sess   sim.RetailSession
	cloud  *world.POS // v5 through the Retail API
	cloudc *agent.CloudConnector
}

func startCloudWorld(t *testing.T, webhook string, mods ...func(*world.WorldConfig)) *cloudWorld {
	t.Helper()
	w, local := startWorld(t, func(c *world.WorldConfig) {
		c.Cloud = true
		for _, m := range mods {
			m(c)
		}
	})
	cc := w.Agent.Cloud()
	require.NotNil(t, cc)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	require.NoError(t, cc.WaitConnected(ctx))
	rc := &world.RetailClient{BaseURL: w.PPaaS.RetailURL(), HTTP: local.Client.HTTP}
	var devs []sim.RetailDevice
	require.Eventually(t, func() bool { // the relay registers the device just after the upgrade
		var err error
		devs, err = rc.Devices(ctx)
		return err == nil && len(devs) == 1 && devs[0].Connected
	}, 15*time.Second, 5*time.Millisecond)
	require.Equal(t, w.Agent.POIID(), devs[0].DeviceID)
	require.True(t, devs[0].Connected)
	require.Contains(t, devs[0].PaymentMethods, "KB")
	sess, err := rc.Open(ctx, devs[0].DeviceID, "CLOUD1", webhook)
	require.NoError(t, err)
	return &cloudWorld{w: w, local: local, rc: rc, sess: sess, cloud: rc.POS(sess), cloudc: cc}
}

func (cw *cloudWorld) charges() int {
	_, c := cw.w.PPaaS.Transactions()
	return c[cw.w.Agent.Serial()]
}

// awaitReconnected waits until the agent has connected n times in all.
func (cw *cloudWorld) awaitReconnected(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return cw.cloudc.Stats().Connects >= n && cw.cloudc.Connected() },
		15*time.Second, 10*time.Millisecond, "the agent reconnects to the relay")
}

func (cw *cloudWorld) status(t *testing.T, serviceID string) *nexo.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	st, err := cw.cloud.Status(ctx, serviceID)
	require.NoError(t, err)
	return st
}

// TestCloudSale: a cloud POS lists the store's device, opens a session and
// pays through the relay: approved, declined, aborted (the Abort is relayed
// while the payment runs); MessageStatus through the cloud reports the
// approved one; one charge in all.
func TestCloudSale(t *testing.T) {
	cw := startCloudWorld(t, "")
	w := cw.w

	req := cw.cloud.PaymentRequest("CPAY1", 1250, "EUR", "KB")
	done := payAsync(t, cw.cloud, req)
	s := awaitScreen(t, w, "awaiting_consumer")
	require.Equal(t, int64(1250), s.Amount)
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, nexo.Success, r.resp.Status.Result, world.Describe(r.resp))
	require.Equal(t, int64(1250), r.resp.Payment.Result.AuthorizedAmount.Minor)
	approved := r.resp.Payment.POITransactionID.ID
	awaitScreen(t, w, "approved")

	done = payAsync(t, cw.cloud, cw.cloud.PaymentRequest("CPAY2", 990, "EUR", "KB"))
	s = awaitScreen(t, w, "awaiting_consumer")
	_, err = w.PPaaS.Act(s.TransactionID, "decline")
	require.NoError(t, err)
	r = <-done
	require.NoError(t, r.err)
	require.Equal(t, nexo.Failure, r.resp.Status.Result, world.Describe(r.resp))

	done = payAsync(t, cw.cloud, cw.cloud.PaymentRequest("CPAY3", 500, "EUR", "KB"))
	awaitScreen(t, w, "awaiting_consumer")
	require.NoError(t, cw.cloud.Abort(t.Context(), "CPAY3"))
	r = <-done
	require.NoError(t, r.err)
	require.Equal(t, nexo.Failure, r.resp.Status.Result, world.Describe(r.resp))
	require.Equal(t, nexo.Aborted, r.resp.Status.ErrorCondition, world.Describe(r.resp))

	st := cw.status(t, "CPAY1")
	require.Equal(t, nexo.Success, st.Status.Result, world.Describe(st))
	require.Equal(t, approved, st.TransactionStatus.Repeated.Payment.POITransactionID.ID)
	require.Equal(t, 1, cw.charges())
	// The relay acknowledges an answer on the device's connection while it
	// hands it to the POS: the agent reads that ack on its own goroutine.
	require.Eventually(t, func() bool { return cw.cloudc.Pending() == 0 }, 15*time.Second, 10*time.Millisecond,
		"every answer acknowledged")
}

// TestCloudConnectionDropped: the relay loses the device's connection
// between the relay of a sale and its answer, in both places: while the
// payment runs (the answer is kept until the agent is back) and as the answer
// travels (the agent delivers it again on the next connection). The POS's
// call fails; it learns the outcome through MessageStatus, and a retry of the
// same exchange is replayed, never charged twice.
func TestCloudConnectionDropped(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults sim.RetailFaults
	}{
		{"while the payment runs", sim.RetailFaults{DropAfterRelay: 1}},
		{"as the answer travels", sim.RetailFaults{DropAnswer: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cw := startCloudWorld(t, "")
			w := cw.w
			cw.w.PPaaS.SetRetailFaults(tc.faults)
			req := cw.cloud.PaymentRequest("DROP1", 2100, "EUR", "KB")
			done := payAsync(t, cw.cloud, req)
			s := awaitScreen(t, w, "awaiting_consumer")
			_, err := w.PPaaS.Act(s.TransactionID, "pay")
			require.NoError(t, err)
			r := <-done
			require.Error(t, r.err, "the relay could not answer the POS")
			require.Contains(t, r.err.Error(), "502")

			cw.awaitReconnected(t, 2)
			require.Eventually(t, func() bool { return cw.cloudc.Pending() == 0 }, 15*time.Second, 10*time.Millisecond,
				"the kept answer is delivered and acknowledged")
			require.GreaterOrEqual(t, w.PPaaS.RetailStats().Late, 1, "the answer reached the relay after the POS's call ended")

			st := cw.status(t, "DROP1")
			require.Equal(t, nexo.Success, st.Status.Result, world.Describe(st))
			require.Equal(t, nexo.Success, st.TransactionStatus.Repeated.Status.Result)
			require.Equal(t, int64(2100), st.TransactionStatus.Repeated.Payment.Result.AuthorizedAmount.Minor)

			again, err := cw.cloud.Client.Do(t.Context(), req)
			require.NoError(t, err)
			require.Equal(t, st.TransactionStatus.Repeated.Payment.POITransactionID.ID, again.Payment.POITransactionID.ID)
			require.Equal(t, 1, cw.charges(), "charged once")
		})
	}
}

// TestCloudDuplicateDelivery: a sale the relay delivers twice is executed
// once; the same exchange sent again later (a new relay id) is replayed from
// the journal.
func TestCloudDuplicateDelivery(t *testing.T) {
	cw := startCloudWorld(t, "")
	w := cw.w
	w.PPaaS.SetRetailFaults(sim.RetailFaults{Duplicate: 1})
	req := cw.cloud.PaymentRequest("DUP1", 3300, "EUR", "KB")
	done := payAsync(t, cw.cloud, req)
	s := awaitScreen(t, w, "awaiting_consumer")
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, nexo.Success, r.resp.Status.Result, world.Describe(r.resp))
	require.Equal(t, 2, w.PPaaS.RetailStats().Relayed)
	require.Equal(t, 1, cw.cloudc.Stats().Duplicates, "the second delivery is not served")
	require.Equal(t, 1, cw.cloudc.Stats().Served)

	again, err := cw.cloud.Client.Do(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, r.resp.Payment.POITransactionID.ID, again.Payment.POITransactionID.ID)
	require.Equal(t, 1, cw.charges(), "charged once")
}

// TestCloudAndLocalInterleaved: v5 payments through the cloud and 3.x
// payments on the local /nexo share one agent: one at a time (a local
// payment during a cloud one is Busy), one journal (each path reads the
// other's outcome), one charge each.
func TestCloudAndLocalInterleaved(t *testing.T) {
	cw := startCloudWorld(t, "")
	w := cw.w
	pay := func(pos *world.POS, serviceID string, minor int64, during func()) *nexo.Response {
		done := payAsync(t, pos, pos.PaymentRequest(serviceID, minor, "EUR", "KB"))
		s := awaitScreen(t, w, "awaiting_consumer")
		require.Equal(t, minor, s.Amount)
		if during != nil {
			during()
		}
		_, err := w.PPaaS.Act(s.TransactionID, "pay")
		require.NoError(t, err)
		r := <-done
		require.NoError(t, r.err)
		require.Equal(t, nexo.Success, r.resp.Status.Result, world.Describe(r.resp))
		awaitScreen(t, w, "approved")
		return r.resp
	}
	c1 := pay(cw.cloud, "MIX1", 100, func() {
		busy, err := cw.local.Pay(t.Context(), "LBUSY", 50, "EUR", "KB")
		require.NoError(t, err)
		require.Equal(t, nexo.Busy, busy.Status.ErrorCondition, world.Describe(busy))
	})
	l1 := pay(cw.local, "MIX2", 200, nil)
	c2 := pay(cw.cloud, "MIX3", 300, nil)
	l2 := pay(cw.local, "MIX4", 400, nil)
	require.Equal(t, 4, cw.charges())

	// The cloud POS reads a local payment's outcome and the other way round.
	other := &world.POS{Client: cw.cloud.Client, POIID: cw.cloud.POIID, SaleID: "POS1"}
	st, err := other.Status(t.Context(), "MIX2")
	require.NoError(t, err)
	require.Equal(t, l1.Payment.POITransactionID.ID, st.TransactionStatus.Repeated.Payment.POITransactionID.ID)
	st, err = (&world.POS{Client: cw.local.Client, POIID: cw.local.POIID, SaleID: "CLOUD1"}).Status(t.Context(), "MIX3")
	require.NoError(t, err)
	require.Equal(t, c2.Payment.POITransactionID.ID, st.TransactionStatus.Repeated.Payment.POITransactionID.ID)
	require.NotEqual(t, c1.Payment.POITransactionID.ID, l2.Payment.POITransactionID.ID)
}

// TestCloudAsyncWebhook: mode=async answers 202 at once and posts the
// device's answer to the session's webhook.
func TestCloudAsyncWebhook(t *testing.T) {
	got := make(chan []byte, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	t.Cleanup(hook.Close)
	cw := startCloudWorld(t, hook.URL)
	body, err := nexo.JSON5Codec{}.EncodeRequest(cw.cloud.PaymentRequest("ASYNC1", 720, "EUR", "KB"))
	require.NoError(t, err)
	id, err := cw.rc.SendAsync(t.Context(), cw.sess, body)
	require.NoError(t, err)
	require.NotEmpty(t, id)
	s := awaitScreen(t, cw.w, "awaiting_consumer")
	_, err = cw.w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	select {
	case b := <-got:
		resp, err := nexo.JSON5Codec{}.DecodeResponse(b)
		require.NoError(t, err)
		require.Equal(t, nexo.Success, resp.Status.Result, world.Describe(resp))
		require.Equal(t, int64(720), resp.Payment.Result.AuthorizedAmount.Minor)
	case <-time.After(20 * time.Second):
		t.Fatal("no webhook")
	}
}

// TestCloudSlowDeviceAndRefusals: the slow-device fault delays the relay;
// the Retail API refuses a POS without its key and an unknown session, and
// the relay refuses a device without its token.
func TestCloudSlowDeviceAndRefusals(t *testing.T) {
	cw := startCloudWorld(t, "")
	cw.w.PPaaS.SetRetailFaults(sim.RetailFaults{SlowDevice: sim.Duration(300 * time.Millisecond)})
	start := time.Now()
	d, err := cw.cloud.Client.Do(t.Context(), &nexo.Request{
		Header:    nexo.Header{Class: nexo.ClassService, Category: nexo.CategoryDiagnosis, Type: nexo.TypeRequest, ServiceID: "DIAG1", SaleID: "CLOUD1", POIID: cw.cloud.POIID},
		Diagnosis: &nexo.DiagnosisRequest{},
	})
	require.NoError(t, err)
	require.Equal(t, nexo.Success, d.Status.Result, world.Describe(d))
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	require.Contains(t, d.Diagnosis.Hosts, nexo.HostStatus{AcquirerID: "PPaaS-cloud", Reachable: true}, "Diagnosis names the cloud connection")

	noKey := &world.RetailClient{BaseURL: cw.rc.BaseURL, Key: "wrong", HTTP: cw.rc.HTTP}
	_, err = noKey.Devices(t.Context())
	require.ErrorContains(t, err, "401")
	bad := cw.sess
	bad.SessionID, bad.MessagesURL = "S999", sim.RetailSessionsPath+"/S999/messages"
	_, err = cw.rc.SendAsync(t.Context(), bad, []byte(`{}`))
	require.ErrorContains(t, err, "404")

	// A device connection needs the device certificate and token.
	resp, err := cw.rc.HTTP.Get(cw.w.PPaaS.URL() + sim.RetailRelayPath)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// TestCloudRevokedDevice: a device whose credentials are revoked loses the
// relay (a sale is refused, not relayed) until they are restored.
func TestCloudRevokedDevice(t *testing.T) {
	cw := startCloudWorld(t, "")
	w := cw.w
	require.NoError(t, w.PPaaS.RevokeCredentials(w.Agent.Serial(), true))
	_, err := cw.cloud.Pay(t.Context(), "REV1", 100, "EUR", "KB")
	require.ErrorContains(t, err, "503")
	require.Equal(t, 0, w.PPaaS.RetailStats().Relayed, "nothing relayed to a revoked device")
	require.NoError(t, w.PPaaS.RevokeCredentials(w.Agent.Serial(), false))
	cw.awaitReconnected(t, 2)
	require.Eventually(t, func() bool {
		devs, err := cw.rc.Devices(t.Context())
		return err == nil && len(devs) == 1 && devs[0].Connected
	}, 15*time.Second, 5*time.Millisecond)
	d, err := cw.cloud.Diagnosis(t.Context())
	require.NoError(t, err)
	require.Equal(t, nexo.Success, d.Status.Result, world.Describe(d))
}

// TestCloudAsyncBounded: the Retail API's async exchanges are capped (429
// with Retry-After beyond MaxAsync, before anything is relayed; the slot comes
// back with the answer). TestRetailAsyncEndedByClose (sim) shows they are
// owned.
func TestCloudAsyncBounded(t *testing.T) {
	got := make(chan []byte, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	t.Cleanup(hook.Close)
	cw := startCloudWorld(t, hook.URL, func(c *world.WorldConfig) { c.PPaaS.Retail.MaxAsync = 1 })
	send := func(serviceID string) error {
		body, err := nexo.JSON5Codec{}.EncodeRequest(cw.cloud.PaymentRequest(serviceID, 410, "EUR", "KB"))
		require.NoError(t, err)
		_, err = cw.rc.SendAsync(t.Context(), cw.sess, body)
		return err
	}
	require.NoError(t, send("CAP1"))
	s := awaitScreen(t, cw.w, "awaiting_consumer")
	err := send("CAP2")
	require.ErrorContains(t, err, "429")
	require.ErrorContains(t, err, "1 asynchronous exchanges are waiting")
	require.Equal(t, 1, cw.w.PPaaS.RetailStats().Relayed, "the refused message is not relayed")
	_, err = cw.w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("no webhook")
	}
	// The slot is back once the webhook is posted.
	require.Eventually(t, func() bool { return send("CAP3") == nil }, 10*time.Second, 10*time.Millisecond)
	s = awaitScreen(t, cw.w, "awaiting_consumer")
	_, err = cw.w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("no webhook")
	}
}

// TestCloudWebhookLoopbackOnly: a session's webhook must be loopback unless
// the simulator is given an allow-list; the refusal says so.
func TestCloudWebhookLoopbackOnly(t *testing.T) {
	cw := startCloudWorld(t, "")
	devs, err := cw.rc.Devices(t.Context())
	require.NoError(t, err)
	for _, u := range []string{"http://192.0.2.1:9/hook", "https://example.com/hook", "http://10.0.0.1/x"} {
		_, err := cw.rc.Open(t.Context(), devs[0].DeviceID, "CLOUD2", u)
		require.ErrorContains(t, err, "400", u)
		require.ErrorContains(t, err, "webhook_not_allowed", u)
		require.ErrorContains(t, err, "loopback", u)
	}
	for _, u := range []string{"http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/hook"} {
		_, err := cw.rc.Open(t.Context(), devs[0].DeviceID, "CLOUD2", u)
		require.NoError(t, err, u)
	}
}

// TestCloudRetryAfterAgentRestart: the answers the cloud connector keeps for
// redelivery are memory, lost with the process; the outcome is not. A cloud
// payment whose answer was lost with the connection, then an agent restart
// (a new process on the same journal), then the POS's retry of the same
// exchange: the new agent serves it, the Nexo server replays the journaled
// answer (duplicate ServiceID), and the consumer is charged once.
func TestCloudRetryAfterAgentRestart(t *testing.T) {
	cw := startCloudWorld(t, "")
	w := cw.w
	w.PPaaS.SetRetailFaults(sim.RetailFaults{DropAnswer: 1})
	req := cw.cloud.PaymentRequest("RST1", 1875, "EUR", "KB")
	done := payAsync(t, cw.cloud, req)
	s := awaitScreen(t, w, "awaiting_consumer")
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := <-done
	require.ErrorContains(t, r.err, "502", "the answer was lost with the connection")

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.RestartAgent(ctx))
	cc := w.Agent.Cloud()
	require.NotSame(t, cw.cloudc, cc)
	require.NoError(t, cc.WaitConnected(ctx))
	require.Zero(t, cc.Pending(), "nothing kept across the restart")
	require.Eventually(t, func() bool {
		devs, err := cw.rc.Devices(ctx)
		return err == nil && len(devs) == 1 && devs[0].Connected
	}, 15*time.Second, 5*time.Millisecond)

	again, err := cw.cloud.Client.Do(ctx, req)
	require.NoError(t, err)
	require.Equal(t, nexo.Success, again.Status.Result, world.Describe(again))
	require.Equal(t, int64(1875), again.Payment.Result.AuthorizedAmount.Minor)
	require.Equal(t, 1, cc.Stats().Served, "the new agent served the retry: the answer came from the journal")
	require.Equal(t, 1, cw.charges(), "charged once")
	st := cw.status(t, "RST1")
	require.Equal(t, again.Payment.POITransactionID.ID, st.TransactionStatus.Repeated.Payment.POITransactionID.ID)
}
