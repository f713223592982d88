package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Machine describes where the figures were measured.
type Machine struct {
	CPU     string
	Cores   int
	Kernel  string
	OSArch  string
	Go      string
	Date    time.Time
	Commit  string
	Elapsed time.Duration
}

// Report is everything BENCHMARKS.md shows.
type Report struct {
	Machine   Machine
	Results   []Result
	Sizes     []BinarySize
	Footprint *Footprint
	Fleets    []fleetRun
	Hostile   *Hostile // BenchmarkHostileInput's figures, from its JSON
	Quick     bool
}

func (r *Report) find(pkg, name string) (Result, bool) {
	for _, res := range r.Results {
		if res.Pkg == pkg && res.Name == name {
			return res, true
		}
	}
	return Result{}, false
}

// metric is one figure of one benchmark; NaN when the benchmark did not run.
func (r *Report) metric(pkg, name, unit string) float64 {
	res, ok := r.find(pkg, name)
	if !ok {
		return math.NaN()
	}
	v, ok := res.Get(unit)
	if !ok {
		return math.NaN()
	}
	return v
}

// figure is a row of the headline table.
type figure struct {
	what     string // what is measured, against which baseline
	ratio    float64
	absolute string
	target   string // "" when the issues set none
	ok       func(float64) bool
}

