package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/internal/syncbuf"
	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

// crashArgsEnv carries the agent's arguments to the re-executed test binary.
const crashArgsEnv = "AGENT_CRASH_TEST_ARGS"

// TestCrashChildAgent is the agent process of the crash tests: the test binary
// re-executed runs run() as main would, until it is killed.
func TestCrashChildAgent(t *testing.T) {
	raw := os.Getenv(crashArgsEnv)
	if raw == "" {
		t.Skip("the agent process of the crash tests; run by them")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, args, os.Getenv, os.Stderr, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// crashWorld is an in-process simulated PPaaS and an agent running as a
// separate process on a data dir that outlives it.
type crashWorld struct {
	t      testing.TB
	sim    *sim.PPaaS
	dir    string
	serial string
	caPool *tls.Config
	proc   *agentProc
	seen   map[string]bool // QR transactions already awaited
}

func newCrashWorld(t testing.TB) *crashWorld {
	t.Helper()
	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir})
	require.NoError(t, err)
	p, err := sim.New(sim.Config{Addr: "127.0.0.1:0", CertsDir: dir})
	require.NoError(t, err)
	require.NoError(t, p.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, p.Close(ctx))
	})
	pool, err := mtls.LoadCAPool(filepath.Join(dir, certs.BundleFile))
	require.NoError(t, err)
	return &crashWorld{t: t, sim: p, dir: dir, serial: certs.DefaultSerial, caPool: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, seen: map[string]bool{}}
}

// agentProc is one run of the agent process.
type agentProc struct {
	cmd    *exec.Cmd
	ready  chan string // the POS URL, once the agent logged it is ready
	logs   *syncbuf.Buffer
	exited chan struct{}
	err    error // the process's exit status, once exited
}

// start runs the agent on the world's data dir, waits until it is ready and
// returns its POS URL. extra arguments override the defaults.
func (w *crashWorld) start(extra ...string) string {
	w.t.Helper()
	args := w.agentArgs(extra...)
	raw, err := json.Marshal(args)
	require.NoError(w.t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChildAgent$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashArgsEnv+"="+string(raw))
	p := watchAgent(w.t, cmd)
	w.proc = p
	select {
	case url := <-p.ready:
		return url
	case <-p.exited:
		w.t.Fatalf("agent exited before ready: %v\n%s", p.err, p.logs)
	case <-time.After(20 * time.Second):
		w.t.Fatalf("agent not ready in 20 s:\n%s", p.logs)
	}
	return ""
}

// agentArgs are the agent's flags for this world: its certificates, the
// simulated PPaaS, a data dir that outlives the process, JSON logs. extra
// flags override the defaults.
func (w *crashWorld) agentArgs(extra ...string) []string {
	d := w.dir
	args := []string{
		"-auth-url", w.sim.URL(), "-api-url", w.sim.URL(), "-mqtt-url", w.sim.MQTTURL(),
		"-cert", filepath.Join(d, certs.ClientCertFile), "-key", filepath.Join(d, certs.ClientKeyFile), "-ca", filepath.Join(d, certs.BundleFile),
		"-nexo-cert", filepath.Join(d, certs.AgentCertFile), "-nexo-key", filepath.Join(d, certs.AgentKeyFile),
		"-nexo-listen", "127.0.0.1:0", "-admin-listen", "", "-data-dir", filepath.Join(d, "data"),
		"-display-url", w.sim.TerminalURL(w.serial) + "/display",
		"-payment-timeout", "30s", "-event-wait", "500ms", "-log-format", "json",
	}
	return append(args, extra...)
}

// kill sends SIGKILL and waits until the process is gone.
func (w *crashWorld) kill() {
	w.t.Helper()
	require.NoError(w.t, w.proc.cmd.Process.Kill())
	select {
	case <-w.proc.exited:
	case <-time.After(10 * time.Second):
		w.t.Fatal("killed agent did not exit")
	}
	var ee *exec.ExitError
	require.True(w.t, errors.As(w.proc.err, &ee), "killed: %v", w.proc.err)
	require.Equal(w.t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal())
}

// pos is a POS client for the running agent.
func (w *crashWorld) pos(url string) *world.POS {
	return &world.POS{
		Client: &nexo.Client{URL: url, HTTP: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: w.caPool}}},
		POIID:  certs.DefaultModel + "-" + w.serial,
	}
}

