package nexo

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"
)

func BenchmarkDecodePaymentRequest(b *testing.B) {
	for _, tc := range []struct {
		name  string
		codec Codec
	}{{"json", JSONCodec{}}, {"xml", XMLCodec{}}} {
		b.Run(tc.name, func(b *testing.B) {
			body, err := os.ReadFile("testdata/golden/02_payment.request." + tc.name)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.codec.DecodeRequest(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodePaymentResponse(b *testing.B) {
	for _, tc := range []struct {
		name  string
		codec Codec
	}{{"json", JSONCodec{}}, {"xml", XMLCodec{}}} {
		b.Run(tc.name, func(b *testing.B) {
			body, err := os.ReadFile("testdata/golden/02_payment.response." + tc.name)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := tc.codec.DecodeResponse(body)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.codec.EncodeResponse(resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDiagnosisE2E measures a local Diagnosis over HTTPS on loopback
// against a bare Go HTTPS echo handler in the same run, alternating the two
// so that both see the same machine state. It reports p50/p99 of each and
// their ratios.
func BenchmarkDiagnosisE2E(b *testing.B) {
	srvTLS, cliTLS := testTLS(b)
	env := startServer(b, ServerConfig{TLSConfig: srvTLS}, nil)

	echo := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}),
		TLSConfig:         srvTLS,
		ReadHeaderTimeout: 5 * time.Second,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = echo.ServeTLS(ln, "", "") }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = echo.Shutdown(ctx)
	})
	echoURL := "https://" + ln.Addr().String() + "/nexo"

	body, err := JSONCodec{}.EncodeRequest(diagnosisReq("B1"))
	if err != nil {
		b.Fatal(err)
	}
	newClient := func() *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cliTLS, MaxIdleConnsPerHost: 1}}
	}
	nexoHC, echoHC := newClient(), newClient()
	post := func(hc *http.Client, url string) time.Duration {
		start := time.Now()
		resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	// Warm both connections (TLS handshakes) outside the measurement.
	post(nexoHC, env.url)
	post(echoHC, echoURL)

	var nexoD, echoD []time.Duration
	b.ResetTimer()
	for b.Loop() {
		nexoD = append(nexoD, post(nexoHC, env.url))
		echoD = append(echoD, post(echoHC, echoURL))
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) float64 {
		slices.Sort(d)
		return float64(d[int(float64(len(d)-1)*p)].Nanoseconds()) / 1e3
	}
	n50, n99 := pct(nexoD, 0.50), pct(nexoD, 0.99)
	e50, e99 := pct(echoD, 0.50), pct(echoD, 0.99)
	b.ReportMetric(n50, "nexo-p50-µs")
	b.ReportMetric(n99, "nexo-p99-µs")
	b.ReportMetric(e50, "echo-p50-µs")
	b.ReportMetric(e99, "echo-p99-µs")
	if e50 > 0 && e99 > 0 {
		b.ReportMetric(n50/e50, "p50-ratio")
		b.ReportMetric(n99/e99, "p99-ratio")
	}
}
