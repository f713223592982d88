// Command agent is the termagent device agent: it runs beside (or on) a payment
// terminal, authenticates to PPaaS over mutual TLS, serves Nexo Retailer requests
// from the POS and drives QR alternative-payment transactions.
//
// Usage: agent [flags] [run] | agent version | agent config check | agent queue ... |
// agent refund ... | agent service run|install|uninstall (Windows)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/termagent/termagent/agent"
)

// Stamped at link time by the Makefile (-ldflags -X).
var (
	version   = "dev"
	commit    = "unknown"
	buildDate = "" // RFC 3339
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	for _, w := range agent.UnknownEnv(os.Environ()) {
		fmt.Fprintf(os.Stderr, "agent: warning: %s\n", w)
	}
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, errorLine(err))
		}
		os.Exit(exitCode(err))
	}
}

// errorLine is how an error is printed: named after the binary once, even
// when a sub-command already names itself ("agent queue: …").
func errorLine(err error) string {
	if msg := err.Error(); strings.HasPrefix(msg, "agent ") {
		return msg
	}
	return "agent: " + err.Error()
}

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 1
}

func build() agent.Build {
	b := agent.Build{Version: version, Commit: commit}
	if t, err := time.Parse(time.RFC3339, buildDate); err == nil {
		b.Date = t
	}
	return b
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			b := build()
			fmt.Fprintf(stdout, "termagent %s (commit %s, built %s)\n", b.Version, b.Commit, buildDate)
			return nil
		case "queue":
			return runQueue(ctx, args[1:], stdout, stderr)
		case "refund":
			return runRefund(ctx, args[1:], stdout, stderr)
		case "service":
			return runService(ctx, args[1:], getenv, stdout, stderr)
		}
	}
	cfg, rest, err := agent.LoadConfig("agent", args, getenv, stderr)
	if err != nil {
		return err
	}
	switch {
	case len(rest) == 0 || len(rest) == 1 && rest[0] == "run":
	case rest[0] == "config":
		if len(rest) != 2 || rest[1] != "check" {
			return errors.New("usage: agent config check [flags]")
		}
		return configCheck(cfg, stdout, stderr)
	default:
		return fmt.Errorf("unknown command %q (want run, version, config check, queue, refund, service)", rest[0])
	}
	if err := cfg.CheckFiles(); err != nil {
		return withFilesHint(err)
	}
	log := agent.NewLogger(cfg, stderr)
	log.Info("go memory limit", "bytes", setMemoryLimit(getenv))
	// Nothing reads a heap profile: the release binary links no profiler, so
	// the runtime never samples one. The agent run from a test binary (which
	// links one: the crash and hostile-input tests) would, and each
	// allocation stack sampled touches another page of the runtime's 1.4 MiB
	// bucket table, resident for good (0.8 MiB after the hostile-input run).
	runtime.MemProfileRate = 0
	a, err := agent.New(cfg, build(), log, agent.Options{})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// defaultMemoryLimit is the Go runtime's soft memory limit when GOMEMLIMIT
// is not set: a terminal's agent lives in a few tens of MiB, and past the
// limit the collector runs more often and returns freed memory to the
// system at once instead of keeping it for the next burst. It is soft: a
// heap that needs more gets it (GOMEMLIMIT=off lifts it).
const defaultMemoryLimit = 32 << 20

// setMemoryLimit applies defaultMemoryLimit unless GOMEMLIMIT is set (the
// runtime read it at start) and returns the limit in force.
func setMemoryLimit(getenv func(string) string) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(defaultMemoryLimit)
	return defaultMemoryLimit
}

// missingFilesHint follows an error about the files the agent needs.
const missingFilesHint = `the agent needs the device certificate and key and the CA bundle that verifies PPaaS:
set -cert, -key and -ca (or TERMAGENT_CERT, TERMAGENT_KEY, TERMAGENT_CA, or a -config file);
to try the agent against the simulator, ` + "`sim certs --out conf`" + ` writes a development set in conf/`

// withFilesHint adds missingFilesHint to an error about a missing file.
func withFilesHint(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w\n"+missingFilesHint, err)
	}
	return err
}

// configCheck validates the configuration and the files it names, reports
// what it found on stderr and prints the effective configuration on stdout
// as a -config file.
func configCheck(cfg agent.Config, stdout, stderr io.Writer) error {
	rep, err := cfg.Check(time.Now())
	for _, l := range rep.Lines {
		fmt.Fprintln(stderr, l)
	}
	if err != nil {
		return withFilesHint(err)
	}
	b, err := cfg.FileJSON()
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "configuration OK; the effective configuration follows (a valid -config file)")
	_, err = stdout.Write(b)
	return err
}
