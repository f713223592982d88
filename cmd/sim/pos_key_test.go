package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/internal/testrig/worldrig"
)

// TestPOSKeyVersionDefaultIsTheAgents: with the same key identifier and
// passphrase on both sides and neither version given, sim pos and the agent
// agree (sim pos used to default to version 1 and the agent to 0: the POI
// answered "unknown KeyIdentifier or KeyVersion").
func TestPOSKeyVersionDefaultIsTheAgents(t *testing.T) {
	const keyID, pass = "SpecV1TestKey", "test passphrase"
	w, _ := worldrig.Start(t, worldrig.Agent(func(c *agent.Config) {
		c.NexoKeyIdentifier, c.NexoPassphrase = keyID, pass
	}))
	t.Setenv("TERMAGENT_NEXO_PASSPHRASE", pass)
	out, err := runOut(t, "pos", "diagnosis", "-url", w.Agent.NexoURL(), "-ca", w.Config.CA, "-control", "", "-poiid", w.Agent.POIID(), "-key-id", keyID)
	require.NoError(t, err, out)
	require.Contains(t, out, "Diagnosis Response: Success")
}
