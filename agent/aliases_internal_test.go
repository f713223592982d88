package agent

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// An id queued is remembered until maxQueuedAliases others were queued
// after it (news flushes the journal for it until then), never longer than
// twice that.
func TestQueuedAliasesKeepTheLastOnes(t *testing.T) {
	var q queuedAliases
	require.False(t, q.has("a"))
	q.add("a")
	q.add("a") // each step of a payment names its alias again
	require.True(t, q.has("a"))
	for i := range maxQueuedAliases {
		q.add(fmt.Sprint(i))
		require.True(t, q.has("a"), "after %d others", i+1)
	}
	for i := range maxQueuedAliases {
		q.add(fmt.Sprint("b", i))
	}
	require.False(t, q.has("a"), "forgotten after twice the bound")
	require.True(t, q.has(fmt.Sprint("b", maxQueuedAliases-1)))

	var nilDesk *afterSale
	nilDesk.aliasQueued("x") // a journal without an after-sale desk
}
