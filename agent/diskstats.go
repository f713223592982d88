package agent

import "github.com/termagent/termagent/store"

// StoreDiskStats returns what the agent's store has written to its file so
// far (commits, fdatasyncs, pages, bytes), for benchmarks.
func (a *Agent) StoreDiskStats() store.DiskStats { return a.st.DiskStats() }
