package store

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNilLoggerLogsNothing: a store opened without a Logger is silent, like
// every termagent component given none (not slog.Default's stderr).
func TestNilLoggerLogsNothing(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	require.False(t, s.log.Enabled(t.Context(), slog.LevelError))
}
