package world_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/sim/world"
)

// TestParseScenarioScanSteps: the scan fields are checked like every other.
func TestParseScenarioScanSteps(t *testing.T) {
	for name, tc := range map[string]struct{ json, want string }{
		"terminal scan before a pay": {`{"name":"x","steps":[{"scan":"1234"}]}`, `step 1 (scan): field "scan"`},
		"scan on another pos step": {`{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB"},{"pos":"status","scan":"1"}]}`,
			`step 2 (pos status): field "scan"`},
		"scanError without a scan": {`{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB","scanError":"x"}]}`,
			`field "scanError"`},
		"scan and consumer": {`{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB"},{"scan":"1","consumer":"pay"}]}`,
			"does one thing"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := world.ParseScenario([]byte(tc.json))
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := world.ParseScenario([]byte(`{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KBSCAN","scan":"1234"},{"await":"awaiting_scan"},{"scan":"1","scanError":"no payment"}]}`))
	require.NoError(t, err)
}
