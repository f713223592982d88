package agent

import "github.com/termagent/termagent/store"

// StoreDiskStats returns what the agent's store has written to its file so
// far (commits, fdatasyncs, pages, bytes), for benchmarks.
func (a *Agent) StoreDiskStats() store.DiskStats { return a.st.DiskStats() }

// ForwarderSent returns how many outbox records the forwarder has delivered
// and acknowledged so far, for benchmarks that must not measure anything
// else while it works.
func (a *Agent) ForwarderSent() int64 { return a.fwd.Stats().Sent }
