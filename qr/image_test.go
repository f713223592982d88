package qr

import (
	"bytes"
	"image"
	"image/png"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/termagent/termagent/ppaas"
)

func pngOfSize(t *testing.T, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))))
	return b.Bytes()
}

func TestShowableImageOnly(t *testing.T) {
	good, err := PNG("https://pay.example/p/1", LevelMedium, 128)
	require.NoError(t, err)
	img, err := showable(&ppaas.QRCode{ImagePNG: good}, LevelMedium, 256)
	require.NoError(t, err)
	got, err := img.PNG()
	require.NoError(t, err)
	require.Equal(t, good, got, "the provider's image is shown as sent")
	text, err := img.Text()
	require.NoError(t, err)
	require.Empty(t, text)

	for name, q := range map[string]*ppaas.QRCode{
		"nothing":     {},
		"not a png":   {ImagePNG: []byte("GIF89a")},
		"huge pixels": {ImagePNG: pngOfSize(t, 4096, 16)},
		"huge bytes":  {ImagePNG: append(append([]byte{}, good...), make([]byte, maxImageBytes)...)},
	} {
		_, err := showable(q, LevelMedium, 256)
		require.Error(t, err, name)
	}
	withPayload, err := showable(&ppaas.QRCode{Payload: "https://pay.example/p/2"}, LevelMedium, 256)
	require.NoError(t, err)
	text, err = withPayload.Text()
	require.NoError(t, err)
	require.NotEmpty(t, text)
}

func FuzzCheckImage(f *testing.F) {
	good, _ := PNG("x", LevelMedium, 64)
	f.Add(good)
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _ = CheckImage(b) })
}
