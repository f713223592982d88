package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/termagent/termagent/sim/world"
)

func TestParseBench(t *testing.T) {
	f, err := os.Open("testdata/bench.txt")
	require.NoError(t, err)
	defer f.Close()
	res, err := parseBench("store", f)
	require.NoError(t, err)
	require.Len(t, res, 5)
	require.Equal(t, "AppendLatency", res[0].Name)
	require.Equal(t, int64(2000), res[0].N)
	v, ok := res[0].Get("p50-ratio")
	require.True(t, ok)
	require.InDelta(t, 1.06, v, 1e-9)
	require.Equal(t, "LargeQueue/queued=1000000", res[4].Name, "sub-benchmark names keep their path, lose -GOMAXPROCS")
	_, ok = res[1].Get("p50-ratio")
	require.False(t, ok)
}

func TestRenderShowsRatiosTargetsAndMissingFigures(t *testing.T) {
	f, err := os.Open("testdata/bench.txt")
	require.NoError(t, err)
	defer f.Close()
	res, err := parseBench("store", f)
	require.NoError(t, err)
	rep := &Report{
		Machine: Machine{CPU: "Test CPU", Cores: 2, Kernel: "Linux 6.1", OSArch: "linux/amd64", Go: "go1.26", Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)},
		Results: res,
		Sizes:   []BinarySize{{"linux/arm64", 10 << 20}, {"linux/arm", 16 << 20}},
		Footprint: &Footprint{
			Ready: []time.Duration{30 * time.Millisecond, 20 * time.Millisecond, 25 * time.Millisecond}, Stop: 2 * time.Millisecond,
			IdleWindow: 10 * time.Second, RSSKB: 13 << 10, HWMKB: 14 << 10, CPU: 10 * time.Millisecond, Switches: 40, Threads: 8,
		},
	}
	var buf bytes.Buffer
	rep.Render(&buf)
	md := buf.String()
	for _, want := range []string{
		"| CPU | Test CPU |",
		"| **1.06** | store p50 324 µs, p99 553 µs; bbolt p50 306 µs, p99 546 µs | ≤ 1.2 ✅ |",
		"| **11.74** |",
		"(PeekAfter + AckDeferred: removals ride on the next commit), records/s | **n/a** |", // the forwarder benchmark is not in this run
		"reopen time | **1.50** |",
		"median of 3 starts | 25 ms (min 20 ms, max 30 ms) | ≤ 1 s ✅ |",
		"| idle RSS (VmRSS after 10s idle) | 13.0 MiB (peak 14.0 MiB) | ≤ 25 MiB ✅ |",
		"| idle CPU (utime+stime over 10s) | 10ms = 0.10 % of one core | ≈ 0 ✅ |",
		"| linux/arm64 | 10485760 | 10.0 | ≤ 15 MiB ✅ |",
		"| store | ConcurrentAppend | 10 | 603 734 258 ns/op, 5 752 bolt-batch-appends/s, 44.4 ops/commit",
	} {
		require.Contains(t, md, want)
	}
	require.False(t, strings.Contains(md, "❌"), "every target met in this report:\n%s", md)
	require.NotContains(t, md, "## Hostile input", "no section without its benchmark")

	path := filepath.Join(t.TempDir(), "hostile.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"N": 10000, "Idle": {"RSSKB": 25600, "AnonKB": 8192, "FileKB": 17408, "DBBytes": 131072, "MetricsBytes": 21504},
		"Kinds": [{"Slug": "categories", "Name": "distinct 20 KB categories", "After": {"RSSKB": 26112, "AnonKB": 8704, "FileKB": 17408, "DBBytes": 131072, "MetricsBytes": 21504}},
		          {"Slug": "refused-payments", "Name": "refused payments", "After": {"RSSKB": 30720, "AnonKB": 9216, "FileKB": 21504, "DBBytes": 4194304, "MetricsBytes": 21760}}],
		"Over": ["after refused-payments: RSS", "after refused-payments: data file"], "Trade": {"Payments": 158, "FreshDBBytes": 65536}}`), 0o600))
	rep.Hostile, err = readHostile(path)
	require.NoError(t, err)
	buf.Reset()
	rep.Render(&buf)
	md = buf.String()
	require.Contains(t, md, "## Hostile input")
	require.Contains(t, md, "| idle | 25 | 8 | 17 | 0.125 | 21 |")
	require.Contains(t, md, "| distinct 20 KB categories | 25.5 (×1.02) ✅ | 8.50 (×1.06) ✅ | 17 (×1.00) | 0.125 (×1.00) ✅ | 21 (×1.00) ✅ |")
	require.Contains(t, md, "| refused payments | 30 (×1.20) ❌ | 9 (×1.12) ❌ | 21 (×1.24) | 4 (×32.00) ❌ | 21.2 (×1.01) ✅ |")
	require.Contains(t, md, "**2 figures more than 10% above idle ❌**")
	require.Contains(t, md, "What the attacks leave, at the end: 1 MiB of anonymous memory")
	require.Contains(t, md, "158 approved payments grew its data file from 0.0625 to 0.125 MiB")
	_, err = readHostile(filepath.Join(t.TempDir(), "none.json"))
	require.Error(t, err, "a benchmark that wrote no figures is an error, not an empty section")
}

func TestProcReadersOnThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	pid := os.Getpid()
	_, err := procCPU(pid)
	require.NoError(t, err)
	sw, threads, err := procSwitches(pid)
	require.NoError(t, err)
	require.Positive(t, threads)
	require.Positive(t, sw)
	status, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	require.Positive(t, statusKB(status, "VmRSS"))
}

func TestRenderFleetShowsASkippedToolAndFsync(t *testing.T) {
	rep := &Report{Fleets: []fleetRun{
		{Label: "embedded broker", Report: world.FleetReport{Terminals: 2, Payments: 4, Succeeded: 4, Fsync: true}},
		{Label: "embedded broker, no fsync", Report: world.FleetReport{Terminals: 2, Payments: 4, Succeeded: 4}},
		{Label: "Mosquitto", Skipped: "mosquitto not installed (apt-get install mosquitto)"},
	}}
	var buf bytes.Buffer
	rep.Render(&buf)
	md := buf.String()
	require.Contains(t, md, "| embedded broker | yes | 2 × 2 |")
	require.Contains(t, md, "| embedded broker, no fsync | no | 2 × 2 |")
	require.Contains(t, md, "| Mosquitto | **skipped: mosquitto not installed (apt-get install mosquitto)** |", "a missing tool is shown, never a dropped row")
}

func TestRenderFloorRowFromMeasuredFigures(t *testing.T) {
	res, err := parseBench("sim/world", strings.NewReader("BenchmarkWorldPayment-2   100   2e6 ns/op   109.4 KiB/payment   3.1 agent-floor-ratio   2.6 agent-p50-ms   4 agent-p99-ms   2 commits/payment   4 fdatasync/payment   27.3 pages/payment   2 path-commits   2 path-round-trips   150 fdatasync-p50-µs   240 commit-floor-p50-µs   40 https-rtt-p50-µs   45 pos-rtt-p50-µs   0.685 floor-ms   3 total-p50-ms   5 total-p99-ms   900 commit-write-µs/payment   5.2 fill-KiB/payment   1 path-pushes   20 push-p50-µs   3.2 agent-floor-ratio-nopush   1.3 minimal-path-p50-ms   1.4 minimal-total-p50-ms   35 minimal-event-queue-wait-p50-µs   2 agent-minimal-ratio   30 event-queue-wait-p50-µs   1.04 bare-platform-p50-ms   2.5 agent-bare-platform-ratio   1.8 agent-minimal-ratio-nowait\n"))
	require.NoError(t, err)
	var buf bytes.Buffer
	(&Report{Results: res}).Render(&buf)
	md := buf.String()
	require.Contains(t, md, "| **2.00** | agent share p50 2.60 ms; minimal agent share p50 1.30 ms (total 1.40 ms; its events waited in the simulator's queue p50 35 µs, the agent's 30 µs); the former baseline, the same steps against a bare platform whose whole handler time (its push included) is subtracted: p50 1.04 ms (the agent's share ÷ it: 2.50); the composed floor above 0.685 ms; the ratio with each side's events' queue wait taken out of its share: 1.80 | ≤ 1.5 ❌ |", "the strongest alternative's row")
	require.Contains(t, md, "through the same simulated platform", "the row says what the baseline does")
	require.Contains(t, md, "| **3.10** | floor 0.685 ms = 2 commits × 240 µs (2 fdatasync back to back; the first alone 150 µs) + POS round trip 45 µs + 1 platform calls × 40 µs + 1 push × 20 µs (without the push: ratio 3.20); the platform's events waited in the simulator's queue p50 30 µs per payment, left in the agent's share; measured per payment (all the agent's writes, its deliveries included): 2 commits, 4 fdatasync, 27.3 pages, 109 KiB written (and 5.20 KiB of zeros filled ahead, off the path), 900 µs writing and syncing them (bbolt's own timer; 1.88 × the commits' floor) | ≤ 1.5 ❌ |")
	require.NotContains(t, md, "2 fsyncs per payment", "figures are measured, never typed")
}

func TestRenderBacklogCliff(t *testing.T) {
	res, err := parseBench("store", strings.NewReader(`BenchmarkBacklogCliff/freelist=sync-2   200   1 ns/op   1000000 backlog   1120 drained-KiB/payment   8556 drained-p50-µs   267.6 file-MB   77.10 fresh-KiB/payment   3626 fresh-p50-µs   2.360 p50-ratio   73.14 reopen-ms
