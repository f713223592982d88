package qr

import (
	"errors"
	"fmt"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// Level is the QR error-correction level.
type Level string

const (
	LevelLow      Level = "L" // 7 % recovery
	LevelMedium   Level = "M" // 15 %, the default
	LevelQuartile Level = "Q" // 25 %
	LevelHigh     Level = "H" // 30 %
)

// maxPayload is the byte capacity of a version 40 QR code in byte mode per level.
var maxPayload = map[Level]int{LevelLow: 2953, LevelMedium: 2331, LevelQuartile: 1663, LevelHigh: 1273}

// ErrPayloadTooLarge is returned (wrapped) when a payload cannot fit in a QR code.
var ErrPayloadTooLarge = errors.New("qr payload too large")

func (l Level) recovery() (qrcode.RecoveryLevel, error) {
	switch l {
	case LevelLow:
		return qrcode.Low, nil
	case LevelMedium, "":
		return qrcode.Medium, nil
	case LevelQuartile:
		return qrcode.High, nil // go-qrcode calls 25 % "High"
	case LevelHigh:
		return qrcode.Highest, nil
	}
	return 0, fmt.Errorf("qr error-correction level %q is not L, M, Q or H", string(l))
}

func encode(payload string, l Level) (*qrcode.QRCode, error) {
	rl, err := l.recovery()
	if err != nil {
		return nil, err
	}
	if payload == "" {
		return nil, errors.New("encode qr: empty payload")
	}
	if l == "" {
		l = LevelMedium
	}
	if n := len(payload); n > maxPayload[l] {
		return nil, fmt.Errorf("encode qr: %w: %d bytes, level %s holds at most %d", ErrPayloadTooLarge, n, l, maxPayload[l])
	}
	q, err := qrcode.New(payload, rl)
	if err != nil {
		return nil, fmt.Errorf("encode qr: %w", err)
	}
	return q, nil
}

// PNG renders payload as a PNG image of size×size pixels (size ≤ 0 lets the
// library pick a few pixels per module).
func PNG(payload string, l Level, size int) ([]byte, error) {
	q, err := encode(payload, l)
	if err != nil {
		return nil, err
	}
	if size <= 0 {
		size = -4 // go-qrcode: negative means pixels per module
	}
	b, err := q.PNG(size)
	if err != nil {
		return nil, fmt.Errorf("render qr png: %w", err)
	}
	return b, nil
}

// Text renders payload for a terminal with half-block characters, two module
// rows per text line, dark modules drawn as spaces on a light background so it
// scans on dark and light terminal themes alike when the quiet zone is kept.
func Text(payload string, l Level) (string, error) {
	q, err := encode(payload, l)
	if err != nil {
		return "", err
	}
	bm := q.Bitmap() // includes the quiet zone
	var sb strings.Builder
	for y := 0; y < len(bm); y += 2 {
		for x := range bm[y] {
			top := bm[y][x]
			bottom := y+1 < len(bm) && bm[y+1][x]
			switch {
			case top && bottom:
				sb.WriteRune(' ')
			case top:
				sb.WriteRune('▄')
			case bottom:
				sb.WriteRune('▀')
			default:
				sb.WriteRune('█')
			}
		}
		sb.WriteByte('\n')
	}
	return sb.String(), nil
}
