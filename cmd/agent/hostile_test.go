package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
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
	FileKB                               int64 // RssFile: the binary and the mapped data file
	// The Go runtime's view, from the scrape: where anonymous memory goes.
	HeapInuse, HeapIdle, HeapReleased, StackInuse, Goroutines, Conns int64
	ProfileBuckets                                                   int64 // the heap profile's bucket table, bytes
	Trims                                                            int64 // memory trims so far
}

func (f figures) String() string {
	return fmt.Sprintf("RSS %6d KB (anon %6d, file %6d); db %8d B; /metrics %6d B; Go heap in use %5d KB, idle not released %5d KB, stacks %4d KB; %3d goroutines, %2d Nexo connections",
		f.RSSKB, f.AnonKB, f.FileKB, f.DBBytes, f.MetricsBytes, f.HeapInuse>>10, (f.HeapIdle-f.HeapReleased)>>10, f.StackInuse>>10, f.Goroutines, f.Conns)
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
	readings int // measurements per figure, each after a trim (settle)
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
	url := w.start("-config", cfg, "-admin-listen", "127.0.0.1:0", "-journal-max-bytes", strconv.Itoa(journalMax), "-memory-trim-after", "1s")
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
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			f.FileKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
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
	for line := range strings.Lines(string(b)) {
		for name, dst := range map[string]*int64{
			"go_memstats_heap_inuse_bytes": &f.HeapInuse, "go_memstats_heap_idle_bytes": &f.HeapIdle,
			"go_memstats_heap_released_bytes": &f.HeapReleased, "go_memstats_stack_inuse_bytes": &f.StackInuse,
			"go_goroutines": &f.Goroutines, "go_memstats_buck_hash_sys_bytes": &f.ProfileBuckets, "termagent_memory_trims_total": &f.Trims, "termagent_nexo_connections": &f.Conns,
		} {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				x, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				*dst = int64(x)
			}
		}
	}
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
	slug, name string // slug names the attack's figures in the benchmark's output
	send       func(h *hostileRig, i int)
}

