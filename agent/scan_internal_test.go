package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// TestEnrichKeepsNexoLengths: the platform's merchant and acquirer reach the
// PaymentResponse only when they fit their Max35Text fields; a longer or
// unprintable value is left out (a cut id would name another merchant), and
// without an acquirer from the platform the agent's own AcquirerID stays.
func TestEnrichKeepsNexoLengths(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name string
		in   ppaas.Enrichment
		want nexo.PaymentResult
	}{
		{"all fit", ppaas.Enrichment{MerchantID: "MID-1", AcquirerID: "ACQ", AcquirerPOIID: "TID-9"},
			nexo.PaymentResult{AcquirerID: "ACQ", MerchantID: "MID-1", AcquirerPOIID: "TID-9"}},
		{"none sent", ppaas.Enrichment{}, nexo.PaymentResult{AcquirerID: "PPaaS:KB"}},
		{"exactly 35", ppaas.Enrichment{MerchantID: strings.Repeat("m", 35)}, nexo.PaymentResult{AcquirerID: "PPaaS:KB", MerchantID: strings.Repeat("m", 35)}},
		{"too long", ppaas.Enrichment{MerchantID: strings.Repeat("m", 36), AcquirerID: strings.Repeat("a", 40), AcquirerPOIID: "T"},
			nexo.PaymentResult{AcquirerID: "PPaaS:KB", AcquirerPOIID: "T"}},
		{"control character", ppaas.Enrichment{AcquirerPOIID: "T\n1"}, nexo.PaymentResult{AcquirerID: "PPaaS:KB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := nexo.PaymentResult{AcquirerID: "PPaaS:KB"}
			enrich(&got, tc.in, log)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestCreateRequestKeepsTheScannedCode: a merchantscan payment whose create
// must be replayed from the journal (a reversal or recovery before PPaaS
// answered) sends the code the POS scanned, as the first create did; without
// it the replay would fail validation and the payment could not be reversed.
func TestCreateRequestKeepsTheScannedCode(t *testing.T) {
	v := qrView{
		payment: &nexo.PaymentRequest{Amount: nexo.Amount{Minor: 500, Currency: "EUR"}, ScannedCode: "281666027690188713769014"},
		method:  &qr.Method{PaymentType: "KB", Scenario: ppaas.MerchantScan},
	}
	c, ok := journal{}.createRequest("5f0c7c1e-8d6b-4a49-9a43-0c2b8f7d3e10", v)
	require.True(t, ok)
	require.Equal(t, "281666027690188713769014", c.ScannedPaymentID)
	require.NoError(t, c.Validate())
}

// TestScanErrorToNexo: a merchantscan payment that never got a code ends
// Cancel (timeout) or Aborted, both saying nothing was charged; a malformed
// code is MessageFormat; other errors are not this mapping's.
func TestScanErrorToNexo(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("qr pay: %w", err) }
	ne := scanError(wrap(qr.ErrNoScan), 2*time.Minute)
	require.Equal(t, nexo.Cancel, ne.Condition)
	require.Contains(t, ne.Error(), "within 2m0s; nothing was charged")
	ne = scanError(wrap(qr.ErrScanAborted), time.Minute)
	require.Equal(t, nexo.Aborted, ne.Condition)
	require.Contains(t, ne.Error(), "nothing was charged")
	ne = scanError(wrap(ppaas.CheckScannedPaymentID("a b")), time.Minute)
	require.Equal(t, nexo.MessageFormat, ne.Condition)
	require.Nil(t, scanError(errors.New("socket reset"), time.Minute))
}

// TestJournalKeepsTheTerminalScannedCode: the code the terminal's scanner
// read is journaled durably (RecordScan, before the create is sent) beside
// the payment's request, so after a restart the journal rebuilds the create
// as it was sent (same clientTransactionId, same code) for recovery and a
// reversal; without it the rebuilt create cannot be sent. The payment stays
// unfinished (recovery sees it), a malformed code is refused, and no error
// carries the code.
func TestJournalKeepsTheTerminalScannedCode(t *testing.T) {
	const code = "281666027690188713769014"
	path := filepath.Join(t.TempDir(), "termagent.db")
	st, err := store.Open(t.Context(), path, store.Options{PruneInterval: -1})
	require.NoError(t, err)
	scan := qr.Method{PaymentType: "KB", Scenario: ppaas.MerchantScan}
	j := journal{st: st, methods: func(nexo.PaymentRequest) (qr.Method, bool) { return scan, true }}
	req := &nexo.Request{
		Header:  nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeRequest, SaleID: "POS1", ServiceID: "S1", POIID: "POI1"},
		Payment: &nexo.PaymentRequest{Type: nexo.PaymentNormal, Amount: nexo.Amount{Minor: 2000, Currency: "EUR"}, AllowedBrands: []string{"KBSCAN"}},
	}
	id, err := j.Begin(t.Context(), nexo.JournalEntry{SaleID: "POS1", ServiceID: "S1", Category: nexo.CategoryPayment, RequestHash: "h",
		Request: req, State: nexo.TxInProgress, Started: time.Now(), Updated: time.Now()})
	require.NoError(t, err)

	read := func(st *store.Store) (ppaas.CreateRequest, store.Txn) {
		t.Helper()
		tx, err := st.Txn(t.Context(), id)
		require.NoError(t, err)
		c, ok := j.createRequest(id, viewQR(tx))
		require.True(t, ok)
		return c, tx
	}
	c, _ := read(st)
	require.Empty(t, c.ScannedPaymentID)
	require.Error(t, c.Validate(), "without the journaled code the create cannot be replayed")

	for _, bad := range []string{"", "2816 6602", strings.Repeat("9", ppaas.MaxScannedPaymentIDLen+1)} {
		err := j.RecordScan(t.Context(), id, bad)
		require.ErrorIs(t, err, ppaas.ErrScannedPaymentID, "%.20q", bad)
		if bad != "" {
			require.NotContains(t, err.Error(), bad)
		}
	}
	require.ErrorIs(t, j.RecordScan(t.Context(), "no-such-payment", code), store.ErrNotFound)
	require.NoError(t, j.RecordScan(t.Context(), id, code))
	require.NoError(t, st.Close())

	st, err = store.Open(t.Context(), path, store.Options{PruneInterval: -1})
	require.NoError(t, err)
	defer st.Close()
	j.st = st
	c, tx := read(st)
	require.Equal(t, ppaas.CreateRequest{PaymentType: "KB", PaymentScenario: ppaas.MerchantScan, ClientTransactionID: id, ScannedPaymentID: code,
		PaymentAmount: ppaas.Amount{Amount: 2000, Currency: "EUR"}, Order: ppaas.Order{OrderID: id}}, c)
	require.NoError(t, c.Validate())
	e := toEntry(tx)
	require.Equal(t, nexo.TxInProgress, e.State, "the payment is still unfinished")
	require.Equal(t, "h", e.RequestHash)
	unfinished, err := st.UnfinishedTxns(t.Context())
	require.NoError(t, err)
	require.Len(t, unfinished, 1, "recovery sees it")
}

// TestReadScanned: only a record RecordScan writes gives a code; anything
// else (another version, a malformed or oversized code) gives none.
func TestReadScanned(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"written", append([]byte{scannedVersion}, "1111222233334444"...), "1111222233334444"},
		{"empty", nil, ""},
		{"version only", []byte{scannedVersion}, ""},
		{"other version", append([]byte{scannedVersion + 1}, "1111222233334444"...), ""},
		{"not printable", append([]byte{scannedVersion}, "1111\n2222"...), ""},
		{"too long", append([]byte{scannedVersion}, strings.Repeat("1", ppaas.MaxScannedPaymentIDLen+1)...), ""},
	} {
		t.Run(tc.name, func(t *testing.T) { require.Equal(t, tc.want, readScanned(tc.data)) })
	}
}

