package world

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/termagent/termagent/sim"
)

// ExpectPOSEvent checks the EventNotifications the POS received at its event
// URL (issue 14: after-sale updates) about payment ServiceID (default the
// last pay): exactly Count of them (default 1) of type Event with every one of
// Details in their EventDetails, still Count after Hold (default 1 s), so a
// notification delivered twice fails.
//
//	{"expectPOSEvent": {"event": "Completed", "details": ["Update=charged_back", "Amount=15.00"]}, "serviceId": "T1"}
type ExpectPOSEvent struct {
	Event   string       `json:"event,omitempty"`
	Details []string     `json:"details,omitempty"`
	Count   *int         `json:"count,omitempty"`
	Hold    sim.Duration `json:"hold,omitempty"`
}

func validateExpectPOSEvent(e *ExpectPOSEvent, bad func(field, format string, args ...any)) {
	if e.Count != nil && *e.Count < 0 {
		bad("count", "must not be negative")
	}
	if e.Hold < 0 {
		bad("hold", "must not be negative")
	}
	for i, d := range e.Details {
		if d == "" {
			bad(fmt.Sprintf("details[%d]", i), "is empty")
		}
	}
}

// expectPOSEvent waits (up to the step's timeout, default 10 s) for the
// notifications s expects, then holds the count for e.Hold.
func (r *scenarioRun) expectPOSEvent(ctx context.Context, s *Step) error {
	e := s.ExpectPOSEvent
	sid := s.ServiceID
	if sid == "" {
		sid = r.last
	}
	want := 1
	if e.Count != nil {
		want = *e.Count
	}
	hold := e.Hold.D()
	if hold == 0 {
		hold = time.Second
	}
	if s.Timeout == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second+hold)
		defer cancel()
	}
	parts := append([]string{"ServiceID=" + sid + "&"}, e.Details...)
	count := func() int { return len(r.w.POSEvents.Matching(e.Event, parts...)) }
	describe := func() string {
		var all []string
		for _, ev := range r.w.POSEvents.Events() {
			all = append(all, ev.Event.EventToNotify+" "+ev.Event.EventDetails)
		}
		if len(all) == 0 {
			return "none"
		}
		return strings.Join(all, "; ")
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var since time.Time
	for {
		got := count()
		switch {
		case got != want:
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= hold:
			for _, ev := range r.w.POSEvents.Matching(e.Event, parts...) {
				r.detail("POS event %s: %s", ev.Event.EventToNotify, ev.Event.EventDetails)
			}
			return nil
		}
		if got > want {
			return fmt.Errorf("the POS received %d %s notifications for payment %s with %v, want %d (received: %s)", got, orAny(e.Event), sid, e.Details, want, describe())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the POS received %d %s notifications for payment %s with %v, want %d (received: %s)", got, orAny(e.Event), sid, e.Details, want, describe())
		case <-tick.C:
		}
	}
}

func orAny(event string) string {
	if event == "" {
		return "EventNotification"
	}
	return event
}
