package display_test

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/display"
)

// drawing is a QR code that counts its drawings.
type drawing struct {
	png   []byte
	err   error
	drawn int
}

func (d *drawing) PNG() ([]byte, error) {
	d.drawn++
	return d.png, d.err
}

func TestScreenJSONForm(t *testing.T) {
	golden, err := os.ReadFile("testdata/screen.json")
	require.NoError(t, err)
	s := display.Screen{
		Serial:              "220597303201181723869389",
		State:               "awaiting_consumer",
		Message:             "Scan to pay",
		Amount:              2000,
		Currency:            "EUR",
		TransactionID:       "qr-4f1c",
		ClientTransactionID: "EGQNN0XB82",
		QRPayload:           "https://pay.example/qr/4f1c",
		QRPNG:               []byte("\x89PNG"),
		Time:                time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC),
		QR:                  &drawing{png: []byte("never in the JSON")},
	}
	b, err := json.MarshalIndent(s, "", "  ")
	require.NoError(t, err)
	require.JSONEq(t, string(golden), string(b), "the display protocol's field names are fixed: remote displays and the virtual terminal page read them")

	var back display.Screen
	require.NoError(t, json.Unmarshal(golden, &back))
	s.QR = nil
	require.Equal(t, s, back)
}

func TestScreenJSONOmitsWhatIsNotShown(t *testing.T) {
	// What the agent posts for a POS message: no serial (the remote display
	// knows it from its URL), no payment fields.
	b, err := json.Marshal(display.Screen{State: display.Message, Message: "Hello", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	require.NoError(t, err)
	require.JSONEq(t, `{"state":"message","message":"Hello","time":"2026-01-02T03:04:05Z"}`, string(b))
}

func TestScreenDrawn(t *testing.T) {
	t.Run("draws the QR code into QRPNG once", func(t *testing.T) {
		d := &drawing{png: []byte("png")}
		s, err := display.Screen{State: "awaiting_consumer", QRPayload: "p", QR: d}.Drawn()
		require.NoError(t, err)
		require.Equal(t, []byte("png"), s.QRPNG)
		require.Nil(t, s.QR)
		s, err = s.Drawn()
		require.NoError(t, err)
		require.Equal(t, 1, d.drawn, "a drawn screen is not drawn again")
		require.Equal(t, []byte("png"), s.QRPNG)
	})
	t.Run("a screen without a QR code is unchanged", func(t *testing.T) {
		in := display.Screen{State: "approved", Message: "Payment approved"}
		s, err := in.Drawn()
		require.NoError(t, err)
		require.Equal(t, in, s)
	})
	t.Run("a QR code that cannot be drawn is an error", func(t *testing.T) {
		_, err := display.Screen{QR: &drawing{err: errors.New("payload too long")}}.Drawn()
		require.ErrorContains(t, err, "draw QR code: payload too long")
	})
}
