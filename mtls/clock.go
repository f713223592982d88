package mtls

import (
	"net/http"
	"sync"
	"time"
)

// Clock is the agent's view of platform time: the local clock corrected by the
// offset observed in server Date headers. A local clock that reads earlier than the
// build date is known to be wrong (terminals boot with a reset RTC), so until a
// server has been heard from, Now never returns earlier than the build date.
type Clock struct {
	local     func() time.Time
	buildTime time.Time

	mu     sync.Mutex
	offset time.Duration
	synced bool
}

// NewClock returns a Clock; local defaults to time.Now.
func NewClock(buildTime time.Time, local func() time.Time) *Clock {
	if local == nil {
		local = time.Now
	}
	return &Clock{local: local, buildTime: buildTime}
}

// Local is the uncorrected local time, for measuring durations (it carries the
// monotonic reading).
func (c *Clock) Local() time.Time { return c.local() }

// Now is the best estimate of the platform's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	off, synced := c.offset, c.synced
	c.mu.Unlock()
	now := c.local().Add(off)
	if !synced && now.Before(c.buildTime) {
		return c.buildTime
	}
	return now
}

// Offset is the correction applied to the local clock and whether a server has been
// heard from.
func (c *Clock) Offset() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset, c.synced
}

// ObserveResponse records the server's Date header. Date has one-second resolution,
// so differences under two seconds are treated as no skew.
func (c *Clock) ObserveResponse(resp *http.Response) {
	d, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return
	}
	c.Observe(d)
}

// Observe records one reading of the server's clock.
func (c *Clock) Observe(server time.Time) {
	diff := server.Sub(c.local())
	if diff > -2*time.Second && diff < 2*time.Second {
		diff = 0
	}
	c.mu.Lock()
	c.offset, c.synced = diff, true
	c.mu.Unlock()
}
