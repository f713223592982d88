package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/syncbuf"
	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim/world"
)

// waitFor polls out until re matches, and returns the submatches.
func waitFor(t *testing.T, out *syncbuf.Buffer, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	require.Eventually(t, func() bool { m = rx.FindStringSubmatch(out.String()); return m != nil }, 15*time.Second, 10*time.Millisecond, "waiting for %q in:\n%s", re, out)
	return m
}

// posWorld starts a world with a manual consumer and returns the flags that
// point sim pos and sim consumer at it.
func posWorld(t *testing.T) (*world.World, []string, []string) {
	w, _ := worldrig.Start(t, nil)
	posFlags := []string{"-url", w.Agent.NexoURL(), "-ca", w.Config.CA, "-control", w.PPaaS.ControlURL(), "-poiid", w.Agent.POIID()}
	return w, posFlags, []string{"-control", w.PPaaS.ControlURL()}
}

// cmdResult is a command started in the background.
type cmdResult struct {
	out, errb syncbuf.Buffer
	done      chan error
}

func start(ctx context.Context, args ...string) *cmdResult {
	c := &cmdResult{done: make(chan error, 1)}
	go func() { c.done <- run(ctx, args, &c.out, &c.errb) }()
	return c
}

func (c *cmdResult) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-c.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("command did not return; output:\n%s\n%s", c.out.String(), c.errb.String())
		return nil
	}
}

func runOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), args, &out, &errb)
	return out.String() + errb.String(), err
}

var hintRx = `POI transaction:\s+(\S+).*\n\s+PPaaS transaction: (qr-\S+)\n.*virtual terminal (http://\S+)\n.*consumer -control \S+ pay (\S+)`

func TestPOSPayPrintsIDsAndTheConsumerPays(t *testing.T) {
	w, posFlags, ctl := posWorld(t)

	// Flags after the sub-command and its arguments.
	pay := start(t.Context(), append([]string{"pos", "pay", "12.50", "EUR"}, append(posFlags, "-brand", "KB")...)...)
	m := waitFor(t, &pay.out, hintRx)
	poiID, ppaasID, page, hinted := m[1], m[2], m[3], m[4]
	require.Equal(t, poiID, hinted, "the printed consumer command names the POI transaction")
	require.Equal(t, w.PPaaS.TerminalURL(w.Agent.Serial()), page)
	require.Contains(t, pay.out.String(), "sent as POS1/")
	txs, _ := w.PPaaS.Transactions()
	require.Len(t, txs, 1)
	require.Equal(t, ppaasID, txs[0].TransactionID)
	require.Equal(t, poiID, txs[0].ClientTransactionID)

	// The consumer pays by the POI id the user was shown.
	out, err := runOut(t, append([]string{"consumer", "pay", poiID}, ctl...)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "is now approved")
	require.NoError(t, pay.wait(t), pay.out.String())
	require.Contains(t, pay.out.String(), "Payment Response: Success")
	require.Contains(t, pay.out.String(), "POI transaction: "+poiID)
	require.Contains(t, pay.out.String(), "to refund it: sim pos refund "+poiID)

	// Paying it again is refused with the simulator's reason.
	_, err = runOut(t, append([]string{"consumer", "pay", ppaasID}, ctl...)...)
	require.ErrorContains(t, err, "sim consumer: pay "+ppaasID)

	// Without an id: the payment waiting on the terminal; by PPaaS id works too.
	pay = start(t.Context(), append([]string{"pos", "pay", "5", "EUR"}, posFlags...)...)
	m = waitFor(t, &pay.out, hintRx)
	out, err = runOut(t, append([]string{"consumer", "decline"}, ctl...)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "PPaaS transaction "+m[2])
	require.Error(t, pay.wait(t))
	require.Contains(t, pay.out.String(), "Payment Response: Failure")

	out, err = runOut(t, append([]string{"consumer", "pay"}, ctl...)...)
	require.ErrorContains(t, err, "no payment is waiting for the consumer", out)
	_, err = runOut(t, append([]string{"consumer", "pay", "nope"}, ctl...)...)
	require.ErrorContains(t, err, `no transaction "nope"`)

	// The refund the README shows, by the POI id.
	out, err = runOut(t, append([]string{"pos", "refund", poiID}, posFlags...)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "Reversal Response: Success")
}

