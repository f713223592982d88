// Command agent is the termagent device agent: it runs beside (or on) a payment
// terminal, authenticates to PPaaS over mutual TLS, serves Nexo Retailer requests
// from the POS and drives QR alternative-payment transactions.
//
// Usage: agent [flags] [run] | agent version | agent config check | agent queue ... |
// agent service run|install|uninstall (Windows)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "agent:", err)
		}
		os.Exit(exitCode(err))
	}
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
		case "service":
			return runService(ctx, args[1:], getenv, stdout, stderr)
		case "config":
			if len(args) < 2 || args[1] != "check" {
				return errors.New("usage: agent config check [flags]")
			}
			cfg, _, err := agent.LoadConfig("agent config check", args[2:], getenv, stderr)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			fmt.Fprintln(stdout, "configuration OK:")
			return enc.Encode(cfg.Redacted())
		}
	}
	cfg, rest, err := agent.LoadConfig("agent", args, getenv, stderr)
	if err != nil {
		return err
	}
	if len(rest) > 0 && !(len(rest) == 1 && rest[0] == "run") {
		return fmt.Errorf("unknown command %q (want run, version, config check, queue, service)", rest[0])
	}
	log := agent.NewLogger(cfg, stderr)
	a, err := agent.New(cfg, build(), log, agent.Options{})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
