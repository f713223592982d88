package agent

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
)

// TestNilLoggerLogsNothing: a component given no logger is silent (not
// slog.Default's stderr, and no panic); the binaries build the logger and pass
// it down.
func TestNilLoggerLogsNothing(t *testing.T) {
	f := NewForwarder(nil, nil, ForwarderConfig{}, nil)
	require.False(t, f.log.Enabled(t.Context(), slog.LevelError), "forwarder")
	require.False(t, sender{}.log().Enabled(t.Context(), slog.LevelError), "sender")

	dir := t.TempDir()
	_, err := certs.Generate(certs.Options{Dir: dir})
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.Cert, cfg.Key, cfg.CA = filepath.Join(dir, certs.ClientCertFile), filepath.Join(dir, certs.ClientKeyFile), filepath.Join(dir, certs.BundleFile)
	cfg.DataDir, cfg.NexoListen, cfg.NexoPlainHTTP = t.TempDir(), "127.0.0.1:0", true
	var a *Agent
	require.NotPanics(t, func() { a, err = New(cfg, Build{Version: "test"}, nil, Options{}) })
	require.NoError(t, err)
	require.False(t, a.log.Enabled(t.Context(), slog.LevelError), "agent")
}
