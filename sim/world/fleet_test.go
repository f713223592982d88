package world_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/sim/world"
)

// TestFleetSmoke runs a small fleet against the embedded broker and against a
// real Mosquitto: every payment succeeds and is charged exactly once.
func TestFleetSmoke(t *testing.T) {
	tests := []struct {
		name      string
		mosquitto bool
	}{
		{"embedded broker", false},
		{"mosquitto", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			dir := t.TempDir()
			cfg := world.FleetConfig{Terminals: 20, Payments: 2, Dir: dir, Progress: testWriter{t}}
			if tc.mosquitto {
				if _, err := exec.LookPath("mosquitto"); err != nil {
					if _, err := exec.LookPath("/usr/sbin/mosquitto"); err != nil {
						t.Skip("mosquitto not installed (apt-get install mosquitto; .ci/run installs it)")
					}
				}
				certsDir := filepath.Join(dir, "certs")
				_, err := certs.Generate(certs.Options{Dir: certsDir})
				require.NoError(t, err)
				m, err := world.StartMosquitto(ctx, dir, certsDir)
				require.NoError(t, err)
				t.Cleanup(m.Close)
				cfg.MQTTURL = m.URL()
			}
			rep, err := world.RunFleet(ctx, cfg)
			require.NoError(t, err)
			t.Log("\n" + rep.String())
			require.Equal(t, 40, rep.Payments)
			require.Equal(t, 40, rep.Succeeded, "failures: %v", rep.Failures)
			require.Zero(t, rep.Lost, "lost payments")
			require.Zero(t, rep.Duplicated, "duplicated payments")
			require.Zero(t, rep.Unreported, "charges the POS was not told about")
			require.True(t, rep.OK())
			require.Positive(t, rep.PaymentsPerSecond)
			require.True(t, rep.Fsync, "the fleet's terminals fsync by default, as a terminal does")
			require.Positive(t, rep.HeapPerTerminal)
		})
	}
}

// testWriter logs the fleet's progress lines.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
