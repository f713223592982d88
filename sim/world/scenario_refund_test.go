package world_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/sim/world"
)

func refundScenarioFiles(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join("..", "..", "scenarios", "refund", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no scenario files in scenarios/refund")
	return files
}

// The refund scenarios (issue 14: each failed against the agent before
// refunds) run in CI with the money scenarios. Its name matches
// TestMoneyScenarioFiles|Scenario.
func TestRefundScenarioFiles(t *testing.T) {
	for _, f := range refundScenarioFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			sc, err := world.ParseScenario(data)
			require.NoError(t, err)
			t.Parallel()
			var progress bytes.Buffer
			err = world.RunScenario(t.Context(), sc, world.ScenarioOptions{Dir: t.TempDir(), Progress: &progress})
			require.NoError(t, err, "progress:\n%s", progress.String())
		})
	}
}
