package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/termagent/termagent/agent"
)

const refundUsage = `Usage: agent refund list|close [flags]

Refunds the refund desk gave up to a person ("manual action needed"), on a
STOPPED agent (the store file is locked while the agent runs).

  list   the refunds given up, with the PPaaS transaction to check
  close  close one, with what you found at PPaaS or elsewhere:
           agent refund close POI-ID -refunded -note "..." -yes
             the money went back to the consumer: the refund becomes a
             Success, its amount stays taken from the payment
           agent refund close POI-ID -not-refunded -note "..." -yes
             nothing went back: the amount is refundable again and the
             refund becomes a Refusal

Until it is closed (or PPaaS confirms it), a refund given up stays in the
agent's alerts and SaleReconciliation answers Busy. Check PPaaS before
-not-refunded: the agent stops asking PPaaS about a closed refund, so a
refund PPaaS completes afterwards reaches the POS only as an after-sale
update of the payment.

Flags:
`

// runRefund implements `agent refund ...` on a stopped agent's data dir.
func runRefund(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("agent refund", flag.ContinueOnError)
	fset.SetOutput(stderr)
	dataDir := fset.String("data-dir", agent.DefaultConfig().DataDir, "the agent's data directory (holds termagent.db)")
	refunded := fset.Bool("refunded", false, "close: the money went back to the consumer")
	notRefunded := fset.Bool("not-refunded", false, "close: nothing went back to the consumer")
	note := fset.String("note", "", "close: what you found (goes into the refund's answer, at most 256 bytes)")
	yes := fset.Bool("yes", false, "close: confirm")
	asJSON := fset.Bool("json", false, "list: print JSON")
	cmd, err := subcommand(fset, args, refundUsage, stderr, "list, close")
	if err != nil {
		return err
	}
	var id string
	if cmd == "close" && fset.NArg() > 0 {
		id = fset.Arg(0)
		if err := fset.Parse(fset.Args()[1:]); err != nil {
			return err
		}
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("agent refund %s: unexpected arguments %q", cmd, fset.Args())
	}
	switch cmd {
	case "list":
	case "close":
		switch {
		case id == "":
			return errors.New("agent refund close: missing the refund's POI transaction id (see agent refund list)")
		case *refunded == *notRefunded:
			return errors.New("agent refund close: say what you found: -refunded or -not-refunded")
		case !*yes:
			return errors.New("agent refund close: this settles the refund for good; add -yes to confirm")
		}
	default:
		fset.Usage()
		return fmt.Errorf("agent refund: unknown command %q (want list, close)", cmd)
	}

	st, err := openStopped(ctx, "agent refund", filepath.Join(*dataDir, "termagent.db"), false, stdout)
	if err != nil {
		return err
	}
	defer st.Close()
	if cmd == "list" {
		list, err := agent.ManualRefunds(ctx, st)
		if err != nil {
			return fmt.Errorf("agent refund list: %w", err)
		}
		return printManualRefunds(list, *asJSON, stdout)
	}
	resp, err := agent.CloseManualRefund(ctx, st, id, *refunded, *note, time.Now())
	if err != nil {
		return fmt.Errorf("agent refund close: %w", err)
	}
	fmt.Fprintf(stdout, "refund %s closed: %s", id, resp.Status.Result)
	if resp.Status.ErrorCondition != "" {
		fmt.Fprintf(stdout, " (%s)", resp.Status.ErrorCondition)
	}
	fmt.Fprintf(stdout, " — %s\n", resp.Status.AdditionalResponse)
	return st.Close()
}

func printManualRefunds(list []agent.ManualRefund, asJSON bool, w io.Writer) error {
	if asJSON {
		if list == nil {
			list = []agent.ManualRefund{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(w, "no refund is waiting for a person")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POI TRANSACTION\tKIND\tAMOUNT\tSALE/SERVICE\tORIGINAL\tPPAAS TRANSACTION\tSTARTED")
	for _, m := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\t%s\t%s\n", m.POITransactionID, m.Kind, m.Amount, m.SaleID, m.ServiceID,
			m.Original, m.PPaaSTransactionID, m.Started.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, m := range list {
		fmt.Fprintf(w, "\n%s: %s\n", m.POITransactionID, m.Why)
	}
	return nil
}