// awaitQR waits until the virtual terminal shows the consumer the QR of a
// transaction not awaited before (a killed agent leaves its last screen).
func (w *crashWorld) awaitQR() display.Screen {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), 15*time.Second)
	defer cancel()
	for s := range w.sim.Terminals().Watch(ctx, w.serial) {
		if s.State == "awaiting_consumer" && s.TransactionID != "" && !w.seen[s.TransactionID] {
			w.seen[s.TransactionID] = true
			return s
		}
	}
	w.t.Fatalf("the terminal never showed a QR; agent logs:\n%s", w.proc.logs)
	return display.Screen{}
}

// settledStatus polls TransactionStatus until the payment is no longer in
// progress (recovery settles it after the restart) and returns the repeated
// payment response.
func (w *crashWorld) settledStatus(pos *world.POS, serviceID string) *nexo.Response {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := pos.Status(w.t.Context(), serviceID)
		require.NoError(w.t, err)
		if st.Status.Result == nexo.Success {
			require.NotNil(w.t, st.TransactionStatus.Repeated, world.Describe(st))
			return st.TransactionStatus.Repeated
		}
		require.Equal(w.t, nexo.InProgress, st.Status.ErrorCondition, world.Describe(st))
		if time.Now().After(deadline) {
			w.t.Fatalf("payment %s still in progress 20 s after the restart; agent logs:\n%s", serviceID, w.proc.logs)
		}
		select {
		case <-tick.C:
		case <-w.t.Context().Done():
			w.t.Fatal(w.t.Context().Err())
		}
	}
}

// simTx is the simulator's record of the transaction with a PPaaS id.
func (w *crashWorld) simTx(id string) sim.SimTransaction {
	w.t.Helper()
	tx, ok := w.sim.Transaction(id)
	require.True(w.t, ok, "no transaction %s at the simulator", id)
	return tx
}

// waitFor polls cond until it holds or within passes.
func (w *crashWorld) waitFor(within time.Duration, what string, cond func() bool) {
	w.t.Helper()
	testrig.WaitFor(w.t, within, what, cond, func() string { return "agent logs:\n" + w.proc.logs.String() })
}

type posResult struct {
	resp *nexo.Response
	err  error
}

func sendAsync(pos *world.POS, req *nexo.Request) <-chan posResult {
	ch := make(chan posResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r, err := pos.Client.Do(ctx, req)
		ch <- posResult{r, err}
	}()
	return ch
}

// kill -9 while the consumer looks at the QR: after the restart,
// TransactionStatus says the payment was interrupted and cancelled, the
// transaction is cancelled at PPaaS, the consumer can no longer pay it, and
// the POS resending the same request gets the same answer, not a new charge.
func TestCrashWhileAwaitingConsumerCancelsAtPPaaS(t *testing.T) {
	w := newCrashWorld(t)
	url := w.start()
	pos := w.pos(url)
	req := pos.PaymentRequest("KILL1", 2500, "EUR", "KB")
	answer := sendAsync(pos, req)
	s := w.awaitQR()

	w.kill()
	r := <-answer
	require.Error(t, r.err, "the POS lost its connection with the agent")
	killed := time.Now()

	pos = w.pos(w.start())
	rep := w.settledStatus(pos, "KILL1")
	t.Logf("settled %s after the restart began", time.Since(killed).Round(time.Millisecond))
	require.Equal(t, nexo.Failure, rep.Status.Result, world.Describe(rep))
	require.Equal(t, nexo.Cancel, rep.Status.ErrorCondition, world.Describe(rep))
	require.Contains(t, rep.Status.AdditionalResponse, "interrupted by an agent restart")

	// The reversal advice queued by recovery cancels it at PPaaS.
	w.waitFor(15*time.Second, "cancelled at PPaaS", func() bool { return w.simTx(s.TransactionID).Status == ppaas.Cancelled })
	_, err := w.sim.Act(s.TransactionID, "pay")
	require.Error(t, err, "the consumer can no longer pay it")
	// Once the advice is carried out, TransactionStatus says so.
	w.waitFor(10*time.Second, "TransactionStatus reports the cancellation", func() bool {
		return strings.Contains(w.settledStatus(pos, "KILL1").Status.AdditionalResponse, "cancelled at PPaaS, no money moved")
	})
	rep = w.settledStatus(pos, "KILL1")
	require.Equal(t, nexo.Cancel, rep.Status.ErrorCondition, world.Describe(rep))
	require.Contains(t, rep.Status.AdditionalResponse, "interrupted by an agent restart")

	again, err := pos.Client.Do(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, nexo.Cancel, again.Status.ErrorCondition, "the same request replays the settled answer: %s", world.Describe(again))
	txs, charges := w.sim.Transactions()
	require.Len(t, txs, 1)
	require.Zero(t, charges[w.serial])
}

