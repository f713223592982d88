package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

// crashFullEnv runs the whole crash matrix (make crash); without it the test
// runs a subset that keeps CI short.
const crashFullEnv = "TERMAGENT_CRASH_FULL"

// matrixFailpoints are the durable-write boundaries the agent is killed at
// (package failpoint; compiled in only with -tags failpoints).
var matrixFailpoints = []string{
	"journal.begin.after",          // the payment's start is durable; nothing reached PPaaS
	"qr.created",                   // PPaaS created it; the agent has not recorded the answer
	"qr.cancel.before",             // an abort or the timeout is about to cancel at PPaaS
	"journal.finish.before",        // the outcome is known; the final response not yet durable
	"journal.finish.advice.before", // an unknown outcome: advice and Failure about to commit
	"journal.finish.after",         // the final response is durable; the POS not yet answered
	"advice.resolved",              // a reversal settled at PPaaS; the journal not yet told
	"journal.settle.after",         // the settlement journaled; the advice not yet acked
	"outbox.delivered",             // a record delivered; its removal not yet recorded
	"recover.before",               // recovery about to settle an interrupted payment
	"recover.asked",                // recovery read PPaaS; nothing journaled yet
	"recover.journaled",            // recovery journaled its outcome (and advice)
}

// matrixScenarios are the payment flows the agent is killed in.
var matrixScenarios = []string{"approve", "decline", "abort-before-pay", "abort-after-pay", "timeout", "unknown", "reversal", "recovery", "recovery-unpaid"}

// ciCells is the subset run without crashFullEnv: the boundaries where money
// safety was broken before issue 10, and one per scenario.
var ciCells = map[[2]string]bool{
	{"unknown", "journal.finish.advice.before"}:         true,
	{"unknown", "advice.resolved"}:                      true,
	{"approve", "journal.finish.before"}:                true,
	{"approve", "qr.created"}:                           true,
	{"decline", "journal.finish.after"}:                 true,
	{"abort-before-pay", "qr.cancel.before"}:            true,
	{"abort-after-pay", "journal.finish.before"}:        true,
	{"timeout", "qr.cancel.before"}:                     true,
	{"reversal", "journal.finish.before"}:               true,
	{"recovery", "recover.asked"}:                       true,
	{"recovery", "recover.journaled"}:                   true,
	{"recovery-unpaid", "journal.finish.advice.before"}: true,
}

// failpointAgent builds the agent with -tags failpoints into the test's
// temporary directory (the go build cache makes a second build a link).
func failpointAgent(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "agent-failpoints")
	out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build -tags failpoints:\n%s", out)
	return bin
}

// A release build has no failpoint in it: not the code, not the variable name.
func TestReleaseBuildHasNoFailpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent twice")
	}
	release := filepath.Join(t.TempDir(), "agent")
	out, err := exec.Command("go", "build", "-o", release, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	b, err := os.ReadFile(release)
	require.NoError(t, err)
	require.False(t, bytes.Contains(b, []byte("TERMAGENT_FAILPOINT")), "release build carries the failpoint switch")
	fp, err := os.ReadFile(failpointAgent(t))
	require.NoError(t, err)
	require.True(t, bytes.Contains(fp, []byte("TERMAGENT_FAILPOINT")), "the test build has it (the check above can fail)")
}

// matrixRun is one cell: an agent killed at a failpoint in a scenario.
type matrixRun struct {
	t        testing.TB
	w        *crashWorld
	bin      string
	data     string
	timeout  string
	proc     *agentProc
	pos      *world.POS
	sid, rev string
	ctid     string // the payment's POI transaction id = clientTransactionId
	known    map[string]bool
	amount   int64
	hit      bool
	extra    []string // more agent flags (they override the defaults)
}

// start runs the failpoint agent on the cell's data dir, armed with fp ("":
// none), and returns false if it died before it was ready.
func (m *matrixRun) start(fp string) bool {
	m.t.Helper()
	d := m.w.dir
	args := []string{
		"-auth-url", m.w.sim.URL(), "-api-url", m.w.sim.URL(), "-mqtt-url", m.w.sim.MQTTURL(),
		"-cert", filepath.Join(d, certs.ClientCertFile), "-key", filepath.Join(d, certs.ClientKeyFile), "-ca", filepath.Join(d, certs.BundleFile),
		"-nexo-cert", filepath.Join(d, certs.AgentCertFile), "-nexo-key", filepath.Join(d, certs.AgentKeyFile),
		"-nexo-listen", "127.0.0.1:0", "-admin-listen", "", "-data-dir", m.data,
		"-display-url", m.w.sim.TerminalURL(m.w.serial) + "/display",
		"-payment-timeout", m.timeout, "-event-wait", "300ms", "-log-format", "json",
	}
	args = append(args, m.extra...)
	cmd := exec.Command(m.bin, args...)
	cmd.Env = append(os.Environ(), "TERMAGENT_FAILPOINT="+fp)
	p := watchAgent(m.t, cmd)
	m.proc = p
	select {
	case url := <-p.ready:
		m.pos = m.w.pos(url)
		return true
	case <-p.exited:
		return false
	case <-time.After(20 * time.Second):
		m.t.Fatalf("agent not ready in 20 s:\n%s", p.logs)
	}
	return false
}

