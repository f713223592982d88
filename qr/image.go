package qr

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"

	"github.com/termagent/termagent/ppaas"
)

// Image-only QR codes (issue 14): a provider may return the code as an image
// (qrCode.imagePng) without its text. The image comes from a peer, so it is
// checked before it reaches the display.

// Limits of a provider's QR image.
const (
	maxImageBytes = 512 << 10
	maxImageSide  = 2048
)

// ErrBadImage: a provider's QR image cannot be shown.
var ErrBadImage = errors.New("qr image unusable")

// CheckImage reports whether b is a PNG the display can show: at most 512 KiB
// and 2048×2048 pixels.
func CheckImage(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", ErrBadImage)
	}
	if len(b) > maxImageBytes {
		return fmt.Errorf("%w: %d bytes (at most %d)", ErrBadImage, len(b), maxImageBytes)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%w: not a PNG: %v", ErrBadImage, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > maxImageSide || cfg.Height > maxImageSide {
		return fmt.Errorf("%w: %d×%d pixels (at most %d)", ErrBadImage, cfg.Width, cfg.Height, maxImageSide)
	}
	return nil
}

// showable returns the QR image to display for q, or why it cannot be shown.
// A payload is rendered (the provider's image, if any, is preferred); an
// image alone is shown as it is.
func showable(q *ppaas.QRCode, l Level, size int) (*QRImage, error) {
	if q.Payload == "" && len(q.ImagePNG) > 0 {
		if err := CheckImage(q.ImagePNG); err != nil {
			return nil, err
		}
		return &QRImage{level: l, size: size, png: q.ImagePNG, imageOnly: true}, nil
	}
	if err := checkPayload(q.Payload, l); err != nil {
		return nil, err
	}
	return NewQRImage(q.Payload, l, size, q.ImagePNG), nil
}
