package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/store"
)

const queueUsage = `Usage: agent queue status|list|retry|purge-dead [flags]

Inspect and repair the outbox of a STOPPED agent (the store file is locked
while the agent runs).

  status      outbox depth, size, oldest record, dead letters, unfinished transactions
  list        records at the head of the outbox (or dead letters with -dead)
  retry       move dead letters back to the tail of the outbox (all, or the
              sequence numbers given: retry 12 13, or -seq 12,13)
  purge-dead  delete every dead letter (needs -yes)

A corrupted store file makes every command fail; add -recover to move the
damaged file aside (<file>.corrupt-<time>) and keep what can still be read.

Flags:
`

// runQueue implements `agent queue ...` on a stopped agent's data dir.
func runQueue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("agent queue", flag.ContinueOnError)
	fset.SetOutput(stderr)
	dataDir := fset.String("data-dir", agent.DefaultConfig().DataDir, "the agent's data directory (holds termagent.db)")
	doRecover := fset.Bool("recover", false, "if the store file is corrupted, move it aside and salvage what can be read")
	limit := fset.Int("limit", 50, "list: number of records to show")
	dead := fset.Bool("dead", false, "list: show dead letters instead of the outbox")
	seqs := fset.String("seq", "", "retry: comma-separated dead-letter sequence numbers (default: all)")
	yes := fset.Bool("yes", false, "purge-dead: confirm deleting the dead letters")
	asJSON := fset.Bool("json", false, "status, list: print JSON")
	cmd, err := subcommand(fset, args, queueUsage, stderr, "status, list, retry, purge-dead")
	if err != nil {
		return err
	}
	var positional []string
	if cmd == "retry" {
		// `agent queue retry 12 13` is `agent queue retry -seq 12,13`.
		for fset.NArg() > 0 {
			positional = append(positional, fset.Arg(0))
			if err := fset.Parse(fset.Args()[1:]); err != nil {
				return err
			}
		}
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("agent queue %s: unexpected arguments %q", cmd, fset.Args())
	}
	if len(positional) > 0 {
		if *seqs != "" {
			*seqs += ","
		}
		*seqs += strings.Join(positional, ",")
	}
	switch cmd {
	case "status", "list", "retry", "purge-dead":
	default:
		fset.Usage()
		return fmt.Errorf("agent queue: unknown command %q (want status, list, retry, purge-dead)", cmd)
	}
	if cmd == "purge-dead" && !*yes {
		return errors.New("agent queue purge-dead: this deletes every dead letter for good; add -yes to confirm")
	}
	var retrySeqs []uint64
	if cmd == "retry" && *seqs != "" {
		for _, f := range strings.Split(*seqs, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil {
				return fmt.Errorf("agent queue retry: bad -seq %q: %w", f, err)
			}
			retrySeqs = append(retrySeqs, n)
		}
	}

	st, err := openStopped(ctx, "agent queue", filepath.Join(*dataDir, "termagent.db"), *doRecover, stdout)
	if err != nil {
		return err
	}
	defer st.Close()

	switch cmd {
	case "status":
		return queueStatus(ctx, st, *asJSON, stdout)
	case "list":
		return queueList(ctx, st, *dead, *limit, *asJSON, stdout)
	case "retry":
		n, err := st.RetryDead(ctx, retrySeqs...)
		fmt.Fprintf(stdout, "moved %d dead letter(s) back to the outbox\n", n)
		if err != nil {
			return fmt.Errorf("agent queue retry: %w", err)
		}
	case "purge-dead":
		n, err := st.PurgeDead(ctx)
		if err != nil {
			return fmt.Errorf("agent queue purge-dead: %w", err)
		}
		fmt.Fprintf(stdout, "deleted %d dead letter(s)\n", n)
	}
	return st.Close()
}

// subcommand parses args for the command fset names, whose usage text is
// usage: flags may come before or after the subcommand, which it returns
// (want lists them for the error when none is given).
func subcommand(fset *flag.FlagSet, args []string, usage string, stderr io.Writer, want string) (string, error) {
	fset.Usage = func() {
		fmt.Fprint(stderr, usage)
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		return "", err
	}
	if fset.NArg() == 0 {
		fset.Usage()
		return "", fmt.Errorf("%s: missing command (%s)", fset.Name(), want)
	}
	cmd := fset.Arg(0)
	if err := fset.Parse(fset.Args()[1:]); err != nil {
		return "", err
	}
	return cmd, nil
}

// openStopped opens a stopped agent's existing store file for the command
// named cmd, with a full consistency check, recovering it first if asked to
// and it is corrupted.
func openStopped(ctx context.Context, cmd, path string, doRecover bool, stdout io.Writer) (*store.Store, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no store at %s (is -data-dir right?)", cmd, path)
	}
	opts := store.Options{
		LockTimeout:   time.Second,
		Verify:        true,
		PruneInterval: -1,
		Logger:        slog.New(slog.DiscardHandler),
	}
	st, err := store.Open(ctx, path, opts)
	if err == nil {
		if doRecover {
			fmt.Fprintln(stdout, "store file is healthy; nothing to recover")
		}
		return st, nil
	}
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%s: %w (stop the agent first)", cmd, err)
	}
	if !errors.Is(err, store.ErrCorrupt) || !doRecover {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	rep, rerr := store.Recover(path)
	if rerr != nil {
		return nil, fmt.Errorf("%s: recover: %w", cmd, rerr)
	}
	fmt.Fprintf(stdout, "damaged store moved to %s\n", rep.MovedTo)
	if !rep.Opened {
		fmt.Fprintln(stdout, "the damaged file could not be opened at all: nothing was salvaged; a fresh store was created")
	}
	for _, b := range sortedKeys(rep.Copied, rep.Skipped) {
		fmt.Fprintf(stdout, "  %-20s copied %d, unreadable %d\n", b, rep.Copied[b], rep.Skipped[b])
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(stdout, "  warning: %s\n", e)
	}
	st, err = store.Open(ctx, path, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: open recovered store: %w", cmd, err)
	}
	return st, nil
}