func (m *matrixRun) dead() bool {
	select {
	case <-m.proc.exited:
		return true
	default:
		return false
	}
}

// stop kills the agent (kill -9) if it is still running.
func (m *matrixRun) stop() {
	if !m.dead() {
		_ = m.proc.cmd.Process.Kill()
	}
	<-m.proc.exited
	if strings.Contains(m.proc.logs.String(), `"msg":"failpoint hit"`) {
		m.hit = true
	}
}

// newTx waits for a PPaaS transaction not seen before (the payment's) until
// the agent dies or within passes.
func (m *matrixRun) newTx(within time.Duration) (sim.SimTransaction, bool) {
	deadline := time.Now().Add(within)
	for !m.dead() && time.Now().Before(deadline) {
		txs, _ := m.w.sim.Transactions()
		for _, tx := range txs {
			if !m.known[tx.TransactionID] && tx.Status == ppaas.AwaitingConsumer {
				m.known[tx.TransactionID] = true
				m.ctid = tx.ClientTransactionID
				return tx, true
			}
		}
		m.pause()
	}
	return sim.SimTransaction{}, false
}

// pause is the polling interval of the matrix's waits.
func (m *matrixRun) pause() {
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-m.proc.exited:
	}
}

// answerOrDeath waits for the POS's answer or the agent's death.
func (m *matrixRun) answerOrDeath(ch <-chan posResult, within time.Duration) *nexo.Response {
	select {
	case r := <-ch:
		if r.err != nil {
			return nil
		}
		return r.resp
	case <-m.proc.exited:
		return nil
	case <-time.After(within):
		return nil
	}
}

// drive runs the scenario until it is done or the agent died at the failpoint.
func (m *matrixRun) drive(scenario, fp string) {
	pay := func() <-chan posResult {
		return sendAsync(m.pos, m.pos.PaymentRequest(m.sid, m.amount, "EUR", "KB"))
	}
	act := func(id, action string) { _, _ = m.w.sim.Act(id, action) }
	switch scenario {
	case "approve", "decline", "reversal":
		ans := pay()
		tx, ok := m.newTx(10 * time.Second)
		if !ok {
			return
		}
		if scenario == "decline" {
			act(tx.TransactionID, "decline")
		} else {
			act(tx.TransactionID, "pay")
		}
		r := m.answerOrDeath(ans, 15*time.Second)
		if scenario != "reversal" || r == nil || r.Status.Result != nexo.Success {
			return
		}
		m.rev = "R" + m.sid
		h := nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryReversal, Type: nexo.TypeRequest,
			ServiceID: m.rev, SaleID: "POS1", POIID: m.pos.POIID}
		m.answerOrDeath(sendAsync(m.pos, &nexo.Request{Header: h, Reversal: &nexo.ReversalRequest{
			OriginalPOITransactionID: r.Payment.POITransactionID, Reason: "MerchantCancel"}}), 15*time.Second)
	case "abort-before-pay", "abort-after-pay":
		ans := pay()
		tx, ok := m.newTx(10 * time.Second)
		if !ok {
			return
		}
		if scenario == "abort-after-pay" {
			act(tx.TransactionID, "pay")
		}
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.pos.Abort(actx, m.sid)
		cancel()
		m.answerOrDeath(ans, 15*time.Second)
	case "timeout":
		ans := pay()
		if _, ok := m.newTx(10 * time.Second); !ok {
			return
		}
		m.answerOrDeath(ans, 15*time.Second)
	case "unknown":
		// Every create answer lost: the outcome is unknown, a reversal is
		// queued; the consumer pays anyway, the reversal refunds it.
		m.w.sim.SetPaymentFaults(sim.PaymentFaults{CreateErrors: 4})
		ans := pay()
		m.answerOrDeath(ans, 15*time.Second)
		m.w.sim.SetPaymentFaults(sim.PaymentFaults{})
		// Whatever the agent answered (or not, killed), the consumer pays.
		txs, _ := m.w.sim.Transactions()
		for _, tx := range txs {
			if !m.known[tx.TransactionID] {
				m.known[tx.TransactionID] = true
				m.ctid = tx.ClientTransactionID
				act(tx.TransactionID, "pay")
			}
		}
		// Give the reversal its chance to run into the failpoint.
		deadline := time.Now().Add(10 * time.Second)
		for !m.dead() && time.Now().Before(deadline) && m.status() != ppaas.Refunded {
			m.pause()
		}
	case "recovery", "recovery-unpaid":
		// Killed (plain kill -9) while the consumer looks at the QR; the
		// consumer pays while the agent is down (or not: recovery then
		// cancels through an advice); the failpoint is armed in the
		// restarted agent, whose recovery runs into it.
		ans := pay()
		tx, ok := m.newTx(10 * time.Second)
		if !ok {
			return
		}
		m.stop()
		<-ans
		if scenario == "recovery" {
			act(tx.TransactionID, "pay")
		}
		if !m.start(fp) {
			return
		}
		deadline := time.Now().Add(5 * time.Second)
		for !m.dead() && time.Now().Before(deadline) {
			st, err := m.pos.Status(context.Background(), m.sid)
			if err == nil && st.Status.ErrorCondition != nexo.InProgress {
				break
			}
			m.pause()
		}
	}
}

