// Package worldrig starts a simulated world (world.StartWorld) for a test: a
// temporary directory, loopback ports, a store without fsync and a forwarder that
// retries in milliseconds, all stopped when the test ends.
package worldrig

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
	"github.com/termagent/termagent/store"
)

// Start starts a world and returns it with a POS driver addressing its agent.
// mod, if not nil, adjusts the configuration after the test defaults.
func Start(t testing.TB, mod func(*world.WorldConfig)) (*world.World, *world.POS) {
	t.Helper()
	cfg := world.WorldConfig{
		Dir:   t.TempDir(),
		PPaaS: sim.Config{Addr: "127.0.0.1:0"},
		AgentConfig: func(c *agent.Config) {
			c.PaymentTimeout = 20 * time.Second
			c.EventWait = 2 * time.Second
		},
		AgentOptions: agent.Options{
			StoreOptions: store.Options{NoSync: true}, // durability has its own crash tests
			Forwarder:    agent.ForwarderConfig{BaseDelay: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond, SendTimeout: 5 * time.Second},
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, err := world.StartWorld(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, w.Close(ctx))
	})
	c, err := w.POS()
	require.NoError(t, err)
	return w, &world.POS{Client: c, POIID: w.Agent.POIID()}
}

// Agent returns a WorldConfig modifier that applies f to the agent's
// configuration after the defaults.
func Agent(f func(*agent.Config)) func(*world.WorldConfig) {
	return func(cfg *world.WorldConfig) {
		prev := cfg.AgentConfig
		cfg.AgentConfig = func(c *agent.Config) {
			if prev != nil {
				prev(c)
			}
			f(c)
		}
	}
}
