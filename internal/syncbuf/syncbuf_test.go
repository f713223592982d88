package syncbuf

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBuffer(t *testing.T) {
	var b Buffer
	_, _ = b.Write([]byte("ab"))
	_, _ = b.Write([]byte("cd"))
	require.Equal(t, "abcd", b.String())

	capped := Buffer{Max: 4}
	for range 3 {
		n, err := capped.Write([]byte("xyz"))
		require.NoError(t, err)
		require.Equal(t, 3, n, "a writer is never told to stop")
	}
	require.True(t, strings.HasPrefix(capped.String(), "xyz"))
	require.Len(t, capped.String(), 6, "writes stop once Max is reached")
}
