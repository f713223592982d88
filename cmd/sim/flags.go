package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/termagent/termagent/agent"
)

// parseInterspersed parses fs's flags wherever they appear among args, so
// `sim pos pay 5 EUR -brand PENNYMATIC` and `sim pos -brand PENNYMATIC pay 5 EUR`
// mean the same; it returns the positional arguments in order. A lone "--"
// ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag.Parse stops at the first positional argument or after "--".
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// progName is how the user invoked this binary ("./bin/sim", "sim"), so the
// commands it suggests can be pasted as they are.
func progName() string {
	if len(os.Args) > 0 && filepath.Base(os.Args[0]) == "sim" {
		return os.Args[0]
	}
	return "sim"
}

// newLogger is the text logger of the simulator's commands at level ("" or
// "off": none), with one component attribute per line (agent/nexo, not
// component=agent component=nexo).
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	if level == "" || level == "off" {
		return slog.New(slog.DiscardHandler), nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	return slog.New(agent.NestComponents(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))), nil
}
