package nexo

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDeliverEventClientIsBounded: without a configured client an event's
// delivery is bounded (http.DefaultClient has no timeout: a POS that accepts
// the connection and never answers would hold the notifier forever).
func TestDeliverEventClientIsBounded(t *testing.T) {
	c := eventClient(nil)
	require.NotSame(t, http.DefaultClient, c)
	require.Equal(t, defaultEventTimeout, c.Timeout)
	require.LessOrEqual(t, c.Timeout, 10*time.Second)

	own := &http.Client{Timeout: time.Second}
	require.Same(t, own, eventClient(own), "a configured client is used as it is")

	var cfg ServerConfig
	cfg.setDefaults()
	require.Equal(t, defaultEventTimeout, cfg.EventClient.Timeout, "the server's default event client is the same bounded one")
}
