package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUpSaysItContinuesAPreviousRun: a second sim up on the same directory
// reopens the agent's journal against a simulated PPaaS that starts empty, and
// says so with the way out; -fresh starts afresh and says nothing.
func TestUpSaysItContinuesAPreviousRun(t *testing.T) {
	dir := t.TempDir()
	up := func(extra ...string) (stdout string, pos []string, stop func()) {
		ctx, cancel := context.WithCancel(t.Context())
		c := start(ctx, append([]string{"up", "-dir", dir, "-addr", "127.0.0.1:0", "-control", "127.0.0.1:0", "-mqtt", "127.0.0.1:0", "-nexo", "127.0.0.1:0", "-provider", "approve"}, extra...)...)
		m := waitFor(t, &c.out, `Try, from another shell: \S+ pos pay 12.50 EUR (.*)\n(?s:.*)\(sim up -log-level info`)
		return c.out.String(), strings.Fields(m[1]), func() { cancel(); require.NoError(t, c.wait(t)) }
	}
	const note = "the agent's journal from a previous run is in "

	out, pos, stop := up()
	require.NotContains(t, out, note)
	paid, err := runOut(t, append([]string{"pos", "pay", "3", "EUR"}, pos...)...)
	require.NoError(t, err, paid)
	stop()

	// The restart: the agent still has the payment, the platform does not.
	out, pos, stop = up()
	require.Contains(t, out, note)
	require.Contains(t, out, note+filepath.Join(dir, "data")+"\n")
	require.Contains(t, out, "up command with -fresh")
	status, err := runOut(t, append([]string{"pos", "status"}, pos...)...)
	require.NoError(t, err, status)
	require.Contains(t, status, "Payment Response: Success")
	ctl := pos[indexOf(pos, "-control")+1]
	txs := httpBody(t, ctl+"/control/transactions")
	require.Contains(t, txs, `"transactions":[]`)
	stop()

	out, pos, stop = up("-fresh")
	require.NotContains(t, out, note)
	status, err = runOut(t, append([]string{"pos", "status"}, pos...)...)
	require.Error(t, err, "the journal is gone")
	require.Contains(t, status, "NotFound")
	stop()
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b strings.Builder
	_, err = io.Copy(&b, resp.Body)
	require.NoError(t, err)
	return b.String()
}
