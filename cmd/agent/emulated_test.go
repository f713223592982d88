//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/syncbuf"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim/world"
)

// maxArm64Size is the budget for the stripped linux/arm64 agent.
const maxArm64Size = 15 << 20

// The cross-compiled agents for the terminals' CPUs really run: each is built as
// `make cross` builds it, started under qemu user emulation against the
// simulated PPaaS on loopback, and a POS completes a QR payment through it.
func TestCrossBuiltAgentPaysUnderEmulation(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and emulates two agents (~1 min): not in -short")
	}
	for _, tc := range []struct{ goarch, qemu string }{
		{"arm64", "qemu-aarch64-static"},
		{"arm", "qemu-arm-static"},
	} {
		t.Run("linux/"+tc.goarch, func(t *testing.T) {
			qemu, err := exec.LookPath(tc.qemu)
			if err != nil {
				t.Skipf("%s not found: install Debian's qemu-user-static (.ci/run does) to run the %s agent", tc.qemu, tc.goarch)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			bin := crossBuild(ctx, t, "linux", tc.goarch)
			if tc.goarch == "arm64" {
				st, err := os.Stat(bin)
				require.NoError(t, err)
				require.LessOrEqual(t, st.Size(), int64(maxArm64Size), "stripped linux/arm64 agent: %d bytes", st.Size())
			}
			out, err := exec.CommandContext(ctx, qemu, bin, "version").CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.Contains(t, string(out), "termagent emulated-test")

			emulatedPayment(ctx, t, qemu, bin)
		})
	}
}

// The Windows build, with its service mode, compiles without CGO.
func TestWindowsServiceCrossCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles for windows/amd64: not in -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	crossBuild(ctx, t, "windows", "amd64")
}

// crossBuild builds the agent as `make cross` does and returns its path.
func crossBuild(ctx context.Context, t *testing.T, goos, goarch string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "agent-"+goos+"-"+goarch)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=emulated-test", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOARM=7")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build %s/%s: %s", goos, goarch, b)
	return out
}

// emulatedPayment starts a simulated PPaaS in-process and the agent binary under
// qemu pointed at it, then pays 12.34 EUR with the KB QR method from a POS.
func emulatedPayment(ctx context.Context, t *testing.T, qemu, bin string) {
	w := newCrashWorld(t)
	p, serial := w.sim, w.serial
	cmd := exec.CommandContext(ctx, qemu, append(append([]string{bin}, w.agentArgs("-payment-timeout", "60s", "-event-wait", "2s")...), "run")...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // no TERMAGENT_* from the host
	cmd.WaitDelay = 5 * time.Second
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	logs := &syncbuf.Buffer{}
	ready := make(chan string, 1)
	go func() {
		watchReady(stderr, logs, ready)
		exited <- cmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})

	var posURL string
	select {
	case posURL = <-ready:
	case err := <-exited:
		stopped = true
		t.Fatalf("agent exited before ready: %v", err)
	case <-ctx.Done():
		t.Fatal("agent not ready in time")
	}

	pos := w.pos(posURL)
	pos.Client.HTTP.Timeout = 2 * time.Minute
	type result struct {
		r   *nexo.Response
		err error
	}
	paid := make(chan result, 1)
	go func() {
		r, err := pos.Pay(ctx, "EMU1", 1234, "EUR", "KB")
		paid <- result{r, err}
	}()

	// The consumer scans the QR shown on the (virtual) terminal and pays.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var txID string
	for s := range p.Terminals().Watch(wctx, serial) {
		if s.State == "awaiting_consumer" && s.QRPayload != "" {
			txID = s.TransactionID
			break
		}
	}
	require.NotEmpty(t, txID, "the terminal never showed the QR code")
	wcancel()
	_, err = p.Act(txID, "pay")
	require.NoError(t, err)

	var res result
	select {
	case res = <-paid:
	case <-ctx.Done():
		t.Fatal("no payment response in time")
	}
	require.NoError(t, res.err)
	require.Equal(t, nexo.Success, res.r.Status.Result, world.Describe(res.r))
	require.Equal(t, int64(1234), res.r.Payment.Result.AuthorizedAmount.Minor)

	// SIGTERM is a clean stop, also under emulation.
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		stopped = true
		require.NoError(t, err, "exit after SIGTERM")
	case <-ctx.Done():
		t.Fatal("agent did not stop after SIGTERM")
	}
	require.Contains(t, logs.String(), `"msg":"termagent stopped"`)
}

// watchReady copies the agent's JSON log to logs and sends the POS URL from the
// "termagent ready" line.
func watchReady(r io.Reader, logs io.Writer, ready chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		fmt.Fprintf(logs, "%s\n", line)
		if !strings.Contains(string(line), "termagent ready") {
			continue
		}
		var rec struct {
			Msg string `json:"msg"`
			POS string `json:"pos"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "termagent ready" {
			select {
			case ready <- rec.POS:
			default:
			}
		}
	}
	_, _ = io.Copy(logs, r)
}
