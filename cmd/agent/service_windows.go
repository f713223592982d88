//go:build windows

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/termagent/termagent/agent"
)

// stopWait is what the agent is given to stop: its Nexo server lets the payment
// in flight finish for up to 15 s, then the store is flushed and closed.
const stopWait = 30 * time.Second

func runService(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: agent service run|install|uninstall [flags]")
	}
	switch args[0] {
	case "run":
		return serviceRun(ctx, args[1:], getenv, stderr)
	case "install":
		return serviceInstall(args[1:], getenv, stdout, stderr)
	case "uninstall":
		return serviceUninstall(args[1:], stdout, stderr)
	}
	return fmt.Errorf("agent service: unknown command %q (want run, install, uninstall)", args[0])
}

// serviceRun is started by the Service Control Manager.
func serviceRun(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	ra, err := parseServiceRun(args, stderr)
	if err != nil {
		return err
	}
	inService, err := svc.IsWindowsService()
	if err != nil {
		return fmt.Errorf("agent service run: %w", err)
	}
	if !inService {
		return errors.New("agent service run: not started by the Service Control Manager; use 'agent run' in a console, or 'agent service install'")
	}
	if ra.dir != "" {
		if err := os.Chdir(ra.dir); err != nil {
			return fmt.Errorf("agent service run: %w", err)
		}
	}
	logOut := io.Discard
	if ra.logFile != "" {
		f, err := os.OpenFile(ra.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("agent service run: open log: %w", err)
		}
		defer f.Close()
		logOut = f
	}
	h := &serviceHandler{run: func(sctx context.Context) error {
		err := run(sctx, ra.agent, getenv, io.Discard, logOut)
		if err != nil {
			fmt.Fprintln(logOut, "agent:", err)
		}
		return err
	}, ctx: ctx}
	return svc.Run(ra.name, h)
}

// serviceHandler runs the agent until the SCM asks it to stop, then cancels its
// context (the agent's graceful shutdown) and reports StopPending until it ends.
type serviceHandler struct {
	ctx context.Context
	run func(context.Context) error
}

// Execute implements svc.Handler.
func (h *serviceHandler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (svcSpecificEC bool, exitCode uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.run(ctx) }()
	current := svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	status <- current
	for {
		select {
		case err := <-done:
			status <- svc.Status{State: svc.StopPending}
			if err != nil && ctx.Err() == nil {
				// Stopped on its own: a service-specific exit code makes the
				// SCM apply the recovery actions (restart).
				return true, 1
			}
			return false, 0
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- current
			case svc.Stop, svc.Shutdown:
				current = svc.Status{State: svc.StopPending, WaitHint: uint32(stopWait / time.Millisecond)}
				status <- current
				cancel()
			}
		}
	}
}

func serviceInstall(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ia, err := parseServiceInstall(args, filepath.Abs, stderr)
	if err != nil {
		return err
	}
	// Refuse to install a configuration the agent would refuse at start.
	cfg, _, err := agent.LoadConfig("agent", []string{"-config", ia.config}, getenv, stderr)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("agent service install: %w", err)
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("agent service install: connect to the Service Control Manager (run as administrator): %w", err)
	}
	defer m.Disconnect()
	if s, err := m.OpenService(ia.name); err == nil {
		s.Close()
		return fmt.Errorf("agent service install: service %s already exists; uninstall it first", ia.name)
	}
	s, err := m.CreateService(ia.name, exe, mgr.Config{
		DisplayName:      ia.displayName,
		Description:      "termagent: PPaaS device agent serving Nexo Retailer requests from the POS",
		StartType:        mgr.StartAutomatic,
		DelayedAutoStart: true, // after the network is up
		ServiceStartName: ia.account,
	}, ia.run().commandLine()...)
	if err != nil {
		return fmt.Errorf("agent service install: %w", err)
	}
	defer s.Close()
	// Restart after a failure: 5 s, then 30 s, then every minute; the count
	// resets after a day without failure.
	if err := s.SetRecoveryActions([]mgr.RecoveryAction{
		{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
		{Type: mgr.ServiceRestart, Delay: time.Minute},
	}, 24*60*60); err != nil {
		return fmt.Errorf("agent service install: recovery actions: %w", err)
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("agent service install: recovery actions: %w", err)
	}
	fmt.Fprintf(stdout, "service %s installed (automatic start); log: %s\nstart it with: sc start %s\n", ia.name, ia.logFile, ia.name)
	return nil
}

func serviceUninstall(args []string, stdout, stderr io.Writer) error {
	ra, err := parseServiceRun(args, stderr) // only -name is meaningful here
	if err != nil {
		return err
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("agent service uninstall: connect to the Service Control Manager (run as administrator): %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(ra.name)
	if err != nil {
		return fmt.Errorf("agent service uninstall: service %s: %w", ra.name, err)
	}
	defer s.Close()
	if st, err := s.Query(); err == nil && st.State != svc.Stopped {
		if _, err := s.Control(svc.Stop); err != nil {
			return fmt.Errorf("agent service uninstall: stop %s: %w", ra.name, err)
		}
		deadline := time.Now().Add(stopWait + 5*time.Second)
		for st.State != svc.Stopped {
			if time.Now().After(deadline) {
				return fmt.Errorf("agent service uninstall: %s did not stop within %s", ra.name, stopWait)
			}
			time.Sleep(300 * time.Millisecond) // the SCM offers no notification here
			if st, err = s.Query(); err != nil {
				return fmt.Errorf("agent service uninstall: %w", err)
			}
		}
	}
	if err := s.Delete(); err != nil {
		return fmt.Errorf("agent service uninstall: %w", err)
	}
	fmt.Fprintf(stdout, "service %s removed\n", ra.name)
	return nil
}
