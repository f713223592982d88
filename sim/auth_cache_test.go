package sim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The issuer caches tokens whose signature it has checked (an API call per
// device request would otherwise RSA-verify the same token again). A cached
// token must still be refused for everything that is not its signature:
// expiry on the simulator's clock, the platform expiring every token, and a
// token that differs by a byte is a different token.
func TestVerifiedTokenCacheStillRefuses(t *testing.T) {
	at := time.Now()
	now := func() time.Time { return at }
	i, err := newIssuer(time.Minute, now)
	require.NoError(t, err)
	dev := Device{Serial: "S1", Model: "DX8000", ClientID: "c1"}

	tok, _, err := i.issue(dev, "", "")
	require.NoError(t, err)
	c, err := i.verify(tok)
	require.NoError(t, err)
	require.Equal(t, "S1", c.Serial)
	again, err := i.verify(tok) // from the cache
	require.NoError(t, err)
	require.Equal(t, c.Serial, again.Serial)
	require.Len(t, i.verified, 1)

	tampered := tok[:len(tok)-2] + flip(tok[len(tok)-2]) + tok[len(tok)-1:]
	_, err = i.verify(tampered)
	require.Error(t, err, "a token that differs by a byte is verified, not taken from the cache")

	at = at.Add(2 * time.Minute)
	_, err = i.verify(tok)
	require.ErrorContains(t, err, "expired", "a cached token expires on the simulator's clock")

	at = at.Add(-2 * time.Minute)
	_, err = i.verify(tok)
	require.NoError(t, err)
	i.expireAll()
	_, err = i.verify(tok)
	require.ErrorContains(t, err, "expired by the platform", "a cached token is refused once the platform expired every token")
}

// The cache is bounded: a peer presenting ever new (valid) tokens never grows
// it past its bound.
func TestVerifiedTokenCacheIsBounded(t *testing.T) {
	i, err := newIssuer(time.Minute, time.Now)
	require.NoError(t, err)
	i.maxVerified = 8
	for n := range 3 * i.maxVerified {
		tok, _, err := i.issue(Device{Serial: "S", ClientID: "c"}, "", "")
		require.NoError(t, err)
		_, err = i.verify(tok)
		require.NoError(t, err, "token %d", n)
		require.LessOrEqual(t, len(i.verified), i.maxVerified)
	}
}

func flip(b byte) string {
	if b == 'A' {
		return "B"
	}
	return "A"
}