func TestPOSPayCtrlCAbortsItsPayment(t *testing.T) {
	w, posFlags, _ := posWorld(t)
	ctx, interrupt := context.WithCancel(t.Context())
	pay := start(ctx, append([]string{"pos", "pay", "7", "EUR"}, posFlags...)...)
	m := waitFor(t, &pay.out, hintRx)
	sid := waitFor(t, &pay.out, `sent as POS1/(\w+)`)[1]
	interrupt() // Ctrl-C
	err := pay.wait(t)
	require.Error(t, err)
	out := pay.out.String()
	require.Contains(t, out, "Ctrl-C: aborting POS1/"+sid)
	require.Contains(t, out, "Payment Response: Failure (Aborted)", "the answer to the aborted payment is awaited and shown")

	// Nothing is left open: the POI is free and the PPaaS transaction cancelled.
	status, err := runOut(t, append([]string{"pos", "status", "POS1/" + sid}, posFlags...)...)
	require.NoError(t, err, status)
	require.Contains(t, status, "Aborted")
	txs, _ := w.PPaaS.Transactions()
	require.Equal(t, m[2], txs[0].TransactionID)
	require.Equal(t, ppaas.Cancelled, txs[0].Status)
}

func TestPOSAbortTakesWhatBusyPrints(t *testing.T) {
	_, posFlags, _ := posWorld(t)
	first := start(t.Context(), append([]string{"pos", "pay", "3", "EUR"}, posFlags...)...)
	waitFor(t, &first.out, hintRx)

	out, err := runOut(t, append([]string{"pos", "pay", "4", "EUR", "-control", ""}, posFlags[:len(posFlags)-2]...)...)
	require.Error(t, err)
	ref := regexp.MustCompile(`transaction (\S+/\S+) in progress`).FindStringSubmatch(out)
	require.NotNil(t, ref, out)
	require.Contains(t, out, "to abort it: sim pos abort "+ref[1])

	out, err = runOut(t, append([]string{"pos", "abort", ref[1]}, posFlags...)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "Abort sent for "+ref[1])
	require.Contains(t, out, "Payment Response: Failure (Aborted)")
	require.Error(t, first.wait(t))
	require.Contains(t, first.out.String(), "Failure (Aborted)")

	out, err = runOut(t, append([]string{"pos", "abort", "POS1/NOSUCHID"}, posFlags...)...)
	require.Error(t, err)
	require.Contains(t, out, "NotFound")
}

func TestPOSSaysWhichSchemeTheServerSpeaks(t *testing.T) {
	w, posFlags, _ := posWorld(t)
	plain := "http" + strings.TrimPrefix(w.Agent.NexoURL(), "https")
	_, err := runOut(t, append(append([]string{"pos", "diagnosis"}, posFlags...), "-url", plain)...)
	require.ErrorContains(t, err, "this server speaks HTTPS: use -url "+w.Agent.NexoURL())

	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err = runOut(t, append(append([]string{"pos", "diagnosis"}, posFlags...), "-url", "https"+strings.TrimPrefix(srv.URL, "http")+"/nexo")...)
	require.ErrorContains(t, err, "this server speaks plain HTTP, not HTTPS")

	_, err = runOut(t, "pos", "-ca", filepath.Join(t.TempDir(), "none.pem"), "diagnosis")
	require.ErrorContains(t, err, "sim up writes it in .sim/certs")
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		json bool
		b    string
	}{
		{[]string{"status", "-json"}, []string{"status"}, true, "KB"},
		{[]string{"pay", "5", "EUR", "-brand", "PENNYMATIC"}, []string{"pay", "5", "EUR"}, false, "PENNYMATIC"},
		{[]string{"-brand=X", "pay", "-json", "5", "EUR"}, []string{"pay", "5", "EUR"}, true, "X"},
		{[]string{"pay", "--", "-5", "EUR"}, []string{"pay", "-5", "EUR"}, false, "KB"},
		{nil, nil, false, "KB"},
	}
	for _, tc := range tests {
		fs := newTestFlags()
		j := fs.Bool("json", false, "")
		b := fs.String("brand", "KB", "")
		pos, err := parseInterspersed(fs, tc.args)
		require.NoError(t, err)
		require.Equal(t, tc.pos, pos, "%v", tc.args)
		require.Equal(t, tc.json, *j)
		require.Equal(t, tc.b, *b)
	}
}