// status is PPaaS's status of the payment ("" if unknown).
func (m *matrixRun) status() ppaas.State {
	txs, _ := m.w.sim.Transactions()
	for _, tx := range txs {
		if m.ctid != "" && tx.ClientTransactionID == m.ctid {
			return tx.Status
		}
	}
	return ""
}

// verdict checks the money invariant once the agent settled: every consumer
// charge is either refunded or reported Success to the POS through
// TransactionStatus; no charge is both; at most one charge and one refund
// per payment. It returns "" when it holds, and whether the state is final.
func (m *matrixRun) verdict() (problem string, settled bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := m.pos.Status(ctx, m.sid)
	if err != nil {
		return "TransactionStatus: " + err.Error(), false
	}
	if st.Status.ErrorCondition == nexo.InProgress {
		return "TransactionStatus still InProgress", false
	}
	posSuccess := st.Status.Result == nexo.Success && st.TransactionStatus != nil && st.TransactionStatus.Repeated != nil &&
		st.TransactionStatus.Repeated.Status.Result == nexo.Success
	if st.Status.Result == nexo.Success && st.TransactionStatus != nil && st.TransactionStatus.Repeated != nil {
		// The POI transaction id is the clientTransactionId at PPaaS.
		if p := st.TransactionStatus.Repeated.Payment; p != nil && p.POITransactionID.ID != "" {
			m.ctid = p.POITransactionID.ID
		}
	}
	reversed := false
	if m.rev != "" {
		if rs, err := m.pos.Status(ctx, m.rev); err == nil && rs.Status.Result == nexo.Success && rs.TransactionStatus != nil &&
			rs.TransactionStatus.Repeated != nil && rs.TransactionStatus.Repeated.Status.Result == nexo.Success {
			reversed = true
		}
	}
	var tx *sim.SimTransaction
	txs, _ := m.w.sim.Transactions()
	for i := range txs {
		if m.ctid != "" && txs[i].ClientTransactionID == m.ctid {
			tx = &txs[i]
		}
	}
	if tx == nil {
		if posSuccess {
			return "POS told Success, nothing at PPaaS", true
		}
		return "", true // nothing reached PPaaS
	}
	if tx.Charges > 1 {
		return fmt.Sprintf("%d charges", tx.Charges), true
	}
	if tx.RefundedAmount != 0 && tx.RefundedAmount != tx.PaymentAmount.Amount {
		return fmt.Sprintf("refunded %d of %d", tx.RefundedAmount, tx.PaymentAmount.Amount), true
	}
	charged := tx.Charges == 1
	refunded := tx.RefundedAmount > 0
	if !tx.Status.Final() {
		return "PPaaS transaction still " + string(tx.Status), false
	}
	switch {
	case charged && !refunded && !posSuccess:
		return "charged, not refunded, the POS told " + string(st.Status.ErrorCondition) + " " + describeRepeated(st), false
	case charged && !refunded && reversed:
		return "charged, not refunded, the reversal reported Success", false
	case refunded && posSuccess && !reversed:
		return "refunded AND reported Success", false
	case !charged && posSuccess:
		return "POS told Success for a payment never charged", true
	}
	return "", true
}

func describeRepeated(st *nexo.Response) string {
	if st.TransactionStatus != nil && st.TransactionStatus.Repeated != nil {
		r := st.TransactionStatus.Repeated.Status
		return fmt.Sprintf("(%s/%s: %s)", r.Result, r.ErrorCondition, r.AdditionalResponse)
	}
	return ""
}

// TestCrashMatrix kills the agent binary (built with -tags failpoints) at each
// named durable-write boundary in each payment scenario, restarts it, lets it
// settle and checks that money is safe. The CI runs a subset; make crash
// (TERMAGENT_CRASH_FULL=1) runs every cell.
func TestCrashMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the agent binary many times")
	}
	if runtime.GOOS != "linux" {
		t.Skip("failpoints kill the process with SIGKILL (unix)")
	}
	runCrashMatrix(t, os.Getenv(crashFullEnv) != "")
}

