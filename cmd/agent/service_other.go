//go:build !windows

package main

import (
	"context"
	"errors"
	"io"
)

// errWindowsOnly answers `agent service` outside Windows.
var errWindowsOnly = errors.New("agent service: the service mode is Windows-only (Service Control Manager); on Linux run 'agent run' under systemd (deploy/termagent.service)")

func runService(context.Context, []string, func(string) string, io.Writer, io.Writer) error {
	return errWindowsOnly
}
