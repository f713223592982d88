package ppaas

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseCloudFrame(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{`{"type":"request","id":"R1","nexo":{"SaleToPOIServiceRequest":{}}}`, ""},
		{`{"type":"ack","id":"R1"}`, ""},
		{`{"type":"request","id":"R1"}`, "carries a Nexo message"},
		{`{"type":"request","id":"R1","nexo":"x"}`, "carries a Nexo message"},
		{`{"type":"ack","id":""}`, "id must be"},
		{`{"type":"ack","id":"` + strings.Repeat("x", MaxCloudIDLength+1) + `"}`, "id must be"},
		{`{"type":"bogus","id":"R1"}`, "unknown type"},
		{`not json`, "cloud frame"},
	} {
		_, err := ParseCloudFrame([]byte(tc.in))
		if tc.err == "" {
			require.NoError(t, err, tc.in)
		} else {
			require.ErrorContains(t, err, tc.err, tc.in)
		}
	}
}

func FuzzParseCloudFrame(f *testing.F) {
	f.Add([]byte(`{"type":"request","id":"R1","nexo":{"a":1}}`))
	f.Add([]byte(`{"type":"ack","id":"R1"}`))
	f.Add([]byte(`{"type":"answer","id":"R1","nexo":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseCloudFrame(b)
		if err != nil {
			return
		}
		if fr.ID == "" || len(fr.ID) > MaxCloudIDLength {
			t.Fatalf("accepted id %q", fr.ID)
		}
		if fr.Type == CloudRequest && !json.Valid(fr.Nexo) {
			t.Fatalf("accepted a request without a JSON message")
		}
	})
}