// TestScannedCodeOfAPayment: the POS's code, journaled with the request, is
// the one its create carried; the terminal's, journaled apart, otherwise.
func TestScannedCodeOfAPayment(t *testing.T) {
	require.Equal(t, "", qrView{}.scannedCode())
	require.Equal(t, "2", qrView{scanned: "2"}.scannedCode())
	require.Equal(t, "1", qrView{payment: &nexo.PaymentRequest{ScannedCode: "1"}, scanned: "2"}.scannedCode())
	require.Equal(t, "2", qrView{payment: &nexo.PaymentRequest{}, scanned: "2"}.scannedCode())
}

// failingScans is the journal with a disk that refuses the scanned code.
type failingScans struct{ journal }

func (failingScans) RecordScan(context.Context, string, string) error {
	return errors.New("disk full")
}

// TestTerminalScanJournaledBeforeTheCreate wires the payment path as Run does
// (Nexo server → apmEngine → QR engine → journal) over a fake PPaaS that
// checks, when the create reaches it, that the journal already holds the code
// the terminal's scanner read. When the journal cannot take the code, nothing
// reaches PPaaS and the POS is told UnavailableService; its text carries no
// code.
func TestTerminalScanJournaledBeforeTheCreate(t *testing.T) {
	const code = "281666027690188713769014"
	for _, tc := range []struct {
		name string
		fail bool
	}{{"journaled", false}, {"journal refuses the code", true}} {
		t.Run(tc.name, func(t *testing.T) {
			st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
			var creates atomic.Int32
			var journaledFirst atomic.Bool
			platform := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req ppaas.CreateRequest
				if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&req) != nil {
					http.Error(w, `{"error":"unexpected"}`, http.StatusBadRequest)
					return
				}
				creates.Add(1)
				if tx, err := st.Txn(r.Context(), req.ClientTransactionID); err == nil && viewQR(tx).scanned == req.ScannedPaymentID {
					journaledFirst.Store(true)
				}
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(ppaas.Transaction{TransactionID: "qr-" + req.ClientTransactionID, ClientTransactionID: req.ClientTransactionID,
					Status: ppaas.Approved, PaymentType: req.PaymentType, PaymentScenario: req.PaymentScenario, PaymentAmount: req.PaymentAmount})
			}))
			t.Cleanup(platform.Close)
			held := newHeldAdvices()
			j := journal{st: st, held: held}
			var rec qr.Recorder = j
			if tc.fail {
				rec = failingScans{j}
			}
			engine, err := qr.NewEngine(qr.Config{Brands: map[string]qr.Method{"KBSCAN": {PaymentType: "KB", Scenario: ppaas.MerchantScan}}, Timeout: 10 * time.Second},
				qr.NewClient(platform.Client(), platform.URL, qr.Retry{Attempts: 1}), rec, advisor{st: st, held: held}, nil)
			require.NoError(t, err)
			j.methods = apmEngine{qr: engine}.method
			srv, err := nexo.NewServer(nexo.ServerConfig{POIID: "DX8000-1", AllowPlainHTTP: true},
				nexo.Deps{Engine: nexo.NewRouter(apmEngine{qr: engine, journal: j}), Journal: j}, nil)
			require.NoError(t, err)
			pos := httptest.NewServer(srv.Handler())
			t.Cleanup(pos.Close)
			c := &nexo.Client{URL: pos.URL + "/nexo", HTTP: pos.Client()}

			type answered struct {
				resp *nexo.Response
				err  error
			}
			answer := make(chan answered, 1)
			go func() {
				resp, err := c.Do(context.WithoutCancel(t.Context()), &nexo.Request{
					Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeRequest,
						ServiceID: "S1", SaleID: "POS1", POIID: "DX8000-1"},
					Payment: &nexo.PaymentRequest{SaleTransactionID: nexo.TransactionID{ID: "ORDER-S1", TimeStamp: time.Now().UTC()}, Type: nexo.PaymentNormal,
						Amount: nexo.Amount{Minor: 1250, Currency: "EUR"}, AllowedBrands: []string{"KBSCAN"}},
				})
				answer <- answered{resp, err}
			}()
			testrig.WaitFor(t, 5*time.Second, "the payment waits for the terminal's scanner", func() bool {
				select {
				case a := <-answer:
					t.Fatalf("answered before the scan: %+v %v", a.resp, a.err)
				default:
				}
				return engine.WaitingForScan()
			})
			_, err = engine.Scan(code)
			require.NoError(t, err)
			var resp *nexo.Response
			select {
			case a := <-answer:
				require.NoError(t, a.err)
				resp = a.resp
			case <-time.After(10 * time.Second):
				t.Fatal("no answer to the POS")
			}
			require.NotNil(t, resp)
			if tc.fail {
				require.Equal(t, nexo.Failure, resp.Status.Result)
				require.Equal(t, nexo.UnavailableService, resp.Status.ErrorCondition, resp.Status.AdditionalResponse)
				require.NotContains(t, resp.Status.AdditionalResponse, code)
				require.Zero(t, creates.Load(), "nothing reaches PPaaS")
				return
			}
			require.Equal(t, nexo.Success, resp.Status.Result, resp.Status.AdditionalResponse)
			require.Equal(t, int32(1), creates.Load())
			require.True(t, journaledFirst.Load(), "the code was journaled before the create reached PPaaS")
		})
	}
}

