package qr

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// A failing event ends the session the first maxSessionEnds times only;
// once applied its count is forgotten; the counts are bounded.
func TestOneFailingEventEndsAtMostThreeSessions(t *testing.T) {
	s := &Subscriber{}
	poison := []byte(`{"eventId":"e1"}`)
	for i := range maxSessionEnds {
		require.True(t, s.endSessionFor(poison), "failure %d ends the session", i+1)
	}
	require.False(t, s.endSessionFor(poison), "then it stays unacked and the session goes on")
	require.True(t, s.endSessionFor([]byte(`{"eventId":"e2"}`)), "another event's first failure still ends one")
	s.applied(poison)
	require.True(t, s.endSessionFor(poison), "applied: its count starts again")
	for i := range 2 * maxEndedTracked {
		s.endSessionFor(fmt.Appendf(nil, `{"eventId":"x%d"}`, i))
	}
	require.LessOrEqual(t, len(s.ended), maxEndedTracked, "bounded")
}