func (r *Report) figures() []figure {
	m := r.metric
	f := []figure{
		{
			what:     "Local Nexo Diagnosis over HTTPS (p50) ÷ bare Go HTTPS echo of the same bytes, alternating",
			ratio:    m("nexo", "DiagnosisE2E", "p50-ratio"),
			absolute: fmt.Sprintf("nexo p50 %s µs, p99 %s µs; echo p50 %s µs, p99 %s µs; p99 ratio %s", num(m("nexo", "DiagnosisE2E", "nexo-p50-µs")), num(m("nexo", "DiagnosisE2E", "nexo-p99-µs")), num(m("nexo", "DiagnosisE2E", "echo-p50-µs")), num(m("nexo", "DiagnosisE2E", "echo-p99-µs")), ratio(m("nexo", "DiagnosisE2E", "p99-ratio"))),
			target:   "≤ 1.5",
			ok:       func(v float64) bool { return v <= 1.5 },
		},
		{
			what:     "Durable outbox Append, one producer (p50) ÷ one bare bbolt Update, interleaved",
			ratio:    m("store", "AppendLatency", "p50-ratio"),
			absolute: fmt.Sprintf("store p50 %s µs, p99 %s µs; bbolt p50 %s µs, p99 %s µs", num(m("store", "AppendLatency", "store-p50-µs")), num(m("store", "AppendLatency", "store-p99-µs")), num(m("store", "AppendLatency", "bare-p50-µs")), num(m("store", "AppendLatency", "bare-p99-µs"))),
			target:   "≤ 1.2",
			ok:       func(v float64) bool { return v <= 1.2 },
		},
		{
			what:     "64 producers: durable appends/s through the group-commit writer ÷ bbolt Batch tuned for 64 producers (MaxBatchSize 64, the best MaxBatchDelay of a calibration run)",
			ratio:    m("store", "ConcurrentAppend", "ratio"),
			absolute: fmt.Sprintf("store %s appends/s (%s appends per commit); bolt.Batch %s appends/s (MaxBatchDelay %s µs)", num(m("store", "ConcurrentAppend", "store-appends/s")), num(m("store", "ConcurrentAppend", "ops/commit")), num(m("store", "ConcurrentAppend", "bolt-batch-appends/s")), num(m("store", "ConcurrentAppend", "bolt-batch-delay-µs"))),
		},
		{
			what:     "Outbox drain to a local HTTP receiver (forwarder) ÷ the store alone with the same acknowledgements (PeekAfter + AckDeferred: removals ride on the next commit), records/s",
			ratio:    m("agent", "ForwarderDrain", "records/s") / m("store", "DrainDeferred", "records/s"),
			absolute: fmt.Sprintf("forwarder %s records/s; store %s records/s (with a durable Ack each: %s records/s)", num(m("agent", "ForwarderDrain", "records/s")), num(m("store", "DrainDeferred", "records/s")), num(m("store", "Drain", "records/s"))),
		},
		{
			what:     "QR payment Pay → outcome (instant-approve provider, simulated PPaaS on loopback), p50 with the QR rendered for the display ÷ without display",
			ratio:    m("qr", "Pay/display=qr", "pay-p50-ms") / m("qr", "Pay/display=none", "pay-p50-ms"),
			absolute: fmt.Sprintf("no display: p50 %s ms, p99 %s ms; QR display: p50 %s ms, p99 %s ms; final event → outcome p50 %s ms, p99 %s ms", num(m("qr", "Pay/display=none", "pay-p50-ms")), num(m("qr", "Pay/display=none", "pay-p99-ms")), num(m("qr", "Pay/display=qr", "pay-p50-ms")), num(m("qr", "Pay/display=qr", "pay-p99-ms")), num(m("qr", "Pay/display=none", "event-to-outcome-p50-ms")), num(m("qr", "Pay/display=none", "event-to-outcome-p99-ms"))),
		},
		{
			what:     "Whole QR payment, POS → agent (Nexo HTTPS) → simulated PPaaS → approval event over MQTT → POS (p50): the agent's own share ÷ the total (total minus the simulated platform's time in the payment's own API calls and publishing its events, each from its publishing goroutine taking it to its broker taking it)",
			ratio:    m("sim/world", "WorldPayment", "agent-p50-ms") / m("sim/world", "WorldPayment", "total-p50-ms"),
			absolute: fmt.Sprintf("total p50 %s ms, p99 %s ms; agent share p50 %s ms, p99 %s ms; approval event → POS response p50 %s ms, p99 %s ms", num(m("sim/world", "WorldPayment", "total-p50-ms")), num(m("sim/world", "WorldPayment", "total-p99-ms")), num(m("sim/world", "WorldPayment", "agent-p50-ms")), num(m("sim/world", "WorldPayment", "agent-p99-ms")), num(m("sim/world", "WorldPayment", "event-to-response-p50-ms")), num(m("sim/world", "WorldPayment", "event-to-response-p99-ms"))),
			target:   "agent share p50 ≤ 2 ms; event → response p99 ≤ 5 ms",
			ok: func(float64) bool {
				return m("sim/world", "WorldPayment", "agent-p50-ms") <= 2 && m("sim/world", "WorldPayment", "event-to-response-p99-ms") <= 5
			},
		},
		{
			what:     "The payment's agent share (p50; the platform's busy time subtracted once where its spans overlap) ÷ its floor measured in the same run: commits on its path × a commit's floor (one page written and fdatasynced twice back to back, as a bbolt commit syncs its pages, then its meta page, on the same filesystem) + the POS's round trip (its own Nexo client against canned bytes) + the agent's platform calls × one HTTPS round trip on loopback with the agent's TLS settings + the approval event's push (its bytes over TLS on loopback to a waiting reader)" + medianOf(m("sim/world", "WorldPayment", "runs")),
			ratio:    m("sim/world", "WorldPayment", "agent-floor-ratio"),
			absolute: fmt.Sprintf("%sfloor %s ms = %s commits × %s µs (2 fdatasync back to back; the first alone %s µs) + POS round trip %s µs + %s platform calls × %s µs + %s push × %s µs (without the push: ratio %s); the platform's events waited in the simulator's queue p50 %s µs per payment, left in the agent's share; measured per payment (all the agent's writes, its deliveries included): %s commits, %s fdatasync, %s pages, %s KiB written (and %s KiB of zeros filled ahead, off the path), %s µs writing and syncing them (bbolt's own timer; %s × the commits' floor)", rangeOf(m("sim/world", "WorldPayment", "runs"), m("sim/world", "WorldPayment", "agent-floor-ratio-min"), m("sim/world", "WorldPayment", "agent-floor-ratio-max")), num(m("sim/world", "WorldPayment", "floor-ms")), num(m("sim/world", "WorldPayment", "path-commits")), num(m("sim/world", "WorldPayment", "commit-floor-p50-µs")), num(m("sim/world", "WorldPayment", "fdatasync-p50-µs")), num(m("sim/world", "WorldPayment", "pos-rtt-p50-µs")), num(m("sim/world", "WorldPayment", "path-round-trips")-1), num(m("sim/world", "WorldPayment", "https-rtt-p50-µs")), num(m("sim/world", "WorldPayment", "path-pushes")), num(m("sim/world", "WorldPayment", "push-p50-µs")), ratio(m("sim/world", "WorldPayment", "agent-floor-ratio-nopush")), num(m("sim/world", "WorldPayment", "event-queue-wait-p50-µs")), num(m("sim/world", "WorldPayment", "commits/payment")), num(m("sim/world", "WorldPayment", "fdatasync/payment")), num(m("sim/world", "WorldPayment", "pages/payment")), num(m("sim/world", "WorldPayment", "KiB/payment")), num(m("sim/world", "WorldPayment", "fill-KiB/payment")), num(m("sim/world", "WorldPayment", "commit-write-µs/payment")), ratio(m("sim/world", "WorldPayment", "commit-write-µs/payment")/(m("sim/world", "WorldPayment", "commits/payment")*m("sim/world", "WorldPayment", "commit-floor-p50-µs")))),
			target:   "≤ 1.5",
			ok:       func(v float64) bool { return v <= 1.5 },
		},
		{
			what:     "The payment's agent share (p50) ÷ a hand-written minimal agent paying through the same simulated platform in the same run (the strongest alternative): its own device, token and MQTT session set up beforehand; per payment the POS's request over HTTPS, one page written and fdatasynced twice, the simulator's QR create over mTLS with the agent's request JSON (its own ids put in), the approval PUBLISH read and acknowledged on its own MQTT 3.1.1 connection (a bare client, no goroutine), one page fdatasynced twice again, canned answer bytes. Its p50 share is measured as the agent's: its total minus the simulator's time in its API calls and event publishing (the events' queue wait left in). It pays after the floor's samples and the bare path, both once the agent's forwarder has delivered the payment's result and receipt (none of the agent's work in their time). From the same run as the row above",
			ratio:    m("sim/world", "WorldPayment", "agent-minimal-ratio"),
			absolute: fmt.Sprintf("%sagent share p50 %s ms; minimal agent share p50 %s ms (total %s ms; its events waited in the simulator's queue p50 %s µs, the agent's %s µs); the former baseline, the same steps against a bare platform whose whole handler time (its push included) is subtracted: p50 %s ms (the agent's share ÷ it: %s); the composed floor above %s ms; the ratio with each side's events' queue wait taken out of its share: %s", rangeOf(m("sim/world", "WorldPayment", "runs"), m("sim/world", "WorldPayment", "agent-minimal-ratio-min"), m("sim/world", "WorldPayment", "agent-minimal-ratio-max")), num(m("sim/world", "WorldPayment", "agent-p50-ms")), num(m("sim/world", "WorldPayment", "minimal-path-p50-ms")), num(m("sim/world", "WorldPayment", "minimal-total-p50-ms")), num(m("sim/world", "WorldPayment", "minimal-event-queue-wait-p50-µs")), num(m("sim/world", "WorldPayment", "event-queue-wait-p50-µs")), num(m("sim/world", "WorldPayment", "bare-platform-p50-ms")), ratio(m("sim/world", "WorldPayment", "agent-bare-platform-ratio")), num(m("sim/world", "WorldPayment", "floor-ms")), ratio(m("sim/world", "WorldPayment", "agent-minimal-ratio-nowait"))),
			target:   "≤ 1.5",
			ok:       func(v float64) bool { return v <= 1.5 },
		},
		{
			what:     "Referenced refund, POS → agent (reservation, PPaaS status read and refund, journal) → simulated PPaaS refunding at once → POS ÷ a Diagnosis round trip on the same agent, p50",
			ratio:    m("sim/world", "WorldRefund", "p50-ratio"),
			absolute: fmt.Sprintf("refund p50 %s ms, p99 %s ms; Diagnosis p50 %s ms", num(m("sim/world", "WorldRefund", "refund-p50-ms")), num(m("sim/world", "WorldRefund", "refund-p99-ms")), num(m("sim/world", "WorldRefund", "diagnosis-p50-ms"))),
		},
		{
			what:     "TransactionStatus (the last payment, its response repeated from the journal) ÷ Diagnosis, agent CPU per request (getrusage)",
			ratio:    m("agent", "TransactionStatusVsDiagnosis", "status/diagnosis"),
			absolute: fmt.Sprintf("TransactionStatus %s µs (%s µs over a journal that keeps nothing decoded or encoded: the first ask after the entry changed), Diagnosis %s µs of CPU per request", num(m("agent", "TransactionStatusVsDiagnosis", "status-cpu-µs")), num(m("agent", "TransactionStatusVsDiagnosis", "status-uncached-cpu-µs")), num(m("agent", "TransactionStatusVsDiagnosis", "diagnosis-cpu-µs"))),
			target:   "≤ 1.5",
			ok:       func(v float64) bool { return v <= 1.5 },
		},
		{
			what:     "GetTotals over a journal of 100,000 payments (grouped, computed from the journal) ÷ a local Nexo Diagnosis round trip (p50)",
			ratio:    m("nexo", "GetTotals100k", "ns/op") / (m("nexo", "DiagnosisE2E", "nexo-p50-µs") * 1000),
			absolute: fmt.Sprintf("GetTotals %s ms; Diagnosis p50 %s µs", num(m("nexo", "GetTotals100k", "ns/op")/1e6), num(m("nexo", "DiagnosisE2E", "nexo-p50-µs"))),
		},
		{
			what:     "A second POS's Diagnosis while the first makes back-to-back durable payments ÷ on an idle agent, p99",
			ratio:    m("sim/world", "DiagnosisUnderPayments", "p99-ratio"),
			absolute: fmt.Sprintf("idle p50 %s µs, p99 %s µs; during %s payments p50 %s µs, p99 %s µs", num(m("sim/world", "DiagnosisUnderPayments", "idle-p50-µs")), num(m("sim/world", "DiagnosisUnderPayments", "idle-p99-µs")), num(m("sim/world", "DiagnosisUnderPayments", "payments")), num(m("sim/world", "DiagnosisUnderPayments", "paying-p50-µs")), num(m("sim/world", "DiagnosisUnderPayments", "paying-p99-µs"))),
		},
		{
			what:     "Whole QR payment in polling mode (no broker: first status poll after 1 s) ÷ with the approval pushed over MQTT, total p50",
			ratio:    m("sim/world", "PaymentPollingMode", "total-p50-ms") / m("sim/world", "WorldPayment", "total-p50-ms"),
			absolute: fmt.Sprintf("polling p50 %s ms, p99 %s ms; MQTT p50 %s ms, p99 %s ms", num(m("sim/world", "PaymentPollingMode", "total-p50-ms")), num(m("sim/world", "PaymentPollingMode", "total-p99-ms")), num(m("sim/world", "WorldPayment", "total-p50-ms")), num(m("sim/world", "WorldPayment", "total-p99-ms"))),
			target:   "polling p99 ≤ 2 s (one poll interval after the approval)",
			ok:       func(float64) bool { return m("sim/world", "PaymentPollingMode", "total-p99-ms") <= 2000 },
		},
		{
			what:     "Whole QR payment from a cloud POS (Nexo v5 → Retail API → the agent's websocket) ÷ from a local POS (Nexo 3.x HTTPS), p50, alternating on one agent in the same run",
			ratio:    m("sim/world", "CloudPayment", "cloud-p50-ms") / m("sim/world", "CloudPayment", "local-p50-ms"),
			absolute: fmt.Sprintf("cloud p50 %s ms, p99 %s ms; local p50 %s ms, p99 %s ms; added p50 %s ms", num(m("sim/world", "CloudPayment", "cloud-p50-ms")), num(m("sim/world", "CloudPayment", "cloud-p99-ms")), num(m("sim/world", "CloudPayment", "local-p50-ms")), num(m("sim/world", "CloudPayment", "local-p99-ms")), num(m("sim/world", "CloudPayment", "added-p50-ms"))),
		},
		{
			what:     "QR rendering (PNG 256 px + terminal text) ÷ QR encoding alone",
			ratio:    m("qr", "Render", "ns/op") / m("qr", "Encode", "ns/op"),
			absolute: fmt.Sprintf("render %s µs, encode %s µs", us(m("qr", "Render", "ns/op")), us(m("qr", "Encode", "ns/op"))),
		},
	}
	f = append(f,
		figure{
			what:     "Nexo message security: open with good padding and a bad MAC ÷ open with bad padding (medians, interleaved): no padding oracle",
			ratio:    m("nexo", "OpenPaddingTiming", "badmac-ns") / m("nexo", "OpenPaddingTiming", "badpad-ns"),
			absolute: fmt.Sprintf("bad padding %s µs, bad MAC %s µs, difference %s ns", us(m("nexo", "OpenPaddingTiming", "badpad-ns")), us(m("nexo", "OpenPaddingTiming", "badmac-ns")), num(m("nexo", "OpenPaddingTiming", "diff-ns"))),
			target:   "0.95–1.05",
			ok:       func(v float64) bool { return v >= 0.95 && v <= 1.05 },
		},
		figure{
			what:     "Nexo PaymentRequest decode: XML ÷ JSON",
			ratio:    m("nexo", "DecodePaymentRequest/xml", "ns/op") / m("nexo", "DecodePaymentRequest/json", "ns/op"),
			absolute: fmt.Sprintf("JSON %s µs (%s B, %s allocs); XML %s µs (%s B, %s allocs)", us(m("nexo", "DecodePaymentRequest/json", "ns/op")), num(m("nexo", "DecodePaymentRequest/json", "B/op")), num(m("nexo", "DecodePaymentRequest/json", "allocs/op")), us(m("nexo", "DecodePaymentRequest/xml", "ns/op")), num(m("nexo", "DecodePaymentRequest/xml", "B/op")), num(m("nexo", "DecodePaymentRequest/xml", "allocs/op"))),
		},
		figure{
			what:     "Nexo PaymentResponse encode: XML ÷ JSON",
			ratio:    m("nexo", "EncodePaymentResponse/xml", "ns/op") / m("nexo", "EncodePaymentResponse/json", "ns/op"),
			absolute: fmt.Sprintf("JSON %s µs (%s B, %s allocs); XML %s µs (%s B, %s allocs)", us(m("nexo", "EncodePaymentResponse/json", "ns/op")), num(m("nexo", "EncodePaymentResponse/json", "B/op")), num(m("nexo", "EncodePaymentResponse/json", "allocs/op")), us(m("nexo", "EncodePaymentResponse/xml", "ns/op")), num(m("nexo", "EncodePaymentResponse/xml", "B/op")), num(m("nexo", "EncodePaymentResponse/xml", "allocs/op"))),
		},
	)
	const cliff, cliffSync = "BacklogCliff/freelist=bounded", "BacklogCliff/freelist=sync"
	if _, ok := r.find("store", cliff); ok {
		f = append(f, figure{
			what:     fmt.Sprintf("A payment's store writes (2 durable commits) after a drained backlog of %s records ÷ on a fresh store, p50, interleaved (the store never writes bbolt's free list)", num(m("store", cliff, "backlog"))),
			ratio:    m("store", cliff, "p50-ratio"),
			absolute: fmt.Sprintf("drained p50 %s µs, fresh %s µs; %s vs %s KiB written per payment; reopen %s ms (file %s MB); with the free list written on every commit (bbolt's default): ratio %s, %s KiB per payment", num(m("store", cliff, "drained-p50-µs")), num(m("store", cliff, "fresh-p50-µs")), num(m("store", cliff, "drained-KiB/payment")), num(m("store", cliff, "fresh-KiB/payment")), num(m("store", cliff, "reopen-ms")), num(m("store", cliff, "file-MB")), ratio(m("store", cliffSync, "p50-ratio")), num(m("store", cliffSync, "drained-KiB/payment"))),
			target:   "≤ 1.2",
			ok:       func(v float64) bool { return v <= 1.2 },
		})
	}
	const small, large = "LargeQueue/queued=10000", "LargeQueue/queued=1000000"
	if _, ok := r.find("store", large); ok {
		f = append(f,
			figure{
				what:     "Outbox with 1,000,000 queued records ÷ 10,000: anonymous RSS after reopen (the queue is not loaded into memory)",
				ratio:    m("store", large, "rss-anon-MB") / m("store", small, "rss-anon-MB"),
				absolute: fmt.Sprintf("10k: %s MB anon RSS, heap %s MB; 1M: %s MB anon RSS, heap %s MB, file %s MB; right after draining 2,000 (no forced GC): 10k %s MB RSS (%s anon), 1M %s MB RSS (%s anon)", num(m("store", small, "rss-anon-MB")), num(m("store", small, "heap-MB")), num(m("store", large, "rss-anon-MB")), num(m("store", large, "heap-MB")), num(m("store", large, "file-MB")), num(m("store", small, "rss-draining-MB")), num(m("store", small, "rss-anon-draining-MB")), num(m("store", large, "rss-draining-MB")), num(m("store", large, "rss-anon-draining-MB"))),
			},
			figure{
				what:     "Outbox with 1,000,000 queued records ÷ 10,000: reopen time",
				ratio:    m("store", large, "reopen-ms") / m("store", small, "reopen-ms"),
				absolute: fmt.Sprintf("10k: %s ms; 1M: %s ms (verified open %s ms); peek %s µs, list 100 %s ms, drain %s records/s", num(m("store", small, "reopen-ms")), num(m("store", large, "reopen-ms")), num(m("store", large, "verify-open-ms")), num(m("store", large, "peek-µs")), num(m("store", large, "list100-ms")), num(m("store", large, "drain-records/s"))),
			},
		)
	}
	return f
}

