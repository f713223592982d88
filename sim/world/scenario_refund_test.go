package world_test

import "testing"

// The refund scenarios (issue 14: each failed against the agent before
// refunds) run in CI with the money scenarios. Its name matches
// TestMoneyScenarioFiles|Scenario.
func TestRefundScenarioFiles(t *testing.T) { runScenarioFiles(t, scenarioFilesIn(t, "refund")) }
