package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/termagent/termagent/sim/world"
)

// runScenarios runs scenario files (sim run scenarios/*.json), each in a fresh
// world on loopback, and fails if any of them does.
func runScenarios(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: sim run [flags] scenario.json...\n\nRuns each scenario (POS requests, consumer actions, faults, expected outcomes) against a fresh simulated world.\nThe format is documented on world.Scenario; examples are in scenarios/.\n\nFlags:")
		fs.PrintDefaults()
	}
	quiet := fs.Bool("q", false, "print only the verdict of each scenario, not its steps")
	check := fs.Bool("check", false, "only parse and validate the files")
	logLevel := fs.String("log-level", "", "log the world (simulator and agent) at this level to stderr; default: no log")
	files, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		fs.Usage()
		return errors.New("no scenario file given")
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	var failed []string
	passed := 0
	defer func() {
		fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, len(failed))
	}()
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		sc, err := world.ParseScenario(data)
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %s\n  %v\n", file, err)
			failed = append(failed, file)
			continue
		}
		if *check {
			fmt.Fprintf(stdout, "ok   %s (%d steps)\n", file, len(sc.Steps))
			passed++
			continue
		}
		dir, err := os.MkdirTemp("", "termagent-scenario-")
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "RUN  %s: %s\n", filepath.Base(file), sc.Name)
		var progress io.Writer = stdout
		if *quiet {
			progress = nil
		}
		start := time.Now()
		err = world.RunScenario(ctx, sc, world.ScenarioOptions{Dir: dir, Progress: progress, Logger: log})
		_ = os.RemoveAll(dir)
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %s (%s)\n  %v\n", file, took, err)
			failed = append(failed, file)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		fmt.Fprintf(stdout, "ok   %s (%s)\n", file, took)
		passed++
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d scenarios failed: %v", len(failed), len(files), failed)
	}
	return nil
}
