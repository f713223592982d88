package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

// Targets are `make cross`'s.
var targets = []struct{ goos, goarch string }{
	{"linux", "amd64"}, {"linux", "arm"}, {"linux", "arm64"}, {"android", "arm64"}, {"windows", "amd64"},
}

// BinarySize is one target's stripped agent.
type BinarySize struct {
	Target string
	Bytes  int64
}

// buildAgent builds the agent for goos/goarch as `make cross` does.
func buildAgent(ctx context.Context, dir, outDir, goos, goarch string) (string, error) {
	out := filepath.Join(outDir, "agent-"+goos+"-"+goarch)
	if goos == "windows" {
		out += ".exe"
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=benchreport", "-o", out, "./cmd/agent")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOARM=7")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build agent %s/%s: %w\n%s", goos, goarch, err, b)
	}
	return out, nil
}

func binarySizes(ctx context.Context, dir, outDir string) ([]BinarySize, error) {
	var sizes []BinarySize
	for _, t := range targets {
		p, err := buildAgent(ctx, dir, outDir, t.goos, t.goarch)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		sizes = append(sizes, BinarySize{Target: t.goos + "/" + t.goarch, Bytes: st.Size()})
	}
	return sizes, nil
}

// Footprint is what a running agent costs, measured from outside the process.
type Footprint struct {
	Ready      []time.Duration // agent exec → /readyz 200, one per start
	Stop       time.Duration   // SIGTERM → exit, last start
	IdleWindow time.Duration
	RSSKB      int64         // VmRSS at the end of the idle window
	HWMKB      int64         // VmHWM: peak RSS since start
	CPU        time.Duration // user+system time spent in the idle window
	Switches   int64         // context switches of all threads in the idle window
	Threads    int
	// After Payments sequential payments (instant-approve provider) and a
	// 2 s settle: VmRSS and RssAnon, read without anything forcing a GC.
	Payments          int
	PaymentsRSSKB     int64
	PaymentsRSSAnonKB int64
}

// measureAgent starts a simulated PPaaS (with its MQTT broker) in this process
// and the agent binary against it, starts times times to time readiness, and
// watches the last one idle for window.
func measureAgent(ctx context.Context, bin, work string, starts int, window time.Duration, payments int, progress io.Writer) (Footprint, error) {
	var fp Footprint
	certsDir := filepath.Join(work, "certs")
	if _, err := certs.Generate(certs.Options{Dir: certsDir}); err != nil {
		return fp, err
	}
	p, err := sim.New(sim.Config{Addr: "127.0.0.1:0", CertsDir: certsDir, Payments: sim.PaymentsConfig{Provider: sim.ProviderApprove}})
	if err != nil {
		return fp, err
	}
	if err := p.Start(ctx); err != nil {
		return fp, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = p.Close(cctx)
	}()
	c := func(name string) string { return filepath.Join(certsDir, name) }
	for i := range starts {
		admin, err := freeAddr()
		if err != nil {
			return fp, err
		}
		nexoAddr, err := freeAddr()
		if err != nil {
			return fp, err
		}
		var logs bytes.Buffer
		cmd := exec.CommandContext(ctx, bin,
			"-auth-url", p.URL(), "-api-url", p.URL(), "-mqtt-url", p.MQTTURL(),
			"-cert", c(certs.ClientCertFile), "-key", c(certs.ClientKeyFile), "-ca", c(certs.BundleFile),
			"-nexo-cert", c(certs.AgentCertFile), "-nexo-key", c(certs.AgentKeyFile), "-nexo-listen", nexoAddr, "-poiid", benchPOIID,
			"-data-dir", filepath.Join(work, "data"), "-admin-listen", admin, "-log-level", "warn", "run")
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		cmd.Stderr = &logs
		cmd.WaitDelay = 5 * time.Second
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return fp, err
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stop := func() (time.Duration, error) {
			t := time.Now()
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				return time.Since(t), err
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				return 0, fmt.Errorf("agent did not stop within 30 s of SIGTERM\n%s", logs.String())
			}
		}
		if err := waitReady(ctx, "http://"+admin+"/readyz", exited); err != nil {
			_, _ = stop()
			return fp, fmt.Errorf("start %d: %w\n%s", i+1, err, logs.String())
		}
		fp.Ready = append(fp.Ready, time.Since(t0))
		fmt.Fprintf(progress, "start %d: ready in %s\n", i+1, fp.Ready[i].Round(time.Millisecond))
		if i == starts-1 {
			if err := watchIdle(ctx, cmd.Process.Pid, window, &fp); err != nil {
				_, _ = stop()
				return fp, err
			}
			fmt.Fprintf(progress, "%d payments, then RSS\n", payments)
			if err := payAndMeasure(ctx, cmd.Process.Pid, "https://"+nexoAddr+"/nexo", c(certs.BundleFile), payments, &fp); err != nil {
				_, _ = stop()
				return fp, fmt.Errorf("payments: %w\n%s", err, logs.String())
			}
		}
		d, err := stop()
		if err != nil {
			return fp, fmt.Errorf("stop: %w\n%s", err, logs.String())
		}
		fp.Stop = d
	}
	return fp, nil
}

