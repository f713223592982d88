package qr

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
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

// checkPayload validates payload against the capacity of level l cheaply,
// before any rendering.
func checkPayload(payload string, l Level) error {
	if _, err := l.recovery(); err != nil {
		return err
	}
	if payload == "" {
		return errors.New("encode qr: empty payload")
	}
	if l == "" {
		l = LevelMedium
	}
	if n := len(payload); n > maxPayload[l] {
		return fmt.Errorf("encode qr: %w: %d bytes, level %s holds at most %d", ErrPayloadTooLarge, n, l, maxPayload[l])
	}
	return nil
}

func encode(payload string, l Level) (*qrcode.QRCode, error) {
	if err := checkPayload(payload, l); err != nil {
		return nil, err
	}
	rl, _ := l.recovery()
	q, err := qrcode.New(payload, rl)
	if err != nil {
		return nil, fmt.Errorf("encode qr: %w", err)
	}
	return q, nil
}

// PNG renders payload as a PNG image of size×size pixels (a size smaller than
// the symbol gives four pixels per module).
func PNG(payload string, l Level, size int) ([]byte, error) {
	q, err := encode(payload, l)
	if err != nil {
		return nil, err
	}
	return pngOf(q, size)
}

func pngOf(q *qrcode.QRCode, size int) ([]byte, error) {
	return pngFrom(q.Bitmap(), size)
}

// pngFrom draws a bitmap (quiet zone included) as a size×size black-on-white
// PNG. go-qrcode's own Image and PNG re-run the whole encoding (mask
// selection included) on every call and compress at the best level, which
// together cost milliseconds on the payment path.
func pngFrom(bm [][]bool, size int) ([]byte, error) {
	n := len(bm)
	if size < n {
		size = 4 * n
	}
	img := image.NewPaletted(image.Rect(0, 0, size, size), color.Palette{color.White, color.Black})
	for y := range size {
		row := bm[y*n/size]
		line := img.Pix[y*img.Stride : y*img.Stride+size]
		for x := range line {
			if row[x*n/size] {
				line[x] = 1
			}
		}
	}
	var b bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&b, img); err != nil {
		return nil, fmt.Errorf("render qr png: %w", err)
	}
	return b.Bytes(), nil
}

type rendered struct {
	png  []byte
	text string
}

// renderBoth encodes payload once and renders both forms the display uses.
func renderBoth(payload string, l Level, size int) (rendered, error) {
	q, err := encode(payload, l)
	if err != nil {
		return rendered{}, err
	}
	bm := q.Bitmap()
	b, err := pngFrom(bm, size)
	if err != nil {
		return rendered{}, err
	}
	return rendered{png: b, text: textFrom(bm)}, nil
}

// Text renders payload for a terminal with half-block characters, two module
// rows per text line, dark modules drawn as spaces on a light background so it
// scans on dark and light terminal themes alike when the quiet zone is kept.
func Text(payload string, l Level) (string, error) {
	q, err := encode(payload, l)
	if err != nil {
		return "", err
	}
	return textOf(q), nil
}

func textOf(q *qrcode.QRCode) string { return textFrom(q.Bitmap()) }

// textFrom draws a bitmap (quiet zone included) with half blocks.
func textFrom(bm [][]bool) string {
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
	return sb.String()
}
