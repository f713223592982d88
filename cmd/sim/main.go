// Command sim is the termagent simulator: a simulated PPaaS (device auth, APIs,
// MQTT broker, providers, fault injection), the development PKI generator, and the
// tools to drive an agent without a terminal.
//
// Usage: sim certs | serve | ...  (sim -h lists them)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first Ctrl-C asks the command to finish cleanly (sim pos pay aborts
	// its payment and waits for the answer); a second one stops it at once.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"certs", "generate the development PKI (CA, PPaaS server, device certificates)", runCerts},
		{"serve", "run the simulated PPaaS alone (device auth and APIs on mTLS, broker, control API)", runServe},
		{"up", "run a whole world on loopback: simulated PPaaS, broker, virtual terminal and an agent", runUp},
		{"demo", "one complete QR payment against the simulator, printed step by step", runDemo},
		{"pos", "the POS driver: send Nexo requests to an agent (pay, refund, abort, status, ...)", runPOS},
		{"consumer", "the consumer in front of the virtual terminal: pay, decline or abandon a QR payment", runConsumer},
		{"run", "run scenario files (POS, consumer, faults, expected outcomes): sim run scenarios/*.json", runScenarios},
		{"fleet", "N simulated terminals against one simulated PPaaS: throughput, latency, memory, lost/duplicated payments", runFleet},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: sim <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'sim <command> -h' for the flags of a command.")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return errors.New("sim: no command given")
		}
		return flag.ErrHelp
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout, stderr)
			if err != nil && !errors.Is(err, flag.ErrHelp) {
				// The one place that names the command: the commands'
				// own errors do not repeat it.
				return fmt.Errorf("sim %s: %w", c.name, err)
			}
			return err
		}
	}
	usage(stderr)
	return fmt.Errorf("sim: unknown command %q", args[0])
}