// kill -9 at various moments right after the consumer paid (approved at
// PPaaS; the agent may or may not have answered and journaled it): after the
// restart TransactionStatus says Success with the transaction's identity and
// PPaaS holds exactly one charge, not refunded.
func TestCrashRightAfterConsumerPaidReportsSuccess(t *testing.T) {
	delays := []time.Duration{0, 2 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond}
	w := newCrashWorld(t)
	pos := w.pos(w.start())
	var ids []string
	for i, d := range delays {
		sid := fmt.Sprintf("PAID%d", i)
		answer := sendAsync(pos, pos.PaymentRequest(sid, int64(1000+i), "EUR", "KB"))
		s := w.awaitQR()
		_, err := w.sim.Act(s.TransactionID, "pay")
		require.NoError(t, err)
		ids = append(ids, s.TransactionID)
		// The kill point varies; this delay is the experiment, not a wait.
		if d > 0 {
			timer := time.NewTimer(d)
			<-timer.C
		}
		w.kill()
		r := <-answer
		answered := r.err == nil
		if answered {
			require.Equal(t, nexo.Success, r.resp.Status.Result, world.Describe(r.resp))
		}

		pos = w.pos(w.start())
		rep := w.settledStatus(pos, sid)
		require.Equal(t, nexo.Success, rep.Status.Result, "kill %s after pay (answered before: %v): %s", d, answered, world.Describe(rep))
		tx := w.simTx(s.TransactionID)
		require.Equal(t, tx.ClientTransactionID, rep.Payment.POITransactionID.ID)
		require.NotNil(t, rep.Payment.Result)
		require.Equal(t, int64(1000+i), rep.Payment.Result.AuthorizedAmount.Minor)
		t.Logf("kill %s after pay: answered before the kill: %v", d, answered)
	}
	txs, charges := w.sim.Transactions()
	require.Len(t, txs, len(delays))
	require.Equal(t, len(delays), charges[w.serial], "one charge per payment")
	for _, id := range ids {
		tx := w.simTx(id)
		require.Equal(t, ppaas.Approved, tx.Status, "not refunded: the POS was told Success")
		require.Equal(t, 1, tx.Charges)
	}

	// PPaaS hears every outcome once, whether the agent journaled it before the
	// kill or recovery did after it (the receiver drops resends by key).
	results := func() map[string]string {
		out := map[string]string{}
		ev, _ := w.sim.Ingested()
		for _, e := range ev {
			var r struct {
				POITransactionID string `json:"poiTransactionId"`
				Result           string `json:"result"`
			}
			if e.Kind == "transaction-result" && json.Unmarshal(e.Payload, &r) == nil {
				require.NotContains(t, out, r.POITransactionID, "one result per payment")
				out[r.POITransactionID] = r.Result
			}
		}
		return out
	}
	w.waitFor(15*time.Second, "every result reaches PPaaS", func() bool { return len(results()) == len(ids) })
	for _, id := range ids {
		require.Equal(t, string(nexo.Success), results()[w.simTx(id).ClientTransactionID])
	}
	_, stats := w.sim.Ingested()
	t.Logf("results ingested: %d, resends dropped by key: %d", stats.Events, stats.Duplicates)
}

