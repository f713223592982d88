package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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

// countingHandler counts the WithAttrs calls it gets (formatting work, in
// slog's own handlers).
type countingHandler struct {
	slog.Handler
	withAttrs *atomic.Int64
}

func (c countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c.withAttrs.Add(1)
	return countingHandler{c.Handler.WithAttrs(as), c.withAttrs}
}

// A logger derived on the payment path for lines it rarely writes costs no
// formatting until it writes one; what it writes is unchanged, from any
// number of goroutines at once.
func TestNestComponentsFormatsAttributesOnlyWhenWriting(t *testing.T) {
	var b syncBuffer
	n := new(atomic.Int64)
	root := countingHandler{slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelInfo}), n}
	l := slog.New(NestComponents(root)).With("component", "agent").With("component", "qr", "event_id", "e1")
	l.Debug("below the level")
	require.Zero(t, n.Load(), "attributes formatted for a logger that wrote nothing")
	require.Empty(t, b.String())

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { l.Info("m", "k", "v") })
	}
	wg.Wait()
	require.Equal(t, int64(2), n.Load(), "formatted once: the component, then the other attributes")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 8)
	for _, line := range lines {
		require.True(t, strings.HasSuffix(line, "msg=m component=agent/qr event_id=e1 k=v"), line)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