func TestErrorsNameTheCommandOnce(t *testing.T) {
	for _, args := range [][]string{{"pos", "pay", "1e3", "EUR"}, {"pos", "frobnicate"}, {"consumer", "pay", "-control", "http://127.0.0.1:1"}, {"certs", "extra"}} {
		_, err := runOut(t, args...)
		require.Error(t, err)
		msg := err.Error()
		require.True(t, strings.HasPrefix(msg, "sim "+args[0]+": "), msg)
		require.Len(t, regexp.MustCompile(`sim \w+: `).FindAllString(msg, -1), 1, "one prefix: %s", msg)
	}
}

func TestServeMQTTFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	ctx, cancel := context.WithCancel(t.Context())
	c := start(ctx, "serve", "-certs", t.TempDir(), "-addr", "127.0.0.1:0", "-control", "127.0.0.1:0", "-mqtt", addr, "-log-level", "error")
	waitFor(t, &c.out, `MQTT broker:\s+ssl://`+regexp.QuoteMeta(addr))
	cancel()
	require.NoError(t, c.wait(t))
}

func TestUpLogsOneLinePerPaymentStep(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	up := start(ctx, "up", "-dir", dir, "-addr", "127.0.0.1:0", "-control", "127.0.0.1:0", "-mqtt", "127.0.0.1:0", "-nexo", "127.0.0.1:0", "-log-level", "info")
	defer func() { cancel(); require.NoError(t, up.wait(t)) }()
	m := waitFor(t, &up.out, `Try, from another shell: \S+ pos pay 12.50 EUR (.*)\n`)
	pay := start(t.Context(), append([]string{"pos", "pay", "12.50", "EUR"}, strings.Fields(m[1])...)...)
	h := waitFor(t, &pay.out, hintRx)
	ctl := waitFor(t, &up.out, `control API:\s+(http://\S+)/control`)[1]
	// The consumer pays once the terminal shows the QR.
	waitFor(t, &up.errb, `msg=display.*state=awaiting_consumer.*poi_transaction=`+h[1]+` ppaas_transaction=`+h[2])
	out, err := runOut(t, "consumer", "pay", "-control", ctl)
	require.NoError(t, err, out)
	require.NoError(t, pay.wait(t), pay.out.String())

	for _, step := range []string{
		`msg="nexo transaction started".*category=Payment`,
		`msg="consumer acted".*action=pay`,
		`msg=display.*state=approved`,
		`msg="nexo transaction finished".*result=Success`,
	} {
		waitFor(t, &up.errb, step)
	}
	logs := up.errb.String()
	for _, line := range strings.Split(logs, "\n") {
		require.LessOrEqual(t, strings.Count(line, "component="), 1, line)
	}
	require.Contains(t, logs, "component=agent/nexo")
}

func newTestFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// A payment whose answer the POS does not get in time (its -timeout shorter
// than the payment) is not reported as failed: sim pos asks TransactionStatus,
// as a POS must with a lost answer, and says the outcome is not final yet;
// once the consumer pays, status gives the Success.
func TestPOSPayAsksTransactionStatusWhenItsAnswerIsLost(t *testing.T) {
	_, posFlags, ctl := posWorld(t)
	pay := start(t.Context(), append([]string{"pos", "pay", "3", "EUR", "-timeout", "1500ms"}, posFlags...)...)
	sid := waitFor(t, &pay.out, `sent as POS1/(\w+)`)[1]
	err := pay.wait(t)
	require.Error(t, err)
	require.Contains(t, pay.out.String(), "asking TransactionStatus for POS1/"+sid)
	require.ErrorContains(t, err, "not final yet: ask again with `sim pos status POS1/"+sid+"`, never pay it again")

	out, err := runOut(t, append([]string{"consumer", "pay"}, ctl...)...)
	require.NoError(t, err, out)
	require.Eventually(t, func() bool {
		status, err := runOut(t, append([]string{"pos", "status", "POS1/" + sid}, posFlags...)...)
		return err == nil && strings.Contains(status, "Payment Response: Success")
	}, 10*time.Second, 50*time.Millisecond)
}