// Render writes BENCHMARKS.md.
func (r *Report) Render(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	mc := r.Machine
	p("# termagent benchmarks\n\n")
	p("Generated by `make bench` (`go run ./cmd/benchreport`); do not edit by hand.\n")
	if r.Quick {
		p("**Quick run (-quick): few iterations, figures are indicative only.**\n")
	}
	p("\n| | |\n|---|---|\n")
	p("| date | %s |\n| commit | %s |\n| CPU | %s |\n| cores | %d |\n| kernel | %s |\n| platform | %s |\n| Go | %s |\n| run time | %s |\n\n",
		mc.Date.UTC().Format("2006-01-02 15:04 MST"), mc.Commit, mc.CPU, mc.Cores, mc.Kernel, mc.OSArch, mc.Go, mc.Elapsed.Round(time.Second))
	p("Each figure is a ratio to a baseline measured in the same run on the same machine, so it\n")
	p("carries across machines better than the absolute values, which are given for reference.\n\n")

	p("## Headline figures\n\n| figure (÷ baseline) | ratio | absolute values | target |\n|---|---|---|---|\n")
	for _, f := range r.figures() {
		target := f.target
		if target != "" && !math.IsNaN(f.ratio) && f.ok != nil {
			target += " " + mark(f.ok(f.ratio))
		}
		p("| %s | **%s** | %s | %s |\n", f.what, ratio(f.ratio), f.absolute, dash(target))
	}

	r.renderFleets(p)
	if fp := r.Footprint; fp != nil {
		p("\n## A running agent\n\n")
		p("The linux/%s agent binary (stripped, as `make cross` builds it) against the simulated PPaaS\n", archOf(mc.OSArch))
		p("on loopback (mutual TLS, MQTT broker), measured from outside the process.\n\n")
		p("| figure | value | target |\n|---|---|---|\n")
		med := median(fp.Ready)
		p("| start to ready (exec → authenticated, listening, `/readyz` 200), median of %d starts | %s (min %s, max %s) | ≤ 1 s %s |\n",
			len(fp.Ready), ms(med), ms(slices.Min(fp.Ready)), ms(slices.Max(fp.Ready)), mark(med <= time.Second))
		rssMB := float64(fp.RSSKB) / 1024
		p("| idle RSS (VmRSS after %s idle) | %.1f MiB (peak %.1f MiB) | ≤ 25 MiB %s |\n", fp.IdleWindow, rssMB, float64(fp.HWMKB)/1024, mark(rssMB <= 25))
		cpuPct := 100 * fp.CPU.Seconds() / fp.IdleWindow.Seconds()
		p("| idle CPU (utime+stime over %s) | %s = %.2f %% of one core | ≈ 0 %s |\n", fp.IdleWindow, fp.CPU, cpuPct, mark(cpuPct < 0.5))
		p("| wake-ups while idle (context switches, all %d threads) | %d in %s (%.1f/s) | timers only |\n", fp.Threads, fp.Switches, fp.IdleWindow, float64(fp.Switches)/fp.IdleWindow.Seconds())
		if fp.Payments > 0 {
			p("| RSS after %d sequential payments (+2 s, no forced GC) | %.1f MiB (anonymous %.1f MiB) | |\n", fp.Payments, float64(fp.PaymentsRSSKB)/1024, float64(fp.PaymentsRSSAnonKB)/1024)
		}
		p("| stop (SIGTERM → exit, store flushed and closed) | %s | |\n", ms(fp.Stop))
		p("\nCPU time is read in clock ticks of 10 ms, so \"0s\" means under one tick in the window.\n")
	}

	r.renderHostile(p)
	r.renderCrashMatrix(p)

	if len(r.Sizes) > 0 {
		p("\n## Binary sizes\n\n`CGO_ENABLED=0 go build -trimpath -ldflags '-s -w …' ./cmd/agent` (what `make cross` builds).\n\n")
		p("| target | bytes | MiB | target |\n|---|---|---|---|\n")
		for _, s := range r.Sizes {
			t := ""
			if s.Target == "linux/arm64" {
				t = "≤ 15 MiB " + mark(s.Bytes <= maxArm64Bytes)
			}
			p("| %s | %d | %.1f | %s |\n", s.Target, s.Bytes, float64(s.Bytes)/(1<<20), dash(t))
		}
	}

	p("\n## Every benchmark\n\nAs `go test -bench` reported them (one run, `-benchmem`; a benchmark run several times shows its run with the median of its headline figure, with that figure's `-min`, `-max` and `runs`).\n\n| package | benchmark | iterations | figures |\n|---|---|---|---|\n")
	for _, res := range r.Results {
		var figs []string
		for _, m := range res.Metrics {
			figs = append(figs, num(m.Value)+" "+m.Unit)
		}
		p("| %s | %s | %d | %s |\n", res.Pkg, res.Name, res.N, strings.Join(figs, ", "))
	}
	took := "the run time above"
	if r.Machine.Elapsed > 0 {
		took = r.Machine.Elapsed.Round(time.Minute).String()
	}
	p("\n## Reproduce\n\n    make bench                                      # this file (%s on the machine above)\n    go run ./cmd/benchreport -quick -o /tmp/b.md    # a smoke run\n\n", took)
	p("Iteration counts per benchmark are in `cmd/benchreport/bench.go` (`plan`); benchmarks it does not\nname run with `-benchtime 1s`.\n")
}

