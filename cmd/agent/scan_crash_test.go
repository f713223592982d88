package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

// startScanAgent runs the failpoint agent armed with fp ("": none) on data,
// with the merchantscan brands and its admin listener (the terminal's scanner
// posts there), and returns its POS client and admin URL.
func (w *crashWorld) startScanAgent(bin, fp, data string) (*world.POS, string) {
	w.t.Helper()
	cmd := exec.Command(bin, w.agentArgs("-data-dir", data, "-admin-listen", "127.0.0.1:0",
		"-apm-brands", "KB=KB:consumerscan,"+world.ScanBrands)...)
	cmd.Env = append(os.Environ(), "TERMAGENT_FAILPOINT="+fp)
	w.proc = watchAgent(w.t, cmd)
	var url string
	select {
	case url = <-w.proc.ready:
	case <-w.proc.exited:
		w.t.Fatalf("agent exited before ready: %v\n%s", w.proc.err, w.proc.logs)
	case <-time.After(20 * time.Second):
		w.t.Fatalf("agent not ready in 20 s:\n%s", w.proc.logs)
	}
	var admin string
	for line := range strings.Lines(w.proc.logs.String()) {
		var rec struct{ Msg, Admin string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "admin listening" {
			admin = rec.Admin
		}
	}
	require.NotEmpty(w.t, admin, "admin address not logged:\n%s", w.proc.logs)
	return w.pos(url), admin
}

// scanThenDie starts a merchantscan payment with the failpoint agent armed
// with fp, posts the customer's code as the terminal's scanner does, and
// waits until the agent killed itself at fp. It returns the agent's logs.
func (w *crashWorld) scanThenDie(bin, fp, data, sid, code string) string {
	w.t.Helper()
	pos, admin := w.startScanAgent(bin, fp, data)
	answer := sendAsync(pos, pos.PaymentRequest(sid, 2000, "EUR", "KBSCAN"))
	w.waitFor(15*time.Second, "the terminal asks for the customer's code", func() bool {
		s, ok := w.sim.Terminals().Current(w.serial)
		return ok && s.State == "awaiting_scan"
	})
	body, err := json.Marshal(map[string]string{"code": code})
	require.NoError(w.t, err)
	// The agent may die before it answers the scanner: its answer is not the test.
	if resp, err := http.Post(admin+"/scan", "application/json", bytes.NewReader(body)); err == nil {
		resp.Body.Close()
	}
	select {
	case <-w.proc.exited:
	case <-time.After(15 * time.Second):
		w.t.Fatalf("the agent did not die at %s:\n%s", fp, w.proc.logs)
	}
	require.Contains(w.t, w.proc.logs.String(), `"failpoint":"`+fp+`"`)
	require.Error(w.t, (<-answer).err, "the POS lost its connection with the agent")
	return w.proc.logs.String()
}

// kill -9 in a merchantscan payment whose code came from the terminal's
// scanner (POST /scan), once after PPaaS created it but before the agent
// journaled the answer (qr.created), once right before the create was sent
// (qr.create.before). The simulated KB wallet's code charges the consumer as
// soon as a create reaches PPaaS, so recovery never sends the create again:
// it looks the payment up in the device's transaction listing by its
// clientTransactionId, and TransactionStatus tells the truth:
//   - qr.created: Success with the amount; one transaction, one create call,
//     one charge. The POS's Reversal then refunds it.
//   - qr.create.before: nothing at PPaaS, nothing charged; the payment stays
//     InProgress while the create's window is open (a create sent just
//     before the kill could still appear in the listing).
//
// Nothing goes to dead letters, and the code never appears in the agent's
// logs. The code is journaled before the create is sent (the journal holds
// what was charged).
func TestCrashAfterTerminalScanTellsTheTruth(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("failpoints kill the process with SIGKILL (unix)")
	}
	bin := failpointAgent(t)

	t.Run("qr.created", func(t *testing.T) {
		w := newCrashWorld(t)
		const code = "281666027690188713769014"
		data := filepath.Join(w.dir, "scan-created")
		before := w.scanThenDie(bin, "qr.created", data, "SCANKILL1", code)
		txs := w.allTx()
		require.Len(t, txs, 1, "PPaaS created the payment before the kill")
		ctid := txs[0].ClientTransactionID
		tx := w.simTx(ctid)
		require.Equal(t, ppaas.Approved, tx.Status, "the wallet code charged the consumer")

		pos, _ := w.startScanAgent(bin, "", data)
		rep := w.settledStatus(pos, "SCANKILL1")
		require.Equal(t, nexo.Success, rep.Status.Result, "the consumer was charged: TransactionStatus must say so\n%s\n%s", world.Describe(rep), w.proc.logs)
		require.Equal(t, ctid, rep.Payment.POITransactionID.ID)
		require.Equal(t, nexo.Amount{Minor: 2000, Currency: "EUR"}, rep.Payment.Result.AuthorizedAmount)
		tx = w.simTx(ctid)
		require.Equal(t, ppaas.Approved, tx.Status)
		require.Equal(t, 1, tx.Charges, "charged once")
		require.Equal(t, 1, tx.CreateCalls, "recovery found the payment in the listing: the create was not sent again")

		rev, err := pos.Reverse(t.Context(), ctid, "MerchantCancel")
		require.NoError(t, err)
		require.Equal(t, nexo.Success, rev.Status.Result, "%s\n%s", world.Describe(rev), w.proc.logs)
		tx = w.simTx(ctid)
		require.Equal(t, ppaas.Refunded, tx.Status)
		require.Equal(t, int64(2000), tx.RefundedAmount)
		require.Equal(t, 1, tx.Charges)
		require.NotContains(t, w.proc.logs.String(), "dead letters")
		w.noCodeIn(code, before, w.proc.logs.String())
	})

	t.Run("qr.create.before", func(t *testing.T) {
		w := newCrashWorld(t)
		const code = "281666027690188713769015"
		data := filepath.Join(w.dir, "scan-before")
		before := w.scanThenDie(bin, "qr.create.before", data, "SCANKILL2", code)
		require.Empty(t, w.allTx(), "nothing reached PPaaS before the kill")

		pos, _ := w.startScanAgent(bin, "", data)
		w.waitFor(20*time.Second, "recovery to look for the payment (or to create it)", func() bool {
			return len(w.allTx()) > 0 || strings.Contains(w.proc.logs.String(), "merchantscan payment not located at PPaaS yet")
		})
		require.Empty(t, w.allTx(), "recovery sent the create: the consumer's code would be charged")
		st, err := pos.Status(t.Context(), "SCANKILL2")
		require.NoError(t, err)
		require.Equal(t, nexo.InProgress, st.Status.ErrorCondition, "no definitive answer while the create's window is open: %s", world.Describe(st))
		require.NotContains(t, w.proc.logs.String(), "dead letters")
		w.noCodeIn(code, before, w.proc.logs.String())
	})
}

func (w *crashWorld) allTx() []sim.SimTransaction {
	txs, _ := w.sim.Transactions()
	return txs
}

// noCodeIn fails if the consumer's code reached any of the agent's logs.
func (w *crashWorld) noCodeIn(code string, logs ...string) {
	w.t.Helper()
	for i, l := range logs {
		require.NotContains(w.t, l, code, "the consumer's code reached the logs of the agent's run %d", i+1)
	}
}
