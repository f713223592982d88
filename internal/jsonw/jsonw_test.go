package jsonw

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func marshal(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

var stringCases = []string{
	"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "tab\tnl\ncr\rbs\bff\f",
	"\x00\x01\x1f\x7f", "é ü 日本 🎉", "line\u2028sep\u2029para", "bad \xff utf8 \xc3", "\xed\xa0\x80 surrogate",
	"trailing \xe2\x82", "\u2027\u202a", "a\x00b",
}

func TestStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range stringCases {
		require.Equal(t, marshal(t, s), string(String(nil, s)), "%q", s)
	}
}

func TestStringsMatchesEncodingJSON(t *testing.T) {
	for _, ss := range [][]string{nil, {}, {"a"}, stringCases} {
		require.Equal(t, marshal(t, ss), string(Strings(nil, ss)))
	}
}

func TestIntMatchesEncodingJSON(t *testing.T) {
	for _, n := range []int64{0, 1, -1, 42, 1 << 62, -1 << 63} {
		require.Equal(t, marshal(t, n), string(Int(nil, n)))
	}
}

func TestTimeMatchesEncodingJSON(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	odd := time.FixedZone("odd", -(9*3600 + 30*60 + 7))
	for _, tm := range []time.Time{
		{}, time.Now(), time.Now().UTC(), time.Date(2026, 3, 1, 10, 1, 0, 0, paris),
		time.Date(2026, 3, 1, 10, 1, 0, 120_000_000, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, odd),
		time.Date(0, 1, 1, 0, 0, 0, 1, time.UTC),
	} {
		got, ok := Time(nil, tm)
		require.True(t, ok, "%v", tm)
		require.Equal(t, marshal(t, tm), string(got), "%v", tm)
	}
	for _, tm := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 24*3600)),
	} {
		_, err := json.Marshal(tm)
		require.Error(t, err, "json.Marshal refuses %v", tm)
		got, ok := Time([]byte("x"), tm)
		require.False(t, ok, "%v", tm)
		require.Equal(t, "x", string(got), "b unchanged")
	}
}

func FuzzString(f *testing.F) {
	for _, s := range stringCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		require.Equal(t, string(want), string(String([]byte("prefix"), s))[len("prefix"):])
	})
}

func FuzzTime(f *testing.F) {
	f.Add(int64(0), int64(0), 0)
	f.Add(int64(1772355660), int64(123456789), 3600)
	f.Add(int64(253402300799), int64(999999999), -34207)
	f.Fuzz(func(t *testing.T, sec, nsec int64, off int) {
		tm := time.Unix(sec, nsec).In(time.FixedZone("z", off))
		want, err := json.Marshal(tm)
		got, ok := Time(nil, tm)
		require.Equal(t, err == nil, ok, "%v: %v", tm, err)
		if ok {
			require.Equal(t, string(want), string(got))
		}
	})
}
