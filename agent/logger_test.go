package agent

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNilLoggerLogsNothing: a component given no logger is silent (not
// slog.Default's stderr); the binaries build the logger and pass it down.
func TestNilLoggerLogsNothing(t *testing.T) {
	f := NewForwarder(nil, nil, ForwarderConfig{}, nil)
	require.False(t, f.log.Enabled(t.Context(), slog.LevelError), "forwarder")
	require.NotPanics(t, func() { _ = sender{}.log() })
	require.False(t, sender{}.log().Enabled(t.Context(), slog.LevelError), "sender")
}
