package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/nexo"
)

// The hostile-input suite (issue 11): every attack of the issue against a
// running agent process with message security on, each answered with a
// clear Nexo error, and the agent's RSS, data file and /metrics scrape
// measured before and after. TestHostileInput is the CI smoke (300 of each);
// BenchmarkHostileInput (`make bench`) sends 10,000 of each
// (TERMAGENT_HOSTILE_N overrides either).

const hostileKeyID, hostilePassphrase = "hostile", "a passphrase for the hostile-input suite"

// figures are what the suite measures.
type figures struct {
	RSSKB, AnonKB, DBBytes, MetricsBytes int64 // AnonKB: RSS less the mapped data file and binary
}

type hostileRig struct {
	t        testing.TB
	w        *crashWorld
	url      string
	admin    string
	key      *nexo.Key
	hc       *http.Client
	rec      *recorder
	poiid    string
	sentLast []byte
}

// recorder keeps the last request body the client sent, for replays.
type recorder struct {
	mu   sync.Mutex
	last []byte
	rt   http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.last = b
		r.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	return r.rt.RoundTrip(req)
}

func (r *recorder) lastBody() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.last...)
}

func startHostile(t testing.TB, journalMax int) *hostileRig {
	t.Helper()
	w := newCrashWorld(t)
	cfg := filepath.Join(w.dir, "hostile.json")
	b, err := json.Marshal(map[string]any{"nexo_key_identifier": hostileKeyID, "nexo_key_version": 1, "nexo_passphrase": hostilePassphrase})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, b, 0o600))
	url := w.start("-config", cfg, "-admin-listen", "127.0.0.1:0", "-journal-max-bytes", strconv.Itoa(journalMax))
	var admin string
	for line := range strings.Lines(w.proc.logs.String()) {
		var rec struct{ Msg, Admin string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "admin listening" {
			admin = rec.Admin
		}
	}
	require.NotEmpty(t, admin, "admin address not logged")
	key, err := nexo.NewKey(hostileKeyID, 1, hostilePassphrase)
	require.NoError(t, err)
	rec := &recorder{rt: &http.Transport{TLSClientConfig: w.caPool, MaxIdleConnsPerHost: 4}}
	return &hostileRig{t: t, w: w, url: url, admin: admin, key: key, rec: rec,
		hc: &http.Client{Timeout: 30 * time.Second, Transport: rec}, poiid: certs.DefaultModel + "-" + w.serial}
}

func (h *hostileRig) measure() figures {
	h.t.Helper()
	var f figures
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.w.proc.cmd.Process.Pid))
	require.NoError(h.t, err)
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f.RSSKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			f.AnonKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	fi, err := os.Stat(filepath.Join(h.w.dir, "data", "termagent.db"))
	require.NoError(h.t, err)
	f.DBBytes = fi.Size()
	resp, err := http.Get(h.admin + "/metrics")
	require.NoError(h.t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(h.t, err)
	f.MetricsBytes = int64(len(b))
	return f
}

func (h *hostileRig) header(cat nexo.MessageCategory, saleID, serviceID string) nexo.Header {
	return nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: cat, Type: nexo.TypeRequest, ServiceID: serviceID, SaleID: saleID, POIID: h.poiid}
}

// do sends a protected request.
func (h *hostileRig) do(req *nexo.Request) (*nexo.Response, error) {
	ctx, cancel := context.WithTimeout(h.t.Context(), 30*time.Second)
	defer cancel()
	return (&nexo.Client{URL: h.url, HTTP: h.hc, Key: h.key}).Do(ctx, req)
}

// post sends raw bytes and returns the status and body.
func (h *hostileRig) post(ctype string, body []byte) (int, []byte) {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), http.MethodPost, h.url, bytes.NewReader(body))
	require.NoError(h.t, err)
	req.Header.Set("Content-Type", ctype)
	resp, err := h.rec.rt.RoundTrip(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	require.NoError(h.t, err)
	return resp.StatusCode, b
}

func requireCondition(t testing.TB, resp *nexo.Response, err error, c nexo.ErrorCondition, what string) {
	t.Helper()
	require.NoError(t, err, what)
	require.NotNil(t, resp, what)
	require.Equal(t, nexo.Failure, resp.Status.Result, what)
	require.Equal(t, c, resp.Status.ErrorCondition, "%s: %s", what, resp.Status.AdditionalResponse)
	require.NotEmpty(t, resp.Status.AdditionalResponse, what)
}

// attack is one kind of hostile request; i makes each one distinct.
type attack struct {
	name string
	send func(h *hostileRig, i int)
}