func attacks() []attack {
	id := func(i int) string { return strconv.FormatInt(int64(i), 36) }
	long := strings.Repeat("x", 35)
	return []attack{
		{"categories", "distinct 20 KB categories, unprotected (401)", func(h *hostileRig, i int) {
			body := fmt.Sprintf(`{"SaleToPOIRequest":{"MessageHeader":{"ProtocolVersion":"3.0","MessageClass":"Service","MessageCategory":"%d%s","MessageType":"Request","ServiceID":"1","SaleID":"POS","POIID":%q}}}`,
				i, strings.Repeat("c", 20<<10), h.poiid)
			status, b := h.post("application/json", []byte(body))
			require.Equal(h.t, http.StatusUnauthorized, status)
			require.Contains(h.t, string(b), "crypto+error+%285%29") // in a Reject's URL-encoded EventDetails
			require.Less(h.t, len(b), 2<<10, "the refusal does not echo the category")
		}},
		{"logins", "logins with distinct SaleIDs", func(h *hostileRig, i int) {
			req := &nexo.Request{Header: h.header(nexo.CategoryLogin, "POS-"+id(i)+"-"+long[:20], "1"), Login: &nexo.LoginRequest{
				DateTime: time.Now(), OperatorLanguage: "en", SaleSoftware: nexo.SaleSoftware{ManufacturerID: long, ApplicationName: long, SoftwareVersion: "1"}}}
			resp, err := h.do(req)
			require.NoError(h.t, err)
			require.Equal(h.t, nexo.Success, resp.Status.Result, resp.Status.AdditionalResponse)
		}},
		{"long-saleids", "logins with 20 KB SaleIDs (sealed, under the 64 KiB limit)", func(h *hostileRig, i int) {
			req := &nexo.Request{Header: h.header(nexo.CategoryLogin, id(i)+strings.Repeat("s", 20<<10), "1"), Login: &nexo.LoginRequest{
				DateTime: time.Now(), OperatorLanguage: "en", SaleSoftware: nexo.SaleSoftware{ManufacturerID: "a", ApplicationName: "b", SoftwareVersion: "1"}}}
			resp, err := h.do(req)
			requireCondition(h.t, resp, err, nexo.MessageFormat, "20 KB SaleID")
			require.Contains(h.t, resp.Status.AdditionalResponse, "MessageHeader.SaleID")
		}},
		{"refused-payments", "2 payments no method takes, largest fields (refused before PPaaS)", func(h *hostileRig, i int) {
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
		{"event-diagnosis", "Event class with Diagnosis category", func(h *hostileRig, i int) {
			hd := h.header(nexo.CategoryDiagnosis, "POSEV", id(i))
			hd.Class = nexo.ClassEvent
			resp, err := h.do(&nexo.Request{Header: hd, Diagnosis: &nexo.DiagnosisRequest{}})
			requireCondition(h.t, resp, err, nexo.MessageFormat, "Event/Diagnosis")
		}},
		{"replays", "replayed protected Diagnosis", func(h *hostileRig, i int) {
			resp, err := h.do(&nexo.Request{Header: h.header(nexo.CategoryDiagnosis, "POSREP", id(i)), Diagnosis: &nexo.DiagnosisRequest{}})
			require.NoError(h.t, err)
			require.Equal(h.t, nexo.Success, resp.Status.Result)
			status, b := h.post("application/json", h.rec.lastBody())
			require.Equal(h.t, http.StatusUnauthorized, status)
			require.Contains(h.t, string(b), "crypto error (6): replayed message")
		}},
		{"tampered", "tampered protected Payment", func(h *hostileRig, i int) {
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
		{"status-unknown", "TransactionStatus for unknown SaleIDs", func(h *hostileRig, i int) {
			resp, err := h.do(&nexo.Request{Header: h.header(nexo.CategoryTransactionStatus, "UNKNOWN-"+id(i), "1"), TransactionStatus: &nexo.TransactionStatusRequest{}})
			requireCondition(h.t, resp, err, nexo.NotFound, "status")
		}},
		{"xml-trailing", "XML with trailing content", func(h *hostileRig, i int) {
			body := fmt.Sprintf(`<SaleToPOIRequest><MessageHeader MessageClass="Service" MessageCategory="Diagnosis" MessageType="Request" ServiceID="%s" SaleID="X" POIID="%s"/></SaleToPOIRequest><x>%d</x>`, id(i), h.poiid, i)
			status, b := h.post("application/xml", []byte(body))
			require.Equal(h.t, http.StatusOK, status)
			require.Contains(h.t, string(b), "Reject")
			require.Contains(h.t, string(b), "after+the+root+element")
		}},
		{"big-bodies", "100 KB bodies (the limit is 64 KiB)", func(h *hostileRig, i int) {
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

// kindFigures are the agent's figures before and after n requests of one
// kind of attack.
type kindFigures struct {
	Slug, Name    string
	Before, After figures
}

// settle waits (at most 5 s) until the connections the last requests
// opened are closed (net/http lingers half a second on one closed after a
// 413), then until the agent has trimmed its memory after the burst (it runs
// with memory_trim_after 1s here, 10s by default), and measures: the figures
// of the agent the attack left, not of requests still in flight nor of
// their garbage. With h.readings > 1 it measures that many times, each after
// a trim of its own, and keeps the lowest anonymous memory: what stays
// resident whatever the collector's timing (a collection finds the live heap
// spread over more or fewer pages from one run to the next; memory an
// attack kept would be in every reading).
func (h *hostileRig) settle() figures {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.metric("termagent_nexo_connections") > 4 && time.Now().Before(deadline) { // 4: the client's kept-alive connections
		time.Sleep(100 * time.Millisecond)
	}
	best := h.trimmed()
	for range h.readings - 1 {
		if f := h.trimmed(); f.AnonKB < best.AnonKB {
			best = f
		}
	}
	return best
}

// trimmed measures once the agent has trimmed its memory. A scrape is
// activity too: the trim comes memory_trim_after (1 s) and at most one tick
// (0.5 s) after the last one, later on a loaded machine. The figures are read
// from /proc before the scrape that shows a trim happened since the
// previous one: nothing ran in between.
func (h *hostileRig) trimmed() figures {
	h.t.Helper()
	trims := int64(h.metric("termagent_memory_trims_total"))
	for range 10 {
		time.Sleep(2 * time.Second)
		f := h.measure() // /proc first, then a scrape
		if f.Trims > trims {
			return f
		}
		trims = f.Trims
	}
	h.t.Fatal("the agent did not trim its memory after the burst")
	return figures{}
}

// metric reads one unlabelled metric from /metrics.
func (h *hostileRig) metric(name string) float64 {
	h.t.Helper()
	resp, err := http.Get(h.admin + "/metrics")
	require.NoError(h.t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(h.t, err)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			require.NoError(h.t, err)
			return f
		}
	}
	h.t.Fatalf("no metric %s", name)
	return 0
}

// runHostile measures the agent after it has traded until its data file
// reached the size its journal budget bounds it to, and after a warm-up of
// each request kind (the idle figures), then sends n of each attack, kind
// after kind, measuring before and after each, and ends with up to 3,000
// idle connections. Every figure is read once the agent has trimmed its
// memory after the burst (settle).
func runHostile(t testing.TB, n, journalMax, readings int) (idle figures, kinds []kindFigures, trade tradeFigures) {
	h := startHostile(t, journalMax)
	h.readings = readings
	all := attacks()
	// The journal's budget bounds the file to twice itself (journal_max_bytes
	// counts whole pages; bbolt copies pages on write).
	trade = h.trade(2 * int64(journalMax))
	// Warm up: TLS handshakes, every code path a few times and a few valid
	// requests, so "idle" is the agent that has served each kind of request.
	for _, a := range all {
		for i := range 5 {
			a.send(h, -1-i)
		}
	}
	h.hold(50)
	h.diagnose("warm")
	idle = h.settle()
	last := idle
	for _, a := range all {
		start := time.Now()
		for i := range n {
			a.send(h, i)
		}
		took := time.Since(start)
		f := h.settle()
		kinds = append(kinds, kindFigures{Slug: a.slug, Name: a.name, Before: last, After: f})
		t.Logf("%-16s %6d in %-8s %s", a.slug, n, took.Round(time.Millisecond), f)
		last = f
	}
	conns := min(n, 3000)
	h.hold(conns)
	h.diagnose("end")
	f := h.settle()
	kinds = append(kinds, kindFigures{Slug: "idle-conns", Name: fmt.Sprintf("%d idle connections at once, then a Diagnosis", conns), Before: last, After: f})
	t.Logf("%-16s %6d at once   %s", "idle-conns", conns, f)
	// Checked when the caller is done with the figures: a benchmark writes
	// them first, so a failed check does not lose them.
	t.Cleanup(func() {
		h.checkCapsReported()
		var errs []string
		for line := range strings.Lines(h.w.proc.logs.String()) {
			if strings.Contains(line, `"level":"ERROR"`) {
				errs = append(errs, line)
			}
		}
		assert.Empty(t, errs, "no request made the agent log an error")
	})
	t.Logf("%-16s %s", "idle", idle)
	for _, k := range kinds {
		t.Logf("%-16s RSS ×%.2f, anon ×%.2f, data file ×%.2f, /metrics ×%.2f of idle", k.Slug,
			ratioOf(k.After.RSSKB, idle.RSSKB), ratioOf(k.After.AnonKB, idle.AnonKB), ratioOf(k.After.DBBytes, idle.DBBytes), ratioOf(k.After.MetricsBytes, idle.MetricsBytes))
	}
	return idle, kinds, trade
}

func ratioOf(a, b int64) float64 { return float64(a) / float64(b) }

// overIdle lists the figures of kinds more than limit (0.10: 10%) above idle.
func overIdle(idle figures, kinds []kindFigures, limit float64) []string {
	var over []string
	for _, k := range kinds {
		for _, f := range []struct {
			what      string
			end, base int64
		}{{"RSS", k.After.RSSKB, idle.RSSKB}, {"anonymous RSS", k.After.AnonKB, idle.AnonKB}, {"data file", k.After.DBBytes, idle.DBBytes}, {"/metrics scrape", k.After.MetricsBytes, idle.MetricsBytes}} {
			if r := ratioOf(f.end, f.base); r > 1+limit {
				over = append(over, fmt.Sprintf("after %s: %s %d → %d (×%.2f)", k.Slug, f.what, f.base, f.end, r))
			}
		}
	}
	return over
}

// diagnose sends a valid Diagnosis, retrying for 15 s: after a flood of
// connections the server closes new ones until it counts fewer than its cap.
func (h *hostileRig) diagnose(serviceID string) {
	h.t.Helper()
	var (
		resp *nexo.Response
		err  error
	)
	for deadline := time.Now().Add(15 * time.Second); ; {
		resp, err = h.do(&nexo.Request{Header: h.header(nexo.CategoryDiagnosis, "POS-0-"+strings.Repeat("x", 20), serviceID), Diagnosis: &nexo.DiagnosisRequest{}})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(h.t, err)
	require.Equal(h.t, nexo.Success, resp.Status.Result)
	require.LessOrEqual(h.t, len(resp.Diagnosis.LoggedSaleIDs), 1, "Diagnosis names the caller only")
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
	require.LessOrEqual(h.t, value(m, "termagent_nexo_replay_nonces"), 4096.0)
	require.Positive(h.t, value(m, "termagent_nexo_connections_refused_total"), "connections past the cap")
	capped := false
	for line := range strings.Lines(h.w.proc.logs.String()) {
		capped = capped || strings.Contains(line, `"msg":"nexo server: too many connections; closing new ones"`) && strings.Contains(line, `"max":16,`)
	}
	require.True(h.t, capped, "the agent's Nexo server closes connections past 16")
	bytes, max := value(m, "termagent_journal_bytes"), value(m, "termagent_journal_max_bytes")
	require.Equal(h.t, float64(1<<20), max)
	require.Positive(h.t, value(m, "termagent_journal_evicted_total"), "the refused payments filled the journal")
	// Between two measures the figure is the last one plus what was written
	// since (an estimate); the store measures again within budgetSettle (1 s)
	// of any write, and evicts then if over. The bound is on what it measures.
	for deadline := time.Now().Add(5 * time.Second); bytes > max*1.1 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		m = get("/metrics")
		bytes = value(m, "termagent_journal_bytes")
	}
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
	idle, kinds, _ := runHostile(t, hostileN(300), 1<<20, 1)
	end := kinds[len(kinds)-1].After
	rssBound := int64(24 << 10) // KiB
	if raceEnabled {
		rssBound *= 4 // the race detector's shadow memory grows with the heap
	}
	require.Less(t, end.RSSKB-idle.RSSKB, rssBound, "RSS grew by more than %d MiB", rssBound>>10)
	require.LessOrEqual(t, end.DBBytes, int64(2<<20), "the data file outgrew 2× journal_max_bytes")
	require.Less(t, end.MetricsBytes-idle.MetricsBytes, int64(2<<10), "the /metrics scrape grew")
	require.Equal(t, idle.ProfileBuckets, end.ProfileBuckets, "the heap profile's buckets grew: is its sampling on?")
}

// BenchmarkHostileInput is the long run: 10,000 of each attack, with the
// journal budget at its 1 MiB minimum, reporting the idle figures and those
// after each kind (each the lowest of three readings after a trim, settle). It fails when a figure ends more than 10% above idle.
// It runs once whatever -benchtime says; with TERMAGENT_HOSTILE_JSON set it
// also writes the figures there as JSON (for cmd/benchreport, which must
// report them even when the benchmark fails).
func BenchmarkHostileInput(b *testing.B) {
	n := hostileN(10_000)
	var (
		idle  figures
		kinds []kindFigures
		trade tradeFigures
	)
	for b.Loop() {
		if kinds == nil {
			idle, kinds, trade = runHostile(b, n, 1<<20, 3)
		}
	}
	over := overIdle(idle, kinds, 0.10)
	if path := os.Getenv("TERMAGENT_HOSTILE_JSON"); path != "" {
		raw, err := json.MarshalIndent(map[string]any{"N": n, "Idle": idle, "Kinds": kinds, "Over": over, "Trade": trade}, "", "  ")
		require.NoError(b, err)
		require.NoError(b, os.WriteFile(path, raw, 0o644))
	}
	b.ReportMetric(float64(n), "requests-per-kind")
	report := func(prefix string, f figures) {
		b.ReportMetric(float64(f.RSSKB)/1024, prefix+"rss-MB")
		b.ReportMetric(float64(f.AnonKB)/1024, prefix+"anon-MB")
		b.ReportMetric(float64(f.DBBytes)/(1<<20), prefix+"db-MB")
		b.ReportMetric(float64(f.MetricsBytes)/1024, prefix+"metrics-KB")
	}
	report("idle-", idle)
	report("end-", kinds[len(kinds)-1].After)
	if len(over) > 0 {
		b.Errorf("%d figures ended more than 10%% above idle:\n%s", len(over), strings.Join(over, "\n"))
	}
}

// Without GOMEMLIMIT the agent runs with defaultMemoryLimit; with it, the
// runtime's reading of the variable stands.
func TestMemoryLimitDefault(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	debug.SetMemoryLimit(math.MaxInt64)
	require.Equal(t, int64(defaultMemoryLimit), setMemoryLimit(func(string) string { return "" }))
	require.Equal(t, int64(defaultMemoryLimit), debug.SetMemoryLimit(-1))
	debug.SetMemoryLimit(64 << 20) // as the runtime would from GOMEMLIMIT=64MiB
	require.Equal(t, int64(64<<20), setMemoryLimit(func(k string) string { return map[string]string{"GOMEMLIMIT": "64MiB"}[k] }))
	require.Equal(t, int64(64<<20), debug.SetMemoryLimit(-1))
}

// trade makes approved payments, up to 2,000, until the agent's data file
// is size bytes: the agent of a terminal that has traded for a while, whose
// file the outbox's churn and the journal have grown to the size bbolt
// keeps (it never shrinks a file; freed pages are reused).
func (h *hostileRig) trade(size int64) tradeFigures {
	h.t.Helper()
	fresh := h.dataFile()
	require.NoError(h.t, h.w.sim.SetProviderMode(sim.ProviderApprove))
	defer func() { require.NoError(h.t, h.w.sim.SetProviderMode(sim.ProviderManual)) }()
	i := 0
	for ; h.dataFile() < size; i++ {
		require.Less(h.t, i, 2000, "the data file did not reach %d bytes", size)
		req := &nexo.Request{Header: h.header(nexo.CategoryPayment, "TILL"+strconv.Itoa(i%4), "T"+strconv.Itoa(i)), Payment: &nexo.PaymentRequest{
			SaleTransactionID: nexo.TransactionID{ID: "ORDER-" + strconv.Itoa(i), TimeStamp: time.Now()},
			Type:              nexo.PaymentNormal, Amount: nexo.Amount{Minor: int64(100 + i), Currency: "EUR"}, AllowedBrands: []string{"KB"}}}
		resp, err := h.do(req)
		require.NoError(h.t, err)
		require.Equal(h.t, nexo.Success, resp.Status.Result, resp.Status.AdditionalResponse)
	}
	h.t.Logf("traded %d payments: data file %d → %d bytes", i, fresh, h.dataFile())
	return tradeFigures{Payments: i, FreshDBBytes: fresh}
}

// tradeFigures are what trading before the attacks did.
type tradeFigures struct {
	Payments     int   // approved payments made
	FreshDBBytes int64 // the data file of the fresh agent, before them
}

// dataFile is the size of the agent's data file.
func (h *hostileRig) dataFile() int64 {
	fi, err := os.Stat(filepath.Join(h.w.dir, "data", "termagent.db"))
	require.NoError(h.t, err)
	return fi.Size()
}
