package store

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func sampleRecords() []Record {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 123, time.UTC)
	return []Record{
		{Seq: 1, Kind: KindReceipt},
		{Seq: 2, Kind: KindTransactionResult, Key: uuid.MustParse("0f8fad5b-d9cb-469f-a165-70867728950e"),
			Payload: []byte(`{"result":"Success","amount":1250}`), Created: t0, Attempts: 3,
			NextAttempt: t0.Add(time.Minute), Expires: t0.Add(7 * 24 * time.Hour), LastError: "503 Service Unavailable"},
		{Seq: 3, Kind: KindAdvice, Created: t0, DeadAt: t0.Add(time.Hour), LastError: "expired", Payload: make([]byte, 300)},
		{Seq: 1 << 63, Kind: KindNexoEvent, Created: time.Unix(0, -5).UTC(), Attempts: 1<<32 - 1},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range sampleRecords() {
		got, err := decodeRecord(r.Seq, encodeRecord(&r))
		require.NoError(t, err)
		require.Equal(t, r, got)
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	valid := encodeRecord(&sampleRecords()[1])
	tests := map[string][]byte{
		"empty":          nil,
		"wrong version":  append([]byte{2}, valid[1:]...),
		"truncated key":  valid[:10],
		"truncated tail": valid[:len(valid)-1],
		"trailing bytes": append(append([]byte(nil), valid...), 0),
		"huge length":    append(append([]byte(nil), valid[:len(valid)-len(`{"result":"Success","amount":1250}`)-1]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := decodeRecord(1, b)
			require.ErrorIs(t, err, ErrBadRecord)
		})
	}
}

func TestKindNames(t *testing.T) {
	for k := KindTransactionResult; k <= kindMax; k++ {
		got, err := ParseKind(k.String())
		require.NoError(t, err)
		require.Equal(t, k, got)
	}
	_, err := ParseKind("unknown")
	require.Error(t, err)
	require.True(t, KindTransactionResult.Critical())
	require.True(t, KindAdvice.Critical())
	require.False(t, KindReceipt.Critical())
	require.Equal(t, "kind(42)", Kind(42).String())
}

// FuzzDecodeRecord checks that the decoder never panics or over-allocates
// on arbitrary bytes (a damaged file), and that whatever it accepts
// re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(encodeRecord(&r))
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(7, b)
		if err != nil {
			return
		}
		again, err := decodeRecord(7, encodeRecord(&r))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		require.Equal(t, r, again)
	})
}
