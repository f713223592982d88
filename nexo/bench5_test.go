package nexo

import (
	"os"
	"testing"
)

// BenchmarkCodecV5vs3 decodes the golden payment request and encodes the
// golden payment response in each envelope, in the same run, so the v5 cost
// reads as a ratio to 3.x JSON.
func BenchmarkCodecV5vs3(b *testing.B) {
	for _, tc := range []struct {
		name, dir string
		codec     Codec
	}{{"3.x", "golden", JSONCodec{}}, {"v5", "golden5", JSON5Codec{Now: newTestClock().Now}}} {
		req, err := os.ReadFile("testdata/" + tc.dir + "/02_payment.request.json")
		if err != nil {
			b.Fatal(err)
		}
		rb, err := os.ReadFile("testdata/" + tc.dir + "/02_payment.response.json")
		if err != nil {
			b.Fatal(err)
		}
		resp, err := tc.codec.DecodeResponse(rb)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("decode-request/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.codec.DecodeRequest(req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("encode-response/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.codec.EncodeResponse(resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
