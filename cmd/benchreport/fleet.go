package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"github.com/termagent/termagent/sim/world"
)

// fleetRun is one `sim fleet` run: N in-process terminals against one simulated
// PPaaS and broker.
type fleetRun struct {
	Label  string
	Report world.FleetReport
	// Skipped says why the run did not happen (a missing tool): the row is
	// shown with the reason rather than dropped.
	Skipped string
}

// runFleet runs `sim fleet -json` with the given arguments and decodes its report.
func runFleet(ctx context.Context, dir, label string, progress io.Writer, args ...string) (fleetRun, error) {
	fmt.Fprintf(progress, "== fleet: %s\n", label)
	cmd := exec.CommandContext(ctx, "go", append([]string{"run", "./cmd/sim", "fleet", "-json"}, args...)...)
	cmd.Dir = dir
	cmd.Stderr = progress
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return fleetRun{}, fmt.Errorf("sim fleet %v: %w", args, err)
	}
	var r world.FleetReport
	if err := json.Unmarshal(out, &r); err != nil {
		return fleetRun{}, fmt.Errorf("sim fleet %v: decode report: %w", args, err)
	}
	return fleetRun{Label: label, Report: r}, nil
}

// fleets runs the fleet figures of issue 6: 1,000 terminals (20 in a quick run)
// on the embedded broker with fsync (as terminals run) and without, and on a
// real Mosquitto; when Mosquitto is not installed its row says so.
func fleets(ctx context.Context, dir string, quick bool, progress io.Writer) ([]fleetRun, error) {
	n, payments := 1000, 3
	if quick {
		n, payments = 20, 2
	}
	base := []string{"-n", strconv.Itoa(n), "-payments", strconv.Itoa(payments), "-concurrency", "50"}
	var out []fleetRun
	for _, run := range []struct {
		label string
		args  []string
	}{
		{"embedded broker", base},
		{"embedded broker, no fsync", append(slices.Clone(base), "-fsync=false")},
	} {
		r, err := runFleet(ctx, dir, run.label, progress, run.args...)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if !mosquittoInstalled() {
		fmt.Fprintln(progress, "== fleet: Mosquitto skipped: mosquitto not installed")
		return append(out, fleetRun{Label: "Mosquitto", Skipped: "mosquitto not installed (apt-get install mosquitto)"}), nil
	}
	r, err := runFleet(ctx, dir, "Mosquitto", progress, append(base, "-mosquitto")...)
	if err != nil {
		return nil, err
	}
	return append(out, r), nil
}

// mosquittoInstalled looks where `sim fleet -mosquitto` looks.
func mosquittoInstalled() bool {
	for _, name := range []string{"mosquitto", "/usr/sbin/mosquitto"} {
		if _, err := exec.LookPath(name); err == nil {
			return true
		}
	}
	return false
}

func (r *Report) renderFleets(p func(string, ...any)) {
	if len(r.Fleets) == 0 {
		return
	}
	p("\n## Fleet\n\n")
	p("`sim fleet`: N simulated terminals, each an in-process agent with its own serial, device\n")
	p("certificate, store and Nexo listener, against one simulated PPaaS and broker; 50 POS paying\n")
	p("at once with an instant-approve provider. Lost = the POS was told Success but PPaaS never\n")
	p("charged; unreported = charged without the POS knowing; duplicated = charged twice. With\n")
	p("fsync (as terminals run) one disk stands in for every terminal's flash, so it bounds the rate.\n\n")
	p("| broker | fsync | terminals × payments | succeeded | lost / unreported / duplicated | payments/s | p50 / p99 | heap per terminal (idle / after) | RSS per terminal | start (all ready) |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range r.Fleets {
		if f.Skipped != "" {
			p("| %s | **skipped: %s** | | | | | | | | |\n", f.Label, f.Skipped)
			continue
		}
		fr := f.Report
		p("| %s | %s | %d × %d | %d / %d | %d / %d / %d | %s | %s / %s | %s / %s KiB | %s MiB | %s |\n",
			f.Label, yesNo(fr.Fsync), fr.Terminals, fr.Payments/max(fr.Terminals, 1), fr.Succeeded, fr.Payments,
			fr.Lost, fr.Unreported, fr.Duplicated, num(fr.PaymentsPerSecond),
			fr.P50.Round(time.Millisecond), fr.P99.Round(time.Millisecond),
			num(float64(fr.HeapPerTerminalIdle)/1024), num(float64(fr.HeapPerTerminal)/1024),
			num(float64(fr.RSSPerTerminal)/(1<<20)), fr.StartTime.Round(time.Millisecond))
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
