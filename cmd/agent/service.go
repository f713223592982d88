package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
)

// The Windows service mode (service_windows.go) installs the agent with a command
// line that `agent service run` parses back; both halves live here so that they
// are tested together on every platform.

const defaultServiceName = "termagent"

// serviceRunArgs is what the Service Control Manager starts:
//
//	agent.exe service run -name NAME -log LOGFILE -dir WORKDIR -- AGENT FLAGS...
type serviceRunArgs struct {
	name    string   // the service's name in the SCM
	logFile string   // the agent's log: a service has no console
	dir     string   // working directory: relative paths in the config resolve here
	agent   []string // the agent's own flags (-config FILE ...)
}

func (a serviceRunArgs) commandLine() []string {
	return append([]string{"service", "run", "-name", a.name, "-log", a.logFile, "-dir", a.dir, "--"}, a.agent...)
}

func parseServiceRun(args []string, stderr io.Writer) (serviceRunArgs, error) {
	fs := flag.NewFlagSet("agent service run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a serviceRunArgs
	fs.StringVar(&a.name, "name", defaultServiceName, "service name")
	fs.StringVar(&a.logFile, "log", "", "log file (appended to)")
	fs.StringVar(&a.dir, "dir", "", "working directory (default: unchanged)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: agent service run [-name NAME] [-log FILE] [-dir DIR] [-- agent flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return a, err
	}
	a.agent = fs.Args()
	return a, nil
}

// serviceInstallArgs are the flags of `agent service install`.
type serviceInstallArgs struct {
	name, displayName, account string
	config, logFile            string
}

func parseServiceInstall(args []string, abs func(string) (string, error), stderr io.Writer) (serviceInstallArgs, error) {
	fs := flag.NewFlagSet("agent service install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a serviceInstallArgs
	fs.StringVar(&a.name, "name", defaultServiceName, "service name")
	fs.StringVar(&a.displayName, "display-name", "termagent device agent", "name shown in services.msc")
	fs.StringVar(&a.config, "config", "", "the agent's JSON configuration file (required); relative paths in it resolve from its directory")
	fs.StringVar(&a.logFile, "log", "", "log file (default: termagent.log beside the configuration)")
	fs.StringVar(&a.account, "account", "", `account the service runs as (default LocalSystem; for least privilege "NT AUTHORITY\LocalService", granted read access to the key and write access to the data directory)`)
	if err := fs.Parse(args); err != nil {
		return a, err
	}
	if fs.NArg() > 0 {
		return a, fmt.Errorf("agent service install: unexpected argument %q", fs.Arg(0))
	}
	if a.config == "" {
		return a, errors.New("agent service install: -config is required (a service starts in the system directory, so every path must be known)")
	}
	var err error
	if a.config, err = abs(a.config); err != nil {
		return a, fmt.Errorf("agent service install: -config: %w", err)
	}
	if a.logFile == "" {
		a.logFile = filepath.Join(filepath.Dir(a.config), "termagent.log")
	}
	if a.logFile, err = abs(a.logFile); err != nil {
		return a, fmt.Errorf("agent service install: -log: %w", err)
	}
	return a, nil
}

// run is the command line the SCM will start for this installation.
func (a serviceInstallArgs) run() serviceRunArgs {
	return serviceRunArgs{name: a.name, logFile: a.logFile, dir: filepath.Dir(a.config), agent: []string{"-config", a.config}}
}
