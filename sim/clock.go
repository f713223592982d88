package sim

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"
)

// AgentClock is an in-process agent's local wall clock: the real clock plus an
// offset that tests and scenarios change at run time, as an RTC reset or an
// NTP step would. Readings keep the monotonic clock, shifted by the offset,
// so a jump shows in both wall time and measured durations.
type AgentClock struct {
	offset atomic.Int64 // nanoseconds
}

// Now is the agent's local time.
func (c *AgentClock) Now() time.Time { return time.Now().Add(c.Offset()) }

// Set makes the clock read real time plus d (0: real time again).
func (c *AgentClock) Set(d time.Duration) { c.offset.Store(int64(d)) }

// Jump moves the clock by d (negative: back) from where it is.
func (c *AgentClock) Jump(d time.Duration) { c.offset.Add(int64(d)) }

// Offset is the clock's distance from real time.
func (c *AgentClock) Offset() time.Duration { return time.Duration(c.offset.Load()) }

// Duration is a time.Duration written as a Go duration string ("250ms", "2s").
type Duration time.Duration

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"250ms\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// D is the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