const maxArm64Bytes = 15 << 20

func mark(ok bool) string {
	if ok {
		return "✅"
	}
	return "❌"
}

func dash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func archOf(osArch string) string {
	_, a, _ := strings.Cut(osArch, "/")
	return a
}

// num prints a figure with 3 significant digits, thousands grouped.
func num(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "n/a"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return group(fmt.Sprintf("%.0f", v))
	}
	mag := math.Floor(math.Log10(math.Abs(v)))
	decimals := max(0, int(2-mag))
	s := fmt.Sprintf("%.*f", decimals, v)
	if decimals == 0 {
		return group(s)
	}
	return s
}

func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteRune(' ')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// medianOf says which run of n a row's figures come from ("" for one run).
func medianOf(n float64) string {
	if math.IsNaN(n) || n <= 1 {
		return ""
	}
	return fmt.Sprintf(". The run with the median ratio of %.0f runs, each figure of that run", n)
}

// rangeOf is the range of a ratio over n runs ("" for one run).
func rangeOf(n, lo, hi float64) string {
	if math.IsNaN(n) || n <= 1 {
		return ""
	}
	return fmt.Sprintf("%.0f runs: %s–%s; ", n, ratio(lo), ratio(hi))
}

func ratio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", v)
}

func us(ns float64) string { return num(ns / 1e3) }