BenchmarkBacklogCliff/freelist=bounded-2   200   1 ns/op   1000000 backlog   69.10 drained-KiB/payment   2036 drained-p50-µs   267.6 file-MB   69.10 fresh-KiB/payment   2304 fresh-p50-µs   0.8837 p50-ratio   75.80 reopen-ms
`))
	require.NoError(t, err)
	var buf bytes.Buffer
	(&Report{Results: res}).Render(&buf)
	require.Contains(t, buf.String(), "after a drained backlog of 1 000 000 records ÷ on a fresh store, p50, interleaved (the store never writes bbolt's free list) | **0.88** | drained p50 2 036 µs, fresh 2 304 µs; 69.1 vs 69.1 KiB written per payment; reopen 75.8 ms (file 268 MB); with the free list written on every commit (bbolt's default): ratio 2.36, 1 120 KiB per payment | ≤ 1.2 ✅ |")
}

func TestRenderRSSAfterPayments(t *testing.T) {
	rep := &Report{Footprint: &Footprint{Ready: []time.Duration{time.Millisecond}, IdleWindow: time.Second, Payments: 1000, PaymentsRSSKB: 24 << 10, PaymentsRSSAnonKB: 12 << 10}}
	var buf bytes.Buffer
	rep.Render(&buf)
	require.Contains(t, buf.String(), "| RSS after 1000 sequential payments (+2 s, no forced GC) | 24.0 MiB (anonymous 12.0 MiB) | |")
}

// Five runs of the whole payment: the row shows the run with the median
// ratio, every figure of that one run, and the range over the five.
func TestRenderFloorRowFromTheMedianRun(t *testing.T) {
	var lines strings.Builder
	for _, r := range []struct{ ratio, fsync, minimal string }{{"1.62", "250", "1.7"}, {"1.31", "500", "1.41"}, {"1.44", "400", "1.5"}, {"1.28", "520", "1.39"}, {"1.52", "300", "1.66"}} {
		fmt.Fprintf(&lines, "BenchmarkWorldPayment-2   1000   4e6 ns/op   72 KiB/payment   %s agent-floor-ratio   3 agent-p50-ms   2 path-commits   2 path-round-trips   %s fdatasync-p50-µs   250 https-rtt-p50-µs   250 pos-rtt-p50-µs   2 floor-ms   %s agent-minimal-ratio\n", r.ratio, r.fsync, r.minimal)
	}
	res, err := parseBench("sim/world", strings.NewReader(lines.String()))
	require.NoError(t, err)
	require.Len(t, res, 5)
	res = medianRuns(res, "agent-floor-ratio", "agent-minimal-ratio")
	require.Len(t, res, 1)
	var buf bytes.Buffer
	(&Report{Results: res}).Render(&buf)
	md := buf.String()
	require.Contains(t, md, "The run with the median ratio of 5 runs, each figure of that run | **1.44** | 5 runs: 1.28–1.62; floor 2 ms = 2 commits × n/a µs (2 fdatasync back to back; the first alone 400 µs)")
	require.Contains(t, md, "From the same run as the row above | **1.50** | 5 runs: 1.39–1.70; agent share p50 3 ms", "the minimal agent's ratio over the five runs too")
}

func TestMedianRunsKeepsResultsWithoutTheKey(t *testing.T) {
	res := medianRuns([]Result{{Name: "Other", Metrics: []Metric{{1, "x"}}}, {Name: "A", Metrics: []Metric{{2, "k"}}}, {Name: "A", Metrics: []Metric{{1, "k"}}}}, "k")
	require.Len(t, res, 2)
	require.Equal(t, "Other", res[0].Name)
	v, _ := res[1].Get("k")
	require.Equal(t, 1.0, v, "the lower middle of an even count")
	n, _ := res[1].Get("runs")
	require.Equal(t, 2.0, n)
}