// kill -9 within milliseconds of the POS's request, around the create call:
// whatever the journal and PPaaS got before the kill, after the restart the
// POS learns a Failure (or that the payment never started), every transaction
// PPaaS created for it ends cancelled, and nothing is charged.
func TestCrashAroundCreateChargesNothing(t *testing.T) {
	delays := []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond}
	w := newCrashWorld(t)
	pos := w.pos(w.start())
	for i, d := range delays {
		sid := fmt.Sprintf("CRE%d", i)
		answer := sendAsync(pos, pos.PaymentRequest(sid, int64(500+i), "EUR", "KB"))
		if d > 0 {
			timer := time.NewTimer(d) // the kill point is the experiment, not a wait
			<-timer.C
		}
		w.kill()
		<-answer

		pos = w.pos(w.start())
		st, err := pos.Status(t.Context(), sid)
		require.NoError(t, err)
		outcome := "never journaled"
		if st.Status.ErrorCondition != nexo.NotFound {
			rep := w.settledStatus(pos, sid)
			require.Equal(t, nexo.Failure, rep.Status.Result, "kill %s after the request: %s", d, world.Describe(rep))
			outcome = string(rep.Status.ErrorCondition) + ": " + rep.Status.AdditionalResponse
		}
		t.Logf("kill %s after the request: %s", d, outcome)
	}
	w.waitFor(15*time.Second, "every transaction cancelled at PPaaS", func() bool {
		txs, _ := w.sim.Transactions()
		for _, tx := range txs {
			if tx.Status != ppaas.Cancelled {
				return false
			}
		}
		return true
	})
	txs, charges := w.sim.Transactions()
	for _, tx := range txs {
		_, err := w.sim.Act(tx.TransactionID, "pay")
		require.Error(t, err, "the consumer can no longer pay %s", tx.TransactionID)
	}
	require.Zero(t, charges[w.serial])
	t.Logf("%d transactions reached PPaaS, all cancelled", len(txs))
}

// kill -9 while the consumer looks at the QR, and PPaaS unreachable when the
// agent restarts; the consumer pays meanwhile. Recovery cannot ask PPaaS, so
// it tells the POS the payment was interrupted and queues a reversal; once
// PPaaS is back the reversal finds the payment approved and refunds it, and
// TransactionStatus says so.
func TestCrashThenPPaaSDownConsumerPaysLateIsRefunded(t *testing.T) {
	w := newCrashWorld(t)
	pos := w.pos(w.start())
	answer := sendAsync(pos, pos.PaymentRequest("LATE1", 3100, "EUR", "KB"))
	s := w.awaitQR()
	w.kill()
	<-answer

	w.sim.AddFault(sim.Fault{Path: "/qrcode-payment/", Reset: true})
	pos = w.pos(w.start())
	rep := w.settledStatus(pos, "LATE1")
	require.Equal(t, nexo.Cancel, rep.Status.ErrorCondition, world.Describe(rep))
	require.Contains(t, rep.Status.AdditionalResponse, "interrupted by an agent restart")
	_, err := w.sim.Act(s.TransactionID, "pay")
	require.NoError(t, err, "PPaaS never heard of the crash: the consumer can still pay")

	// The reversal fails and backs off (15 s and more by default); PPaaS comes
	// back, and with it the MQTT session, which wakes the forwarder at once.
	w.waitFor(15*time.Second, "reversal attempted and failed", func() bool {
		return strings.Contains(w.proc.logs.String(), `"msg":"delivery failed; will retry"`)
	})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodDelete, w.sim.ControlURL()+"/control/faults", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	back := time.Now()
	require.NoError(t, w.sim.KickDevice(w.serial))
	w.waitFor(10*time.Second, "refunded at PPaaS", func() bool { return w.simTx(s.TransactionID).Status == ppaas.Refunded })
	t.Logf("refunded %s after PPaaS came back", time.Since(back).Round(time.Millisecond))
	tx := w.simTx(s.TransactionID)
	require.Equal(t, tx.PaymentAmount.Amount, tx.RefundedAmount, "refunded in full")
	require.Equal(t, 1, tx.Charges)
	w.waitFor(10*time.Second, "TransactionStatus reports the refund", func() bool {
		return strings.Contains(w.settledStatus(pos, "LATE1").Status.AdditionalResponse, "refunded at PPaaS")
	})
	require.Equal(t, nexo.Failure, w.settledStatus(pos, "LATE1").Status.Result)
}

// watchAgent starts cmd (an agent logging JSON on stderr), keeps its logs,
// reports its POS URL once it logs "termagent ready", and reaps it; the
// test's cleanup kills it and fails on a data race it reported.
func watchAgent(t testing.TB, cmd *exec.Cmd) *agentProc {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &agentProc{cmd: cmd, ready: make(chan string, 1), logs: &syncbuf.Buffer{}, exited: make(chan struct{})}
	go func() {
		// Reads the agent's JSON logs until the process is gone, then reaps it.
		defer close(p.exited)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			_, _ = p.logs.Write([]byte(sc.Text() + "\n"))
			var rec struct {
				Msg string `json:"msg"`
				POS string `json:"pos"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "termagent ready" {
				select {
				case p.ready <- rec.POS:
				default:
				}
			}
		}
		p.err = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if strings.Contains(p.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("data race in the agent process:\n%s", p.logs)
		}
	})
	return p
}