func attacks() []attack {
	id := func(i int) string { return strconv.FormatInt(int64(i), 36) }
	long := strings.Repeat("x", 35)
	return []attack{
		{"distinct 20 KB categories, unprotected (401)", func(h *hostileRig, i int) {
			body := fmt.Sprintf(`{"SaleToPOIRequest":{"MessageHeader":{"ProtocolVersion":"3.0","MessageClass":"Service","MessageCategory":"%d%s","MessageType":"Request","ServiceID":"1","SaleID":"POS","POIID":%q}}}`,
				i, strings.Repeat("c", 20<<10), h.poiid)
			status, b := h.post("application/json", []byte(body))
			require.Equal(h.t, http.StatusUnauthorized, status)
			require.Contains(h.t, string(b), "crypto+error+%285%29") // in a Reject's URL-encoded EventDetails
			require.Less(h.t, len(b), 2<<10, "the refusal does not echo the category")
		}},
		{"logins with distinct SaleIDs", func(h *hostileRig, i int) {
			req := &nexo.Request{Header: h.header(nexo.CategoryLogin, "POS-"+id(i)+"-"+long[:20], "1"), Login: &nexo.LoginRequest{
				DateTime: time.Now(), OperatorLanguage: "en", SaleSoftware: nexo.SaleSoftware{ManufacturerID: long, ApplicationName: long, SoftwareVersion: "1"}}}
			resp, err := h.do(req)
			require.NoError(h.t, err)
			require.Equal(h.t, nexo.Success, resp.Status.Result, resp.Status.AdditionalResponse)
		}},
		{"logins with 20 KB SaleIDs (sealed, under the 64 KiB limit)", func(h *hostileRig, i int) {
			req := &nexo.Request{Header: h.header(nexo.CategoryLogin, id(i)+strings.Repeat("s", 20<<10), "1"), Login: &nexo.LoginRequest{
				DateTime: time.Now(), OperatorLanguage: "en", SaleSoftware: nexo.SaleSoftware{ManufacturerID: "a", ApplicationName: "b", SoftwareVersion: "1"}}}
			resp, err := h.do(req)
			requireCondition(h.t, resp, err, nexo.MessageFormat, "20 KB SaleID")
			require.Contains(h.t, resp.Status.AdditionalResponse, "MessageHeader.SaleID")
		}},
		{"2 payments no method takes, largest fields (refused before PPaaS)", func(h *hostileRig, i int) {
			brands := make([]string, 16)
			for j := range brands {
				brands[j] = "NOPE" + long[:31]
			}
			for _, sale := range []string{"POSPAY1", "POSPAY2"} { // two a round: enough to fill the journal
				req := &nexo.Request{Header: h.header(nexo.CategoryPayment, sale, id(i)), Payment: &nexo.PaymentRequest{
					SaleTransactionID: nexo.TransactionID{ID: strings.Repeat("t", 64), TimeStamp: time.Now()}, SaleReferenceID: long, OperatorID: long,
					Type: nexo.PaymentNormal, Amount: nexo.Amount{Minor: 100, Currency: "EUR"}, AllowedBrands: brands, InstrumentType: long}}
				resp, err := h.do(req)
				requireCondition(h.t, resp, err, nexo.PaymentRestriction, "refused payment")
			}
		}},
		{"Event class with Diagnosis category", func(h *hostileRig, i int) {
			hd := h.header(nexo.CategoryDiagnosis, "POSEV", id(i))
			hd.Class = nexo.ClassEvent
			resp, err := h.do(&nexo.Request{Header: hd, Diagnosis: &nexo.DiagnosisRequest{}})
			requireCondition(h.t, resp, err, nexo.MessageFormat, "Event/Diagnosis")
		}},
		{"replayed protected Diagnosis", func(h *hostileRig, i int) {
			resp, err := h.do(&nexo.Request{Header: h.header(nexo.CategoryDiagnosis, "POSREP", id(i)), Diagnosis: &nexo.DiagnosisRequest{}})
			require.NoError(h.t, err)
			require.Equal(h.t, nexo.Success, resp.Status.Result)
			status, b := h.post("application/json", h.rec.lastBody())
			require.Equal(h.t, http.StatusUnauthorized, status)
			require.Contains(h.t, string(b), "crypto error (6): replayed message")
		}},
		{"tampered protected Payment", func(h *hostileRig, i int) {
			req := &nexo.Request{Header: h.header(nexo.CategoryDiagnosis, "POSTAMP", id(i)), Diagnosis: &nexo.DiagnosisRequest{}}
			_, err := h.do(req)
			require.NoError(h.t, err)
			var env map[string]map[string]any
			require.NoError(h.t, json.Unmarshal(h.rec.lastBody(), &env))
			blob, err := base64.StdEncoding.DecodeString(env["SaleToPOIRequest"]["NexoBlob"].(string))
			require.NoError(h.t, err)
			flip := byte(i)
			if flip == 0 {
				flip = 0x80
			}
			blob[len(blob)-1] ^= flip // the padding byte: a padding-oracle probe
			env["SaleToPOIRequest"]["NexoBlob"] = base64.StdEncoding.EncodeToString(blob)
			body, err := json.Marshal(env)
			require.NoError(h.t, err)
			status, b := h.post("application/json", body)
			require.Equal(h.t, http.StatusUnauthorized, status)
			require.Contains(h.t, string(b), "crypto error (4)")
		}},
		{"TransactionStatus for unknown SaleIDs", func(h *hostileRig, i int) {
			resp, err := h.do(&nexo.Request{Header: h.header(nexo.CategoryTransactionStatus, "UNKNOWN-"+id(i), "1"), TransactionStatus: &nexo.TransactionStatusRequest{}})
			requireCondition(h.t, resp, err, nexo.NotFound, "status")
		}},
		{"XML with trailing content", func(h *hostileRig, i int) {
			body := fmt.Sprintf(`<SaleToPOIRequest><MessageHeader MessageClass="Service" MessageCategory="Diagnosis" MessageType="Request" ServiceID="%s" SaleID="X" POIID="%s"/></SaleToPOIRequest><x>%d</x>`, id(i), h.poiid, i)
			status, b := h.post("application/xml", []byte(body))
			require.Equal(h.t, http.StatusOK, status)
			require.Contains(h.t, string(b), "Reject")
			require.Contains(h.t, string(b), "after+the+root+element")
		}},
		{"100 KB bodies (the limit is 64 KiB)", func(h *hostileRig, i int) {
			// The server answers 413 after 64 KiB and closes without reading
			// the rest, so the client may see the reset before the answer.
			req, err := http.NewRequestWithContext(h.t.Context(), http.MethodPost, h.url, bytes.NewReader(bytes.Repeat([]byte(" "), 100<<10)))
			require.NoError(h.t, err)
			req.Close = true
			resp, err := h.rec.rt.RoundTrip(req)
			if err != nil {
				require.True(h.t, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE), "%v", err)
				return
			}
			resp.Body.Close()
			require.Equal(h.t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		}},
	}
}

