package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/ppaas"
)

// BenchmarkRelayThroughput measures the Retail API relay with many devices
// connected at once (RELAY_DEVICES, default 1,000): POS messages spread over
// one session per device, 64 in flight, each relayed over that device's
// websocket to a device that answers at once. It measures the relay (routing,
// websocket framing, acknowledgements) on plain loopback HTTP: TLS and the
// device token are checked once per connection, not per message, so they are
// left out.
func BenchmarkRelayThroughput(b *testing.B) {
	devices := 1000
	if v, err := strconv.Atoi(os.Getenv("RELAY_DEVICES")); err == nil && v > 0 {
		devices = v
	}
	dir := b.TempDir()
	if _, err := certs.Generate(certs.Options{Dir: dir}); err != nil {
		b.Fatal(err)
	}
	p, err := New(Config{CertsDir: dir, Addr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	rt := p.retail
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bench/relay", func(w http.ResponseWriter, r *http.Request) {
		d := Device{Serial: r.URL.Query().Get("serial"), Model: "BENCH"}
		rt.handleRelay(w, r.WithContext(context.WithValue(r.Context(), deviceKey{}, d)))
	})
	mux.Handle("/", p.mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); close(p.closing); wg.Wait() }()

	answer := []byte(`{"SaleToPOIServiceResponse":{"ok":true}}`)
	for i := range devices {
		conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/bench/relay?serial=B"+strconv.Itoa(i), nil)
		if err != nil {
			b.Fatalf("device %d: %v", i, err)
		}
		wg.Add(1)
		go func() { // the device: answers every request at once
			defer wg.Done()
			defer conn.CloseNow()
			for {
				_, msg, err := conn.Read(ctx)
				if err != nil {
					return
				}
				f, err := ppaas.ParseCloudFrame(msg)
				if err != nil || f.Type != ppaas.CloudRequest {
					continue
				}
				out, _ := json.Marshal(ppaas.CloudFrame{Type: ppaas.CloudAnswer, ID: f.ID, Nexo: answer})
				if conn.Write(ctx, websocket.MessageText, out) != nil {
					return
				}
			}
		}()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var sessions []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		rt.mu.Lock()
		n := 0
		for _, d := range rt.devices {
			if d.conn != nil {
				n++
			}
		}
		rt.mu.Unlock()
		if n == devices {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d devices connected", n, devices)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range devices {
		body := fmt.Sprintf(`{"deviceId":"BENCH-B%d","saleId":"POS%d"}`, i, i)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+RetailSessionsPath, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+RetailDefaultKey)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var s RetailSession
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err != nil || s.MessagesURL == "" {
			b.Fatalf("open session %d: %v %s", i, err, resp.Status)
		}
		sessions = append(sessions, s.MessagesURL)
	}
	const workers = 64
	var next atomic.Int64
	lat := make([][]time.Duration, workers)
	msg := []byte(`{"SaleToPOIServiceRequest":{"bench":true}}`)
	b.ResetTimer()
	start := time.Now()
	var bw sync.WaitGroup
	for w := range workers {
		bw.Add(1)
		go func() {
			defer bw.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodPost, srv.URL+sessions[i%int64(devices)], bytes.NewReader(msg))
				req.Header.Set("Authorization", "Bearer "+RetailDefaultKey)
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !bytes.Equal(got, answer) {
					b.Errorf("message %d: %s %s", i, resp.Status, got)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	bw.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(devices), "devices")
}
