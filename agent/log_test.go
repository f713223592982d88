package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNestComponentsKeepsOneComponentAttribute(t *testing.T) {
	tests := []struct {
		name string
		log  func(*slog.Logger) *slog.Logger
		want string
	}{
		{"repeated", func(l *slog.Logger) *slog.Logger { return l.With("component", "nexo").With("component", "nexo") }, "component=nexo k=v"},
		{"nested", func(l *slog.Logger) *slog.Logger {
			return l.With("component", "agent").With("a", 1).With("component", "nexo", "b", 2)
		}, "component=agent/nexo a=1 b=2 k=v"},
		{"nested then repeated", func(l *slog.Logger) *slog.Logger {
			return l.With("component", "agent").With("component", "nexo").With("component", "nexo")
		}, "component=agent/nexo k=v"},
		{"none", func(l *slog.Logger) *slog.Logger { return l.With("x", "y") }, "x=y k=v"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			l := NewLogger(Config{LogLevel: "info", LogFormat: "text"}, &b)
			tc.log(l).Info("m", "k", "v")
			line := strings.TrimSpace(b.String())
			require.True(t, strings.HasSuffix(line, "msg=m "+tc.want), line)
		})
	}
	var b bytes.Buffer
	NewLogger(Config{LogLevel: "warn", LogFormat: "json"}, &b).With("component", "a").With("component", "b").Info("hidden")
	require.Empty(t, b.String(), "levels still apply")
}
