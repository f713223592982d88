// Command testreport runs `go test -json` with its arguments and prints what
// `go test` prints (each package's result, the output of failing tests, build
// errors) as it comes, then the tests that were skipped with their reasons,
// and the command that installs the tools the skipped integration tests
// needed. `make test` runs it, so a missing tool never hides a test silently.
//
// Usage: go run ./cmd/testreport [go test flags] [packages]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"sort"
	"strings"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.CommandContext(ctx, goBin, append([]string{"test", "-json"}, args...)...)
	cmd.Stderr = stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(stderr, "testreport:", err)
		return 2
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "testreport:", err)
		return 2
	}
	rep := newReport(stdout)
	rerr := rep.read(pipe)
	werr := cmd.Wait()
	rep.flush("")
	rep.summary()
	var ee *exec.ExitError
	switch {
	case rerr != nil:
		fmt.Fprintln(stderr, "testreport: reading go test's output:", rerr)
		return 2
	case errors.As(werr, &ee):
		return ee.ExitCode()
	case werr != nil:
		fmt.Fprintln(stderr, "testreport:", werr)
		return 2
	case rep.failed:
		return 1
	}
	return 0
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type skip struct{ pkg, test, reason string }

type report struct {
	w      io.Writer
	out    map[string][]string // a running test's output, by package and test
	skips  []skip
	failed bool
}

func newReport(w io.Writer) *report { return &report{w: w, out: map[string][]string{}} }

func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(r.w, sc.Text()) // not an event: pass it through
			continue
		}
		r.event(e)
	}
	return sc.Err()
}

func (r *report) event(e event) {
	key := e.Package + " " + e.Test
	switch {
	case e.Action == "build-output":
		fmt.Fprint(r.w, e.Output)
	case e.Action == "build-fail":
		r.failed = true
	case e.Test == "" && e.Action == "output":
		// The package's own lines: "ok  pkg 1.2s", "FAIL pkg", panics.
		if o := strings.TrimSpace(e.Output); o != "PASS" && o != "FAIL" {
			fmt.Fprint(r.w, e.Output)
		}
	case e.Test == "" && e.Action == "fail":
		r.failed = true
		r.flush(e.Package)
	case e.Action == "output":
		r.out[key] = append(r.out[key], e.Output)
	case e.Action == "fail":
		fmt.Fprint(r.w, strings.Join(r.out[key], ""))
		delete(r.out, key)
	case e.Action == "skip":
		r.skips = append(r.skips, skip{e.Package, e.Test, skipReason(r.out[key])})
		delete(r.out, key)
	case e.Action == "pass":
		delete(r.out, key)
	}
}

// flush prints the output of pkg's tests that never finished (the test
// binary crashed or timed out under them): it says where it stopped.
func (r *report) flush(pkg string) {
	var keys []string
	for k := range r.out {
		if strings.HasPrefix(k, pkg+" ") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprint(r.w, strings.Join(r.out[k], ""))
		delete(r.out, k)
	}
}

// skipReason is what the test said when it skipped (its log lines).
func skipReason(lines []string) string {
	var reason []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		// "    file_test.go:36: reason" → "reason"
		if i := strings.Index(t, ": "); i > 0 && strings.Contains(t[:i], "_test.go:") {
			t = t[i+2:]
		}
		reason = append(reason, t)
	}
	if len(reason) == 0 {
		return "(no reason given)"
	}
	return strings.Join(reason, " ")
}

// tools are the optional programs the integration tests need, with the
// Debian package that provides each.
var tools = []struct {
	match *regexp.Regexp
	pkg   string
}{
	{regexp.MustCompile(`(?i)\bmosquitto\b`), "mosquitto"},
	{regexp.MustCompile(`(?i)\bchromium\b`), "chromium"},
	{regexp.MustCompile(`(?i)\bqemu`), "qemu-user-static"},
	{regexp.MustCompile(`(?i)\bcurl\b`), "curl"},
	{regexp.MustCompile(`(?i)\btmux\b`), "tmux"},
	{regexp.MustCompile(`(?i)\bgit\b`), "git"},
}

var missing = regexp.MustCompile(`(?i)not (found|installed)|install `)

func (r *report) summary() {
	if len(r.skips) == 0 {
		return
	}
	sort.Slice(r.skips, func(i, j int) bool {
		return r.skips[i].pkg+" "+r.skips[i].test < r.skips[j].pkg+" "+r.skips[j].test
	})
	var needTool, byDesign []skip
	var pkgs []string
	for _, s := range r.skips {
		found := false
		if missing.MatchString(s.reason) {
			for _, t := range tools {
				if t.match.MatchString(s.reason) {
					found = true
					if !slices.Contains(pkgs, t.pkg) {
						pkgs = append(pkgs, t.pkg)
					}
				}
			}
		}
		if found {
			needTool = append(needTool, s)
		} else {
			byDesign = append(byDesign, s)
		}
	}
	list := func(ss []skip) {
		for _, s := range ss {
			fmt.Fprintf(r.w, "  %s %s: %s\n", strings.TrimPrefix(s.pkg, "github.com/termagent/termagent/"), s.test, s.reason)
		}
	}
	if len(needTool) > 0 {
		fmt.Fprintf(r.w, "\nSKIPPED for a missing tool (%d): these integration tests did not run\n", len(needTool))
		list(needTool)
		sort.Strings(pkgs)
		fmt.Fprintf(r.w, "Install what they need with:  sudo apt-get install -y %s\n(or run .ci/run, which installs them and then runs make test)\n", strings.Join(pkgs, " "))
	}
	if len(byDesign) > 0 {
		fmt.Fprintf(r.w, "\nskipped by design (%d): helper processes, other systems, long runs\n", len(byDesign))
		list(byDesign)
	}
}