// hold opens n idle connections to the Nexo port, then closes them.
func (h *hostileRig) hold(n int) {
	addr := strings.TrimSuffix(strings.TrimPrefix(h.url, "https://"), "/nexo")
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			break // the kernel's backlog is full: the point is made
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
}

// runHostile sends n of each attack in two rounds (a third, then the rest)
// and measures the agent after warm-up, after the first round and at the
// end: bounded state shows as no growth between the last two.
func runHostile(t testing.TB, n int, journalMax int) (before, mid, after figures) {
	h := startHostile(t, journalMax)
	kinds := attacks()
	// Warm up: every code path once, so "before" is the idle agent that has
	// served each kind of request.
	for _, a := range kinds {
		for i := range 5 {
			a.send(h, -1-i)
		}
	}
	h.hold(50)
	before = h.measure()
	round := func(from, to int) figures {
		for _, a := range kinds {
			start := time.Now()
			for i := from; i < to; i++ {
				a.send(h, i)
			}
			f := h.measure()
			t.Logf("%-66s %6d in %-8s RSS %6d KB (anon %6d KB), db %8d B, /metrics %6d B", a.name, to-from, time.Since(start).Round(time.Millisecond), f.RSSKB, f.AnonKB, f.DBBytes, f.MetricsBytes)
		}
		h.hold(min(to-from, 3000))
		// Serving again once the flood of connections is gone (the server
		// closes new ones while it still counts 64 open), with bounded answers.
		var (
			resp *nexo.Response
			err  error
		)
		for deadline := time.Now().Add(15 * time.Second); ; {
			resp, err = h.do(&nexo.Request{Header: h.header(nexo.CategoryDiagnosis, "POS-0-"+strings.Repeat("x", 20), "d"+strconv.Itoa(to)), Diagnosis: &nexo.DiagnosisRequest{}})
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		require.NoError(t, err)
		require.Equal(t, nexo.Success, resp.Status.Result)
		require.LessOrEqual(t, len(resp.Diagnosis.LoggedSaleIDs), 1, "Diagnosis names the caller only")
		return h.measure()
	}
	mid = round(0, n/3)
	after = round(n/3, n)
	h.checkCapsReported()
	require.NotContains(t, h.w.proc.logs.String(), `"level":"ERROR"`, "no request made the agent log an error")
	for _, f := range []struct {
		what string
		f    figures
	}{{"idle", before}, {fmt.Sprintf("after %d of each", n/3), mid}, {fmt.Sprintf("after %d of each", n), after}} {
		t.Logf("%-22s RSS %6d KB (anon %6d KB); db %8d bytes; /metrics %6d bytes", f.what, f.f.RSSKB, f.f.AnonKB, f.f.DBBytes, f.f.MetricsBytes)
	}
	return before, mid, after
}

// checkCapsReported reads /metrics and /readyz: the caps the attacks ran
// into are counted, and a journal near its budget is a /readyz warning.
func (h *hostileRig) checkCapsReported() {
	h.t.Helper()
	get := func(path string) string {
		resp, err := http.Get(h.admin + path)
		require.NoError(h.t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(h.t, err)
		require.Equal(h.t, http.StatusOK, resp.StatusCode, "%s: %s", path, b)
		return string(b)
	}
	value := func(metrics, name string) float64 {
		for line := range strings.Lines(metrics) {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				require.NoError(h.t, err)
				return f
			}
		}
		h.t.Fatalf("no metric %s", name)
		return 0
	}
	m := get("/metrics")
	require.Positive(h.t, value(m, "termagent_nexo_logins_evicted_total"), "logins past the cap")
	require.LessOrEqual(h.t, value(m, "termagent_nexo_logged_in"), 32.0)
	require.Positive(h.t, value(m, "termagent_nexo_replay_nonces"))
	bytes, max := value(m, "termagent_journal_bytes"), value(m, "termagent_journal_max_bytes")
	require.Equal(h.t, float64(1<<20), max)
	require.Positive(h.t, value(m, "termagent_journal_evicted_total"), "the refused payments filled the journal")
	require.LessOrEqual(h.t, bytes, max*1.1)
	ready := get("/readyz")
	h.t.Logf("journal %.0f of %.0f bytes; evicted %.0f; /readyz: %q", bytes, max, value(m, "termagent_journal_evicted_total"), ready)
	require.Equal(h.t, bytes >= max*0.9, strings.Contains(ready, "warning: journal at"), "journal %v of %v bytes; /readyz: %s", bytes, max, ready)
}

func hostileN(def int) int {
	if v, err := strconv.Atoi(os.Getenv("TERMAGENT_HOSTILE_N")); err == nil && v > 0 {
		return v
	}
	return def
}

func TestHostileInput(t *testing.T) {
	before, _, after := runHostile(t, hostileN(300), 1<<20)
	rssBound := int64(24 << 10) // KiB
	if raceEnabled {
		rssBound *= 4 // the race detector's shadow memory grows with the heap
	}
	require.Less(t, after.RSSKB-before.RSSKB, rssBound, "RSS grew by more than %d MiB", rssBound>>10)
	require.LessOrEqual(t, after.DBBytes, int64(4<<20), "the data file outgrew 4× journal_max_bytes")
	require.Less(t, after.MetricsBytes-before.MetricsBytes, int64(2<<10), "the /metrics scrape grew")
}

// BenchmarkHostileInput is the long run: 10,000 of each attack, with the
// journal budget at its 1 MiB minimum, reporting the figures when idle,
// after a third and at the end. It runs once whatever -benchtime says.
func BenchmarkHostileInput(b *testing.B) {
	n := hostileN(10_000)
	var before, mid, after figures
	for b.Loop() {
		if before.RSSKB == 0 {
			before, mid, after = runHostile(b, n, 1<<20)
		}
	}
	b.ReportMetric(float64(n), "requests-per-kind")
	b.ReportMetric(float64(before.RSSKB)/1024, "rss-before-MB")
	b.ReportMetric(float64(mid.RSSKB)/1024, "rss-mid-MB")
	b.ReportMetric(float64(after.RSSKB)/1024, "rss-after-MB")
	b.ReportMetric(float64(before.AnonKB)/1024, "anon-before-MB")
	b.ReportMetric(float64(mid.AnonKB)/1024, "anon-mid-MB")
	b.ReportMetric(float64(after.AnonKB)/1024, "anon-after-MB")
	b.ReportMetric(float64(before.DBBytes)/(1<<20), "db-before-MB")
	b.ReportMetric(float64(mid.DBBytes)/(1<<20), "db-mid-MB")
	b.ReportMetric(float64(after.DBBytes)/(1<<20), "db-after-MB")
	b.ReportMetric(float64(before.MetricsBytes)/1024, "metrics-before-KB")
	b.ReportMetric(float64(mid.MetricsBytes)/1024, "metrics-mid-KB")
	b.ReportMetric(float64(after.MetricsBytes)/1024, "metrics-after-KB")
}
