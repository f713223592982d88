package agent

import "github.com/termagent/termagent/store"

// StoreDiskStats returns what the agent's store has written to its file so
// far (commits, fdatasyncs, pages, bytes), for benchmarks.
func (a *Agent) StoreDiskStats() store.DiskStats { return a.st.DiskStats() }

// OutboxStats returns the outbox's counters (records appended, acked,
// waiting ...), for benchmarks that wait for the agent's background
// deliveries to be over.
func (a *Agent) OutboxStats() store.OutboxStats { return a.st.Stats() }

// DeliveredRecords returns how many outbox records the forwarder has
// delivered and acknowledged since start, for the same benchmarks.
func (a *Agent) DeliveredRecords() int64 {
	if a.fwd == nil {
		return 0
	}
	return int64(a.fwd.Stats().Sent)
}
