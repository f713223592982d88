package agent

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClosestKey(t *testing.T) {
	known := knownKeys()
	tests := []struct{ in, want string }{
		{"paymnet_timeout", "payment_timeout"}, // transposition
		{"payment_timout", "payment_timeout"},  // deletion
		{"auth-url", "auth_url"},               // flag spelling in a file
		{"apiurl", "api_url"},
		{"cert", "cert"},
		{"nexo_listn", "nexo_listen"},
		{"frobnicate", ""},
		{"x", ""},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, closest(tc.in, known), tc.in)
	}
	require.Equal(t, 0, editDistance("", ""))
	require.Equal(t, 3, editDistance("abc", ""))
	require.Equal(t, 1, editDistance("ab", "ba"))
}

func TestFileJSONWritesEveryKey(t *testing.T) {
	b, err := DefaultConfig().FileJSON()
	require.NoError(t, err)
	for _, k := range knownKeys() {
		require.Contains(t, string(b), k+`": `, "key %s", k)
	}
	require.Contains(t, string(b), `"payment_timeout": "2m0s"`)
}
