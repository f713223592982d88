package main

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim/world"
)

// TestCrashMerchantScanRecoveryChargesNothing kills the agent binary (kill -9
// at a failpoint) during a consumer-presented (merchantscan) payment, whose
// create the simulated KB wallet charges at once: once after the payment is
// journaled and before its create is sent, once after PPaaS charged it and
// before the agent recorded the answer. Recovery never sends the create
// again: in the first case nothing exists at PPaaS and the payment stays in
// progress while the create's window is open (before: recovery created it,
// the wallet was charged and the POS's payment journaled Success); in the
// second it finds the charge its own create made in the device's listing and
// reports it, with one create call at PPaaS (before: two).
func TestCrashMerchantScanRecoveryChargesNothing(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("failpoints kill the process with SIGKILL (unix)")
	}
	bin := failpointAgent(t)
	w := newCrashWorld(t)
	for i, fp := range []string{"journal.begin.after", "qr.created"} {
		t.Run(fp, func(t *testing.T) {
			m := &matrixRun{t: t, w: w, bin: bin, data: filepath.Join(w.dir, fmt.Sprintf("mscan-%d", i)), timeout: "30s",
				sid: fmt.Sprintf("MS%d", i), known: map[string]bool{}, extra: []string{"-apm-brands", "KB=KB:consumerscan,KBSCAN=KB:merchantscan"}}
			require.True(t, m.start(fp), "agent start:\n%s", m.proc.logs)
			defer m.stop()
			code := fmt.Sprintf("28166602769018871376901%d", i)
			ans := sendAsync(m.pos, m.pos.ScannedPaymentRequest(m.sid, 4200, "EUR", "KBSCAN", code))
			require.Nil(t, m.answerOrDeath(ans, 15*time.Second), "the agent answered instead of dying at %s", fp)
			m.stop()
			require.True(t, m.hit, "failpoint %s not hit:\n%s", fp, m.proc.logs)

			require.True(t, m.start(""), "restart:\n%s", m.proc.logs)
			if fp == "journal.begin.after" {
				w.waitFor(20*time.Second, "recovery to look for the payment (or to create it)", func() bool {
					txs, _ := w.sim.Transactions()
					return len(txs) > 0 || strings.Contains(m.proc.logs.String(), "merchantscan payment not located at PPaaS yet")
				})
				txs, charges := w.sim.Transactions()
				require.Empty(t, txs, "recovery created the merchantscan transaction")
				require.Zero(t, charges[w.serial], "the consumer's code was charged by recovery")
				st, err := m.pos.Status(t.Context(), m.sid)
				require.NoError(t, err)
				require.Equal(t, nexo.InProgress, st.Status.ErrorCondition, world.Describe(st))
				return
			}
			rep := w.settledStatus(m.pos, m.sid)
			require.Equal(t, nexo.Success, rep.Status.Result, world.Describe(rep))
			txs, charges := w.sim.Transactions()
			require.Len(t, txs, 1)
			require.Equal(t, 1, txs[0].CreateCalls, "recovery replayed the merchantscan create")
			require.Equal(t, 1, txs[0].Charges)
			require.Equal(t, 1, charges[w.serial])
		})
	}
}