// TestReversalNeverReplaysTheTerminalScannedCreate: a Reversal of a
// merchantscan payment whose PPaaS id the journal does not hold (a crash lost
// the deferred QR states) never replays its create, although the journal
// holds the code the terminal's scanner read: the code would charge the
// consumer again. It looks in the device's listing, which this platform does
// not serve, so the Reversal is not confirmed (the POS retries) and nothing
// was sent.
func TestReversalNeverReplaysTheTerminalScannedCreate(t *testing.T) {
	const code = "281666027690188713769014"
	st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
	var (
		mu       sync.Mutex
		replayed []ppaas.CreateRequest
		canceled bool
	)
	platform := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		tx := ppaas.Transaction{TransactionID: "qr-1", Status: ppaas.AwaitingConsumer, PaymentType: "KB", PaymentScenario: ppaas.MerchantScan,
			PaymentAmount: ppaas.Amount{Amount: 2000, Currency: "EUR"}}
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/qrcode-payment/v1/transactions":
			var req ppaas.CreateRequest
			if json.NewDecoder(r.Body).Decode(&req) != nil {
				http.Error(w, `{"error":"bad"}`, http.StatusBadRequest)
				return
			}
			replayed = append(replayed, req)
			tx.ClientTransactionID = req.ClientTransactionID
		case r.Method == http.MethodGet && r.URL.Path == "/qrcode-payment/v1/transactions/qr-1":
		case r.Method == http.MethodPost && r.URL.Path == "/qrcode-payment/v1/transactions/qr-1/cancel":
			canceled, tx.Status = true, ppaas.Cancelled
		default:
			http.Error(w, `{"error":"unexpected"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(tx)
	}))
	t.Cleanup(platform.Close)
	held := newHeldAdvices()
	scan := qr.Method{PaymentType: "KB", Scenario: ppaas.MerchantScan}
	j := journal{st: st, held: held, methods: func(nexo.PaymentRequest) (qr.Method, bool) { return scan, true }}
	engine, err := qr.NewEngine(qr.Config{Brands: map[string]qr.Method{"KBSCAN": scan}},
		qr.NewClient(platform.Client(), platform.URL, qr.Retry{Attempts: 1}), j, advisor{st: st, held: held}, nil)
	require.NoError(t, err)
	j.qr = engine
	req := &nexo.Request{
		Header:  nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeRequest, SaleID: "POS1", ServiceID: "S1", POIID: "POI1"},
		Payment: &nexo.PaymentRequest{Type: nexo.PaymentNormal, Amount: nexo.Amount{Minor: 2000, Currency: "EUR"}, AllowedBrands: []string{"KBSCAN"}},
	}
	id, err := j.Begin(t.Context(), nexo.JournalEntry{SaleID: "POS1", ServiceID: "S1", Category: nexo.CategoryPayment, RequestHash: "h",
		Request: req, State: nexo.TxInProgress, Started: time.Now(), Updated: time.Now()})
	require.NoError(t, err)
	require.NoError(t, j.RecordScan(t.Context(), id, code))

	_, err = apmEngine{qr: engine, journal: j}.Reverse(t.Context(), nexo.Txn{SaleID: "POS1"},
		nexo.ReversalRequest{OriginalPOITransactionID: nexo.TransactionID{ID: id}, Reason: "MerchantCancel"})
	var ne *nexo.Error
	require.ErrorAs(t, err, &ne)
	require.Equal(t, nexo.UnreachableHost, ne.Condition, "not confirmed: the POS asks again")
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, replayed, "the create was replayed with the consumer's code")
	require.False(t, canceled)
}
