package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Result is one benchmark line of `go test -bench` output.
type Result struct {
	Pkg     string   // import path suffix, e.g. store
	Name    string   // without the Benchmark prefix and -GOMAXPROCS suffix: Pay/display=qr
	N       int64    // iterations
	Metrics []Metric // in output order: ns/op first, then B/op, allocs/op, custom metrics
}

// Metric is one value/unit pair of a benchmark line.
type Metric struct {
	Value float64
	Unit  string
}

// Get returns the metric with unit, if the line has it.
func (r Result) Get(unit string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Unit == unit {
			return m.Value, true
		}
	}
	return 0, false
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parseBench reads `go test -bench` text output for package pkg.
func parseBench(pkg string, r io.Reader) ([]Result, error) {
	var out []Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue // a log line that starts with a benchmark's name
		}
		res := Result{Pkg: pkg, Name: procSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), ""), N: n}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: value %q: %w", sc.Text(), f[i], err)
			}
			res.Metrics = append(res.Metrics, Metric{Value: v, Unit: f[i+1]})
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// paymentRuns is how many times the whole-payment benchmark runs.
func paymentRuns(quick bool) int {
	if quick {
		return 1
	}
	return 5
}

// medianRuns keeps, of the results of each benchmark run several times, the
// run with the median value of key (the lower middle of an even count), and
// adds key's range over the runs as key-min, key-max and the count as runs,
// and the range of every metric of also the same way.
// Results without key are kept as they are. The figures of the run kept are
// one run's: consistent with each other.
func medianRuns(res []Result, key string, also ...string) []Result {
	var (
		out   []Result
		order []string
		runs  = map[string][]Result{}
	)
	for _, r := range res {
		if _, ok := r.Get(key); !ok {
			out = append(out, r)
			continue
		}
		if _, seen := runs[r.Name]; !seen {
			order = append(order, r.Name)
		}
		runs[r.Name] = append(runs[r.Name], r)
	}
	for _, name := range order {
		rs := runs[name]
		slices.SortStableFunc(rs, func(a, b Result) int {
			va, _ := a.Get(key)
			vb, _ := b.Get(key)
			return cmp.Compare(va, vb)
		})
		lo, _ := rs[0].Get(key)
		hi, _ := rs[len(rs)-1].Get(key)
		m := rs[(len(rs)-1)/2]
		m.Metrics = append(slices.Clone(m.Metrics),
			Metric{Value: lo, Unit: key + "-min"}, Metric{Value: hi, Unit: key + "-max"}, Metric{Value: float64(len(rs)), Unit: "runs"})
		for _, k := range also {
			var vs []float64
			for _, r := range rs {
				if v, ok := r.Get(k); ok {
					vs = append(vs, v)
				}
			}
			if len(vs) > 0 {
				m.Metrics = append(m.Metrics, Metric{Value: slices.Min(vs), Unit: k + "-min"}, Metric{Value: slices.Max(vs), Unit: k + "-max"})
			}
		}
		out = append(out, m)
	}
	return out
}

// benchRun is one `go test -bench` invocation of the plan.
type benchRun struct {
	pkg       string // ./store
	bench     string // -bench regexp
	benchtime string
	env       []string
	// count > 1 runs the benchmarks that many times (-count); each one is
	// reported by its run with the median of key, with key's range over the
	// runs (medianRun), and the range of each metric of also.
	count int
	key   string
	also  []string
}

// plan gives each package's benchmarks iteration counts that make their
// percentiles meaningful in minutes rather than hours on a 2-core machine. A
// benchmark the plan does not name still runs, with -benchtime 1s.
func plan(quick bool) []benchRun {
	x := func(full, short string) string {
		if quick {
			return short
		}
		return full
	}
	p := []benchRun{
		{pkg: "./nexo", bench: "DecodePaymentRequest|EncodePaymentResponse", benchtime: x("20000x", "200x")},
		{pkg: "./nexo", bench: "DiagnosisE2E", benchtime: x("5000x", "200x")},
		{pkg: "./store", bench: "AppendLatency|Drain", benchtime: x("2000x", "50x")},
		{pkg: "./store", bench: "ConcurrentAppend", benchtime: x("10x", "1x")},
		{pkg: "./qr", bench: "Encode|Render", benchtime: x("2000x", "20x")},
		{pkg: "./qr", bench: "Pay", benchtime: x("300x", "10x")},
		{pkg: "./agent", bench: "ForwarderDrain", benchtime: x("5000x", "100x")},
		// Issue 4's figure: 1,000 sequential payments through the whole world.
		// Five runs: the floor ratio is reported from the median run, with
		// its range (this machine's disk and wake-ups vary from run to run).
		{pkg: "./sim/world", bench: "WorldPayment$", benchtime: x("1000x", "20x"), count: paymentRuns(quick), key: "agent-floor-ratio", also: []string{"agent-minimal-ratio"}},
		// Issue 17: Diagnosis p50/p99 idle and during back-to-back payments.
		{pkg: "./sim/world", bench: "DiagnosisUnderPayments", benchtime: x("2000x", "50x")},
		// Issue 13: the same payment in polling mode (about a second each).
		{pkg: "./sim/world", bench: "PaymentPollingMode", benchtime: x("60x", "5x")},
		// Issue 11: the padding check's timing, and 10,000 of each attack
		// against a running agent.
		{pkg: "./nexo", bench: "OpenPaddingTiming", benchtime: x("20000x", "500x")},
		// Issue 17: a payment's store writes after a drained backlog ÷ on a
		// fresh store, with and without bbolt's free list on disk.
		{pkg: "./store", bench: "BacklogCliff", benchtime: x("200x", "20x"), env: []string{"TERMAGENT_BACKLOG=" + x("1000000", "20000")}},
		{pkg: "./cmd/agent", bench: "HostileInput", benchtime: "1x", env: []string{"TERMAGENT_HOSTILE_N=" + x("10000", "300")}},
		// Issue 16: local 3.x and cloud v5 payments alternating on one agent.
		{pkg: "./sim/world", bench: "CloudPayment", benchtime: x("1000x", "20x")},
		// Issue 16: the Retail API relay with 1,000 devices connected.
		{pkg: "./sim", bench: "RelayThroughput", benchtime: x("20000x", "500x")},
		// Issue 14: referenced refunds through the whole world.
		{pkg: "./sim/world", bench: "WorldRefund", benchtime: x("1000x", "20x")},
	}
	if !quick {
		p = append(p, benchRun{pkg: "./store", bench: "LargeQueue", benchtime: "1x", env: []string{"TERMAGENT_BENCH_LONG=1"}})
	}
	// Issue 10: the whole crash matrix (about three minutes; -quick: the CI subset).
	crash := benchRun{pkg: "./cmd/agent", bench: "CrashMatrix", benchtime: "1x"}
	if quick {
		crash.env = []string{"TERMAGENT_CRASH_SUBSET=1"}
	}
	p = append(p, crash)
	return p
}

