package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// readmeCommands returns the shell commands of a README section's code
// blocks, in order: comments stripped, continuation lines joined.
func readmeCommands(readme, section string) ([]string, error) {
	start := strings.Index(readme, "\n## "+section+"\n")
	if start < 0 {
		return nil, fmt.Errorf("README has no section %q", section)
	}
	body := readme[start+1:]
	if end := strings.Index(body[3:], "\n## "); end >= 0 {
		body = body[:end+3]
	}
	var cmds []string
	inBlock, cont := false, ""
	for _, line := range strings.Split(body, "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			inBlock = !inBlock
			continue
		case !inBlock:
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if strings.HasSuffix(line, `\`) {
			cont += strings.TrimSuffix(line, `\`)
			continue
		}
		line, cont = cont+line, ""
		if line != "" {
			cmds = append(cmds, line)
		}
	}
	return cmds, nil
}

func TestReadmeCommands(t *testing.T) {
	cmds, err := readmeCommands("intro\n## Playing with the simulator\ntext\n```sh\nmake build\n./bin/sim up   # comment\n```\nmore\n```sh\ncurl -a \\\n  -b 'x'\n```\n## Next\n```sh\nnot this\n```\n", "Playing with the simulator")
	require.NoError(t, err)
	require.Equal(t, []string{"make build", "./bin/sim up", "curl -a -b 'x'"}, cmds)
}

// readmeStep says how a README command is run and judged: servers and
// commands that wait for someone else are left running once they print
// their marker; every other command must finish with status 0 and print
// what it is expected to.
var readmeSteps = []struct {
	prefix string
	server bool   // runs until stopped with Ctrl-C (stopped before the next server starts)
	marker string // printed once the command is ready / waiting for another shell
	expect string // in its output when it has finished
}{
	{prefix: "./bin/sim up", server: true, marker: "world is up"},
	{prefix: "./bin/sim serve", server: true, marker: "control API:"},
	{prefix: "./bin/sim pos pay", marker: "The consumer pays on the virtual terminal", expect: "Payment Response: Success"},
	{prefix: "./bin/sim consumer pay", expect: "is now approved"},
	{prefix: "./bin/sim pos status", expect: "TransactionStatus Response: Success"},
	{prefix: "./bin/sim pos refund", expect: "Reversal Response: Success"},
	{prefix: "./bin/sim pos diagnosis", expect: "Diagnosis Response: Success"},
	{prefix: "./bin/sim certs", expect: "wrote "},
	{prefix: "curl ", expect: `"clientId"`},
}

// TestReadmeWalkthrough runs the README's "Playing with the simulator"
// section as a new user would, command by command as written, each in its
// own tmux window (a real terminal): a hand-driven payment, its status, a
// refund, a diagnosis, then the PPaaS documentation's curl against sim serve.
// The one liberty: `make build` is `go build ./cmd/sim` into the same bin/.
func TestReadmeWalkthrough(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux not found (apt-get install tmux; .ci/run installs it): the README walkthrough test needs it")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (apt-get install curl): the README walkthrough runs the documentation's curl command")
	}
	// The README's commands use the default ports: they must be free.
	for _, port := range []string{"9021", "9080", "8883", "8443"} {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Skipf("port %s is busy, and the README's commands use it: %v", port, err)
		}
		ln.Close()
	}
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	cmds, err := readmeCommands(string(readme), "Playing with the simulator")
	require.NoError(t, err)

	dir := t.TempDir()
	build := []string{"build", "-o", filepath.Join(dir, "bin", "sim")}
	if raceEnabled {
		build = append(build, "-race")
	}
	if out, err := exec.Command("go", append(build, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	socket := fmt.Sprintf("termagent-readme-%d", os.Getpid())
	tm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-L", socket, "-f", "/dev/null"}, args...)...).CombinedOutput()
		require.NoError(t, err, "tmux %v: %s", args, out)
		return string(out)
	}
	tm("new-session", "-d", "-s", "readme", "-x", "250", "-y", "50", "-c", dir, "-n", "shell", "/bin/sh")
	t.Cleanup(func() { _ = exec.Command(tmux, "-L", socket, "kill-server").Run() })

	type window struct {
		name, cmd string
		step      int
	}
	screen := func(w window) string { return tm("capture-pane", "-p", "-J", "-S", "-1000", "-t", "readme:"+w.name) }
	exitRx := regexp.MustCompile(`\[exit (\d+)\]`)
	waitOutput := func(w window, what string, done func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			s := screen(w)
			if done(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("%q: waiting for %s; its terminal:\n%s", w.cmd, what, s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	finished := func(w window) {
		t.Helper()
		s := waitOutput(w, "it to finish", func(s string) bool { return exitRx.MatchString(s) })
		require.Equal(t, "0", exitRx.FindStringSubmatch(s)[1], "%q failed; its terminal:\n%s", w.cmd, s)
		if e := readmeSteps[w.step].expect; e != "" {
			require.Contains(t, s, e, "%q; its terminal:\n%s", w.cmd, s)
		}
	}
	var servers, waiting []window
	stopServers := func() {
		for _, w := range servers {
			tm("send-keys", "-t", "readme:"+w.name, "C-c")
			finished(w)
		}
		servers = nil
	}
	poiID := ""
	ran := map[int]bool{}
	for i, cmd := range cmds {
		if cmd == "make build" {
			continue // built above
		}
		step := -1
		for j, s := range readmeSteps {
			if strings.HasPrefix(cmd, s.prefix) {
				step = j
			}
		}
		require.NotEqual(t, -1, step, "README command %q: the test does not know how to judge it; add it to readmeSteps", cmd)
		ran[step] = true
		if strings.Contains(cmd, "<POI transaction id>") {
			require.NotEmpty(t, poiID, "%q needs the id an earlier pay printed", cmd)
			cmd = strings.ReplaceAll(cmd, "<POI transaction id>", poiID)
		}
		s := readmeSteps[step]
		if s.server {
			stopServers()
		}
		w := window{name: fmt.Sprintf("w%d", i), cmd: cmd, step: step}
		// A trap, not an ignore, so that Ctrl-C reaches the command and the
		// shell still reports how it exited.
		tm("new-window", "-d", "-t", "readme", "-n", w.name, "-c", dir, "/bin/sh", "-c", "trap true INT; "+cmd+`; echo "[exit $?]"; exec sleep 3600`)
		switch {
		case s.marker != "":
			out := waitOutput(w, s.marker, func(o string) bool { return strings.Contains(o, s.marker) || exitRx.MatchString(o) })
			require.Contains(t, out, s.marker, "%q", cmd)
			if m := regexp.MustCompile(`POI transaction:\s+(\S+)`).FindStringSubmatch(out); m != nil {
				poiID = m[1]
			}
			if s.server {
				servers = append(servers, w)
			} else {
				waiting = append(waiting, w)
			}
		default:
			finished(w)
			// What was waiting for this command finishes now.
			for _, p := range waiting {
				finished(p)
			}
			waiting = nil
		}
	}
	require.Empty(t, waiting, "commands left waiting at the end of the section")
	stopServers()
	for j, s := range readmeSteps {
		require.True(t, ran[j], "the README no longer runs %q: update readmeSteps", s.prefix)
	}
}