func ms(d time.Duration) string { return num(float64(d.Microseconds())/1e3) + " ms" }

// renderCrashMatrix is issue 10's proof: the agent binary killed at each
// durable-write boundary of each payment scenario, restarted and checked.
func (r *Report) renderCrashMatrix(p func(string, ...any)) {
	res, ok := r.find("cmd/agent", "CrashMatrix")
	if !ok {
		p("\n## Crash matrix\n\nnot run: BenchmarkCrashMatrix gave no result (it needs linux).\n")
		return
	}
	get := func(unit string) int { v, _ := res.Get(unit); return int(v) }
	p("\n## Crash matrix\n\n")
	p("crash matrix: %d scenarios × %d failpoints, %d cells run, %d killed at their failpoint, **%d violations**\n\n",
		get("scenarios"), get("failpoints"), get("cells"), get("killed"), get("violations"))
	p("Each cell runs the agent built with `-tags failpoints`, kills it (SIGKILL) at the named\n")
	p("durable-write boundary, restarts it, lets it settle and checks: every consumer charge is\n")
	p("refunded or reported Success through TransactionStatus, never both, at most one charge and\n")
	p("one refund per payment. A cell the scenario never reaches is not counted as killed\n")
	p("(`BenchmarkCrashMatrix`; `make crash` prints the matrix; CI runs a subset).\n")
}