// goTest runs `go test` in dir with extra environment and returns its stdout;
// the output also streams to progress.
func goTest(ctx context.Context, dir string, env []string, progress io.Writer, args ...string) ([]byte, error) {
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", append([]string{"test"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.MultiWriter(&buf, progress)
	cmd.Stderr = progress
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return buf.Bytes(), fmt.Errorf("go test %s: %w", strings.Join(args, " "), err)
	}
	return buf.Bytes(), nil
}

// listBenchmarks finds every package's top-level benchmarks.
func listBenchmarks(ctx context.Context, dir string, progress io.Writer) (map[string][]string, error) {
	out, err := goTest(ctx, dir, nil, io.Discard, "-run", "^$", "-list", "^Benchmark", "./...")
	if err != nil {
		fmt.Fprintf(progress, "%s\n", out)
		return nil, err
	}
	found := map[string][]string{}
	var names []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		switch {
		case len(f) == 1 && strings.HasPrefix(f[0], "Benchmark"):
			names = append(names, f[0])
		case len(f) >= 2 && (f[0] == "ok" || f[0] == "?"):
			if len(names) > 0 {
				found[relPkg(f[1])] = names
			}
			names = nil
		}
	}
	return found, nil
}

// relPkg turns github.com/termagent/termagent/store into ./store.
func relPkg(importPath string) string {
	const mod = "github.com/termagent/termagent"
	rest, ok := strings.CutPrefix(importPath, mod)
	if !ok {
		return importPath
	}
	return "." + rest
}

// runBenchmarks runs the plan, then whatever benchmarks it did not cover.
// The hostile-input benchmark fails when a figure ends more than 10% above
// idle; its figures are still reported (from the JSON it writes), and the
// failure is returned once the report is written.
func runBenchmarks(ctx context.Context, dir string, quick bool, progress io.Writer) ([]Result, *Hostile, error) {
	all, err := listBenchmarks(ctx, dir, progress)
	if err != nil {
		return nil, nil, err
	}
	runs := plan(quick)
	for _, pkg := range slices.Sorted(maps.Keys(all)) {
		var rest []string
		for _, name := range all[pkg] {
			covered := false
			for _, r := range runs {
				if r.pkg == pkg && regexp.MustCompile(r.bench).MatchString(name) {
					covered = true
				}
			}
			if !covered {
				rest = append(rest, regexp.QuoteMeta(name))
			}
		}
		if len(rest) > 0 {
			bt := "1s"
			if quick {
				bt = "10x"
			}
			runs = append(runs, benchRun{pkg: pkg, bench: "^(" + strings.Join(rest, "|") + ")$", benchtime: bt})
		}
	}
	var (
		results []Result
		hostile *Hostile
		failed  error
	)
	for _, r := range runs {
		if _, ok := all[r.pkg]; !ok {
			continue // a package without benchmarks any more
		}
		env := r.env
		var hostileJSON string
		if r.bench == "HostileInput" {
			f, err := os.CreateTemp("", "hostile-*.json")
			if err != nil {
				return nil, nil, err
			}
			hostileJSON = f.Name()
			f.Close()
			defer os.Remove(hostileJSON)
			env = append(slices.Clone(env), "TERMAGENT_HOSTILE_JSON="+hostileJSON)
		}
		fmt.Fprintf(progress, "== go test -bench '%s' -benchtime %s %s\n", r.bench, r.benchtime, r.pkg)
		count := max(r.count, 1)
		out, err := goTest(ctx, dir, env, progress, "-run", "^$", "-bench", r.bench, "-benchtime", r.benchtime, "-benchmem", "-count", strconv.Itoa(count), "-timeout", "60m", r.pkg)
		if hostileJSON != "" {
			h, herr := readHostile(hostileJSON)
			if err == nil && herr != nil {
				return nil, nil, herr
			}
			if herr == nil {
				hostile = h
				if err != nil {
					failed = fmt.Errorf("hostile input: %d figures ended more than 10%% above idle (reported in the Hostile input section): %w", len(h.Over), err)
					continue
				}
			}
		}
		if err != nil {
			return nil, nil, err
		}
		res, err := parseBench(strings.TrimPrefix(r.pkg, "./"), bytes.NewReader(out))
		if err != nil {
			return nil, nil, err
		}
		if count > 1 {
			res = medianRuns(res, r.key, r.also...)
		}
		results = append(results, res...)
	}
	return results, hostile, failed
}