func sortedKeys(ms ...map[string]int) []string {
	set := map[string]bool{}
	for _, m := range ms {
		for k := range m {
			set[k] = true
		}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

type queueStatusJSON struct {
	Path                 string  `json:"path"`
	Depth                int64   `json:"depth"`
	Bytes                int64   `json:"bytes"`
	OldestAgeSeconds     float64 `json:"oldest_age_seconds"`
	Dead                 int64   `json:"dead"`
	DeadBytes            int64   `json:"dead_bytes"`
	MaxCount             int64   `json:"max_count"`
	MaxBytes             int64   `json:"max_bytes"`
	UnfinishedTxns       int     `json:"unfinished_transactions"`
	HeadSeq              uint64  `json:"head_seq,omitempty"`
	HeadAttempts         uint32  `json:"head_attempts,omitempty"`
	HeadLastError        string  `json:"head_last_error,omitempty"`
	HeadNextAttemptUnixS int64   `json:"head_next_attempt,omitempty"`
}

func queueStatus(ctx context.Context, st *store.Store, asJSON bool, stdout io.Writer) error {
	s := st.Stats()
	unf, err := st.UnfinishedTxns(ctx)
	if err != nil {
		return fmt.Errorf("agent queue status: %w", err)
	}
	// List, not Peek: status must not write (Peek dead-letters expired heads).
	heads, err := st.List(ctx, 1)
	if err != nil {
		return fmt.Errorf("agent queue status: %w", err)
	}
	var head store.Record
	hasHead := len(heads) == 1
	if hasHead {
		head = heads[0]
	}
	if asJSON {
		out := queueStatusJSON{Path: st.Path(), Depth: s.Depth, Bytes: s.Bytes, OldestAgeSeconds: s.OldestAge.Seconds(),
			Dead: s.Dead, DeadBytes: s.DeadBytes, MaxCount: s.MaxCount, MaxBytes: s.MaxBytes, UnfinishedTxns: len(unf)}
		if hasHead {
			out.HeadSeq, out.HeadAttempts, out.HeadLastError = head.Seq, head.Attempts, head.LastError
			if !head.NextAttempt.IsZero() {
				out.HeadNextAttemptUnixS = head.NextAttempt.Unix()
			}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "store\t%s\n", st.Path())
	fmt.Fprintf(tw, "outbox\t%d records, %d bytes (limits %d records, %d bytes for non-critical kinds)\n", s.Depth, s.Bytes, s.MaxCount, s.MaxBytes)
	fmt.Fprintf(tw, "oldest\t%s\n", s.OldestAge.Round(time.Second))
	if hasHead {
		line := fmt.Sprintf("seq %d %s, %d failed attempt(s)", head.Seq, head.Kind, head.Attempts)
		if !head.NextAttempt.IsZero() {
			line += ", next " + head.NextAttempt.Format(time.RFC3339)
		}
		if head.LastError != "" {
			line += ", last error: " + head.LastError
		}
		fmt.Fprintf(tw, "head\t%s\n", line)
	}
	fmt.Fprintf(tw, "dead letters\t%d records, %d bytes\n", s.Dead, s.DeadBytes)
	fmt.Fprintf(tw, "unfinished transactions\t%d\n", len(unf))
	return tw.Flush()
}

type recordJSON struct {
	Seq          uint64     `json:"seq"`
	Kind         string     `json:"kind"`
	Key          string     `json:"key"`
	Created      time.Time  `json:"created"`
	Attempts     uint32     `json:"attempts"`
	NextAttempt  *time.Time `json:"next_attempt,omitempty"`
	Expires      *time.Time `json:"expires,omitempty"`
	DeadAt       *time.Time `json:"dead_at,omitempty"`
	LastError    string     `json:"last_error,omitempty"`
	PayloadBytes int        `json:"payload_bytes"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func queueList(ctx context.Context, st *store.Store, dead bool, limit int, asJSON bool, stdout io.Writer) error {
	list := st.List
	if dead {
		list = st.ListDead
	}
	recs, err := list(ctx, max(limit, 0))
	if err != nil {
		return fmt.Errorf("agent queue list: %w", err)
	}
	if asJSON {
		out := make([]recordJSON, 0, len(recs))
		for _, r := range recs {
			out = append(out, recordJSON{Seq: r.Seq, Kind: r.Kind.String(), Key: r.Key.String(), Created: r.Created,
				Attempts: r.Attempts, NextAttempt: optTime(r.NextAttempt), Expires: optTime(r.Expires),
				DeadAt: optTime(r.DeadAt), LastError: r.LastError, PayloadBytes: len(r.Payload)})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tKIND\tKEY\tCREATED\tATTEMPTS\tBYTES\tLAST ERROR")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\n", r.Seq, r.Kind, r.Key, r.Created.Format(time.RFC3339),
			r.Attempts, len(r.Payload), r.LastError)
	}
	return tw.Flush()
}
