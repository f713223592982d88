// Command benchreport runs every package's benchmarks, builds the agent for each
// target, runs it against the simulator to measure its start time and idle
// footprint, and writes BENCHMARKS.md (`make bench`).
//
// Usage: benchreport [-o BENCHMARKS.md] [-quick] [-skip-bench] [-skip-agent] [-skip-fleet]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(1)
		}
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "BENCHMARKS.md", "report file; - for standard output")
	dir := fs.String("dir", ".", "module root")
	quick := fs.Bool("quick", false, "few iterations, no long store benchmarks, 3 s idle window: a smoke run")
	skipBench := fs.Bool("skip-bench", false, "skip the go test benchmarks")
	skipAgent := fs.Bool("skip-agent", false, "skip binary sizes and the running agent")
	skipFleet := fs.Bool("skip-fleet", false, "skip the sim fleet runs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Now()
	var benchErr error // a failed target, returned once the report is written
	rep := &Report{Quick: *quick, Machine: machine(ctx, *dir)}
	if !*skipBench {
		res, hostile, err := runBenchmarks(ctx, *dir, *quick, stderr)
		if err != nil && hostile == nil {
			return err
		}
		rep.Results, rep.Hostile, benchErr = res, hostile, err
	}
	if !*skipAgent {
		work, err := os.MkdirTemp("", "benchreport-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
		fmt.Fprintln(stderr, "== building the agent for every target")
		if rep.Sizes, err = binarySizes(ctx, *dir, work); err != nil {
			return err
		}
		bin, err := buildAgent(ctx, *dir, work, runtime.GOOS, runtime.GOARCH)
		if err != nil {
			return err
		}
		window, starts, payments := 10*time.Second, 5, 1000
		if *quick {
			window, starts, payments = 3*time.Second, 2, 20
		}
		fmt.Fprintf(stderr, "== running the agent: %d starts, then %s idle\n", starts, window)
		fp, err := measureAgent(ctx, bin, work, starts, window, payments, stderr)
		if err != nil {
			return err
		}
		rep.Footprint = &fp
	}
	if !*skipFleet {
		f, err := fleets(ctx, *dir, *quick, stderr)
		if err != nil {
			return err
		}
		rep.Fleets = f
	}
	rep.Machine.Elapsed = time.Since(start)
	var buf bytes.Buffer
	rep.Render(&buf)
	if *out == "-" {
		if _, err := stdout.Write(buf.Bytes()); err != nil {
			return err
		}
		return benchErr
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s\n", *out)
	return benchErr
}

// machine describes this machine from /proc and the go command.
func machine(ctx context.Context, dir string) Machine {
	m := Machine{Cores: runtime.NumCPU(), OSArch: runtime.GOOS + "/" + runtime.GOARCH, Date: time.Now(), CPU: "unknown", Kernel: "unknown", Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := command(ctx, dir, "go", "env", "GOVERSION"); err == nil {
		m.Go = b
	}
	if b, err := command(ctx, dir, "git", "describe", "--always", "--dirty"); err == nil {
		m.Commit = b
	}
	return m
}

func command(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	return strings.TrimSpace(string(b)), err
}
