package qr

import (
	"bytes"
	"image/png"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPNG(t *testing.T) {
	for _, l := range []Level{"", LevelLow, LevelMedium, LevelQuartile, LevelHigh} {
		b, err := PNG("https://pay.kb.sim.ppaas.test/p/qr-1", l, 256)
		require.NoError(t, err, l)
		img, err := png.Decode(bytes.NewReader(b))
		require.NoError(t, err)
		require.Equal(t, 256, img.Bounds().Dx())
	}
}

func TestText(t *testing.T) {
	s, err := Text("hello", LevelLow)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	// Version 1 is 21 modules plus a 4-module quiet zone each side: 29 columns,
	// 29 rows drawn two per line.
	require.Len(t, lines, 15)
	for _, l := range lines {
		require.Equal(t, 29, len([]rune(l)))
		require.NotContains(t, l, "?")
	}
	require.True(t, strings.HasPrefix(lines[0], "█████"), "quiet zone is light")
}

func TestRenderErrors(t *testing.T) {
	_, err := PNG(strings.Repeat("x", 2332), LevelMedium, 0)
	require.ErrorIs(t, err, ErrPayloadTooLarge)
	require.Contains(t, err.Error(), "2331")
	_, err = Text(strings.Repeat("x", 1274), LevelHigh)
	require.ErrorIs(t, err, ErrPayloadTooLarge)
	_, err = PNG(strings.Repeat("x", 2900), LevelLow, 0)
	require.NoError(t, err)
	_, err = PNG("x", "Z", 0)
	require.ErrorContains(t, err, "not L, M, Q or H")
	_, err = Text("", LevelLow)
	require.Error(t, err)
}