// BenchmarkCrashMatrix runs every cell of the matrix once (the CI subset with
// TERMAGENT_CRASH_SUBSET=1); make bench reports its size and violations in
// BENCHMARKS.md. It ignores b.N.
func BenchmarkCrashMatrix(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("failpoints kill the process with SIGKILL (unix)")
	}
	sum := runCrashMatrix(b, os.Getenv("TERMAGENT_CRASH_SUBSET") == "")
	for b.Loop() { // the matrix above is the measurement; it runs once
	}
	b.ReportMetric(float64(sum.scenarios), "scenarios")
	b.ReportMetric(float64(sum.failpoints), "failpoints")
	b.ReportMetric(float64(sum.cells), "cells")
	b.ReportMetric(float64(sum.killed), "killed")
	b.ReportMetric(float64(sum.violations), "violations")
}

// matrixSummary is what a crash-matrix run covered.
type matrixSummary struct{ scenarios, failpoints, cells, killed, violations int }

// runCrashMatrix runs the CI subset, or every cell when full.
func runCrashMatrix(t testing.TB, full bool) matrixSummary {
	bin := failpointAgent(t)
	w := newCrashWorld(t)
	type cell struct{ scenario, fp string }
	var cells []cell
	for _, s := range matrixScenarios {
		for _, fp := range matrixFailpoints {
			if full || ciCells[[2]string{s, fp}] {
				cells = append(cells, cell{s, fp})
			}
		}
	}
	results := map[[2]string]string{}
	hits, violations := 0, 0
	var mu sync.Mutex
	for i, c := range cells {
		m := &matrixRun{t: t, w: w, bin: bin, data: filepath.Join(w.dir, fmt.Sprintf("data-%d", i)), timeout: "30s",
			sid: fmt.Sprintf("M%d", i), known: map[string]bool{}, amount: int64(1000 + i)}
		if c.scenario == "timeout" {
			m.timeout = "2s"
		}
		txs, _ := w.sim.Transactions()
		for _, tx := range txs {
			m.known[tx.TransactionID] = true
		}
		fp := c.fp
		if strings.HasPrefix(c.scenario, "recovery") {
			fp = "" // armed at the restart, inside drive
		}
		if m.start(fp) {
			m.drive(c.scenario, c.fp)
			// The forwarder's failpoints come after the POS's answer: give the
			// agent a moment to reach them.
			grace := time.Now().Add(2 * time.Second)
			for !m.dead() && time.Now().Before(grace) {
				m.pause()
			}
		}
		m.stop()
		// Restart clean and let it settle.
		require.True(t, m.start(""), "restart after %s/%s:\n%s", c.scenario, c.fp, m.proc.logs)
		var problem string
		settled := false
		deadline := time.Now().Add(30 * time.Second)
		for {
			problem, settled = m.verdict()
			if (problem == "" && settled) || time.Now().After(deadline) {
				break
			}
			m.pause()
		}
		mark := "ok"
		switch {
		case problem != "":
			mark = "FAIL"
			violations++
			t.Errorf("%s × %s: %s\nagent logs:\n%s", c.scenario, c.fp, problem, m.proc.logs)
		case !m.hit:
			mark = "-" // the scenario never reached this failpoint
		default:
			hits++
		}
		mu.Lock()
		results[[2]string{c.scenario, c.fp}] = mark
		mu.Unlock()
		m.stop()
	}
	// The matrix covered.
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s", "scenario \\ failpoint")
	fps := append([]string(nil), matrixFailpoints...)
	sort.Strings(fps)
	for i := range fps {
		fmt.Fprintf(&b, " %3d", i+1)
	}
	b.WriteString("\n")
	for _, s := range matrixScenarios {
		fmt.Fprintf(&b, "%-18s", s)
		for _, fp := range fps {
			mark, ok := results[[2]string{s, fp}]
			if !ok {
				mark = "."
			}
			fmt.Fprintf(&b, " %3s", mark)
		}
		b.WriteString("\n")
	}
	for i, fp := range fps {
		fmt.Fprintf(&b, "%3d %s\n", i+1, fp)
	}
	t.Logf("crash matrix (ok: killed there and money safe; -: not reached in that scenario; .: not run):\n%s", b.String())
	t.Logf("crash matrix: %d scenarios × %d failpoints, %d cells run, %d killed at their failpoint, %d violations",
		len(matrixScenarios), len(matrixFailpoints), len(cells), hits, violations)
	return matrixSummary{len(matrixScenarios), len(matrixFailpoints), len(cells), hits, violations}
}