const benchPOIID = "BENCH-POI"

// payAndMeasure makes n sequential payments through the agent's Nexo
// endpoint, waits 2 s, and reads its RSS.
func payAndMeasure(ctx context.Context, pid int, url, caFile string, n int, fp *Footprint) error {
	pool, err := mtls.LoadCAPool(caFile)
	if err != nil {
		return err
	}
	pos := &world.POS{POIID: benchPOIID, Client: &nexo.Client{URL: url, HTTP: &http.Client{Timeout: time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}}
	for i := range n {
		resp, err := pos.Pay(ctx, "", 100, "EUR", "KB")
		if err != nil {
			return fmt.Errorf("payment %d: %w", i+1, err)
		}
		if resp.Status.Result != nexo.Success {
			return fmt.Errorf("payment %d: %s", i+1, world.Describe(resp))
		}
	}
	t := time.NewTimer(2 * time.Second)
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	fp.Payments, fp.PaymentsRSSKB, fp.PaymentsRSSAnonKB = n, statusKB(status, "VmRSS"), statusKB(status, "RssAnon")
	return nil
}

// freeAddr is a loopback address nobody listens on (for the admin listener,
// whose address the agent does not print).
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady polls /readyz every millisecond: the figure is a start time, so
// the poll is fine-grained, and it ends as soon as the agent answers 200.
func waitReady(ctx context.Context, url string, exited <-chan error) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := hc.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("agent exited before ready: %v", err)
		case <-deadline.C:
			return fmt.Errorf("agent not ready within 30 s")
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// watchIdle lets the agent settle (MQTT subscription, first timers), then
// measures its CPU time, context switches and RSS over window.
func watchIdle(ctx context.Context, pid int, window time.Duration, fp *Footprint) error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("idle measurement reads /proc: Linux only")
	}
	settle := time.NewTimer(2 * time.Second)
	select {
	case <-settle.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	cpu0, err := procCPU(pid)
	if err != nil {
		return err
	}
	sw0, _, err := procSwitches(pid)
	if err != nil {
		return err
	}
	t := time.NewTimer(window)
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	cpu1, err := procCPU(pid)
	if err != nil {
		return err
	}
	sw1, threads, err := procSwitches(pid)
	if err != nil {
		return err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	fp.IdleWindow, fp.CPU, fp.Switches, fp.Threads = window, cpu1-cpu0, sw1-sw0, threads
	fp.RSSKB = statusKB(status, "VmRSS")
	fp.HWMKB = statusKB(status, "VmHWM")
	return nil
}

// userHZ is the unit of /proc/PID/stat's times (USER_HZ, 100 on every Linux
// architecture the agent ships for).
const userHZ = 100

// procCPU is the process's utime+stime.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces: fields count from after ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// procSwitches sums voluntary and involuntary context switches over the
// process's threads: each is a wake-up.
func procSwitches(pid int) (total int64, threads int, err error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // a thread that just ended
		}
		total += statusKB(b, "voluntary_ctxt_switches") + statusKB(b, "nonvoluntary_ctxt_switches")
		threads++
	}
	return total, threads, nil
}

// statusKB reads a numeric field of /proc/PID/status ("VmRSS:   1234 kB").
func statusKB(status []byte, key string) int64 {
	for line := range strings.Lines(string(status)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return n
	}
	return 0
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
