package qr

import "testing"

const benchPayload = "https://pay.kb.sim.ppaas.test/p/qr-8f1c7a52-3f7e-4a0e-9a8c-0b5d8c1e2f3a"

func BenchmarkEncode(b *testing.B) {
	for b.Loop() {
		if _, err := encode(benchPayload, LevelMedium); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRender(b *testing.B) {
	for b.Loop() {
		if _, err := renderBoth(benchPayload, LevelMedium, 256); err != nil {
			b.Fatal(err)
		}
	}
}
