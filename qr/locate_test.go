package qr

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/ppaas"
)

// walletPPaaS is a PPaaS that charges a merchantscan code at create, as the
// simulator's KB wallet does, and lists the device's transactions by creation
// time (the listing the simulator assumes). Create is idempotent per
// clientTransactionId. It counts the calls.
type walletPPaaS struct {
	mu      sync.Mutex
	txs     []ppaas.Transaction
	created []time.Time
	creates int // create calls
	refunds int
	cancels int
	lists   int
	listErr bool // the listing answers 503
	pageLen int  // transactions per listing page (0: the request's limit)
}

func newWalletPPaaS(t *testing.T) (*walletPPaaS, *Client) {
	p := &walletPPaaS{}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	return p, NewClient(srv.Client(), srv.URL, Retry{Attempts: 1, BaseDelay: time.Millisecond})
}

// made records a transaction the payment's original create made at.
func (p *walletPPaaS) made(tx ppaas.Transaction, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.txs = append(p.txs, tx)
	p.created = append(p.created, at)
}

func (p *walletPPaaS) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	find := func(id string) int {
		for i, tx := range p.txs {
			if tx.TransactionID == id {
				return i
			}
		}
		return -1
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == txPath:
		var req ppaas.CreateRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		p.creates++
		for _, tx := range p.txs { // idempotent per clientTransactionId
			if tx.ClientTransactionID == req.ClientTransactionID {
				_ = json.NewEncoder(w).Encode(tx)
				return
			}
		}
		tx := ppaas.Transaction{TransactionID: "qr-" + strconv.Itoa(len(p.txs)+1), ClientTransactionID: req.ClientTransactionID, Status: ppaas.Approved,
			PaymentType: req.PaymentType, PaymentScenario: req.PaymentScenario, PaymentAmount: req.PaymentAmount}
		p.txs, p.created = append(p.txs, tx), append(p.created, time.Now())
		_ = json.NewEncoder(w).Encode(tx)
	case r.Method == http.MethodGet && r.URL.Path == txPath:
		p.lists++
		if p.listErr {
			http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		q := r.URL.Query()
		from, _ := time.Parse(time.RFC3339Nano, q.Get("createdFrom"))
		to, _ := time.Parse(time.RFC3339Nano, q.Get("createdTo"))
		limit, _ := strconv.Atoi(q.Get("limit"))
		if p.pageLen > 0 {
			limit = min(limit, p.pageLen)
		}
		page := struct {
			Transactions []ppaas.Transaction `json:"transactions"`
			Next         string              `json:"next,omitempty"`
		}{Transactions: []ppaas.Transaction{}}
		started := q.Get("after") == ""
		for i, tx := range p.txs {
			if !started {
				started = tx.TransactionID == q.Get("after")
				continue
			}
			if p.created[i].Before(from) || p.created[i].After(to) {
				continue
			}
			if len(page.Transactions) == limit {
				page.Next = page.Transactions[limit-1].TransactionID
				break
			}
			page.Transactions = append(page.Transactions, tx)
		}
		_ = json.NewEncoder(w).Encode(page)
	case r.Method == http.MethodPost && len(r.URL.Path) > len(txPath):
		id, op := "", ""
		for _, suffix := range []string{"/cancel", "/refund"} {
			if n := len(r.URL.Path) - len(suffix); n > len(txPath) && r.URL.Path[n:] == suffix {
				id, op = r.URL.Path[len(txPath)+1:n], suffix
			}
		}
		i := find(id)
		if i < 0 {
			http.Error(w, `{"error":"not_found"}`, http.StatusNotFound)
			return
		}
		if op == "/refund" {
			var req ppaas.RefundRequest
			_ = json.NewDecoder(r.Body).Decode(&req)
			p.refunds++
			p.txs[i].RefundedAmount = p.txs[i].PaymentAmount.Amount
			_ = json.NewEncoder(w).Encode(ppaas.Refund{RefundID: "rf-" + id, ClientRefundID: req.ClientRefundID, TransactionID: id, Status: ppaas.RefundDone, Amount: req.Amount})
			return
		}
		p.cancels++
		p.txs[i].Status = ppaas.Cancelled
		_ = json.NewEncoder(w).Encode(p.txs[i])
	case r.Method == http.MethodGet:
		i := find(r.URL.Path[len(txPath)+1:])
		if i < 0 {
			http.Error(w, `{"error":"not_found"}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(p.txs[i])
	default:
		http.Error(w, `{"error":"unexpected"}`, http.StatusBadRequest)
	}
}

func (p *walletPPaaS) counts() (creates, refunds, cancels int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.creates, p.refunds, p.cancels
}

// A reversal of a merchantscan payment whose PPaaS id is unknown (an advice
// queued after its create failed, a POS Reversal) never replays the create:
// PPaaS would charge the consumer's code (and the reversal refund it). The
// payment is located in the device's listing and reversed if found; not
// found once its create's window has passed, nothing was charged; a listing
// that cannot tell is no answer.
func TestReverseNeverReplaysAMerchantScanCreate(t *testing.T) {
	const ctid = "9236613c-ef7e-4a98-bfb6-16048c0e4f9b"
	amount := ppaas.Amount{Amount: 4200, Currency: "EUR"}
	create := ppaas.CreateRequest{PaymentType: "KB", PaymentScenario: ppaas.MerchantScan, ScannedPaymentID: "281666027690188713769014",
		ClientTransactionID: ctid, PaymentAmount: amount, Order: ppaas.Order{OrderID: "ORDER-1"}}
	long := time.Now().Add(-3 * time.Hour)
	for _, tc := range []struct {
		name    string
		started time.Time
		made    *ppaas.Transaction // what the original create made at PPaaS
		listErr bool
		state   ppaas.State // the outcome's; "" for an error
		errIs   error
		refunds int
		cancels int
	}{
		{name: "never reached PPaaS", started: long, state: NeverCreated},
		{name: "reached PPaaS and charged", started: long, state: ppaas.Refunded, refunds: 1,
			made: &ppaas.Transaction{TransactionID: "qr-orig", ClientTransactionID: ctid, Status: ppaas.Approved, PaymentAmount: amount}},
		{name: "reached PPaaS, undecided", started: long, state: ppaas.Cancelled, cancels: 1,
			made: &ppaas.Transaction{TransactionID: "qr-orig", ClientTransactionID: ctid, Status: ppaas.Pending, PaymentAmount: amount}},
		{name: "create may still arrive", started: time.Now(), errIs: ErrNotSettled},
		{name: "listing unavailable", started: long, listErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, c := newWalletPPaaS(t)
			p.listErr = tc.listErr
			if tc.made != nil {
				p.made(*tc.made, tc.started.Add(time.Second))
			}
			e, err := NewEngine(Config{}, c, &memRecorder{}, nopAdvisor{}, nil)
			require.NoError(t, err)
			// Both ways in: a POS Reversal (Started from the journal) and an advice.
			for _, reverse := range []func() (Outcome, error){
				func() (Outcome, error) {
					return e.Reverse(t.Context(), ReverseRequest{ClientTransactionID: ctid, Create: create, Started: tc.started, Reason: "test"})
				},
				func() (Outcome, error) {
					return e.ResolveAdvice(t.Context(), Advice{Kind: AdviceReverse, ClientTransactionID: ctid, Create: create, Amount: amount,
						At: tc.started.Add(35 * time.Second), Started: tc.started})
				},
			} {
				o, err := reverse()
				creates, refunds, cancels := p.counts()
				require.Zero(t, creates, "a merchantscan create was replayed: the consumer's code was charged")
				require.Equal(t, tc.refunds, refunds)
				require.Equal(t, tc.cancels, cancels)
				if tc.state == "" {
					require.Error(t, err)
					require.NotErrorIs(t, err, ErrNeverCreated)
					if tc.errIs != nil {
						require.ErrorIs(t, err, tc.errIs)
					}
					continue
				}
				require.NoError(t, err)
				require.Equal(t, tc.state, o.State)
				require.Equal(t, ctid, o.ClientTransactionID)
			}
		})
	}
}

// A consumerscan reversal still replays its create: it only makes a
// transaction nobody has paid, which is then cancelled.
func TestReverseReplaysAConsumerScanCreate(t *testing.T) {
	p, c := newWalletPPaaS(t)
	e, err := NewEngine(Config{}, c, &memRecorder{}, nopAdvisor{}, nil)
	require.NoError(t, err)
	_, err = e.Reverse(t.Context(), ReverseRequest{ClientTransactionID: "9236613c-ef7e-4a98-bfb6-16048c0e4f9b", Started: time.Now(), Create: ppaas.CreateRequest{PaymentType: "KB", PaymentScenario: ppaas.ConsumerScan,
		ClientTransactionID: "9236613c-ef7e-4a98-bfb6-16048c0e4f9b", PaymentAmount: ppaas.Amount{Amount: 100, Currency: "EUR"}, Order: ppaas.Order{OrderID: "O1"}}})
	require.NoError(t, err) // the fake approves at create: refunded
	creates, refunds, _ := p.counts()
	require.Equal(t, 1, creates)
	require.Equal(t, 1, refunds)
}

func TestWhereRefusesToReplayAMerchantScanCreate(t *testing.T) {
	p, c := newWalletPPaaS(t)
	e, err := NewEngine(Config{}, c, &memRecorder{}, nopAdvisor{}, nil)
	require.NoError(t, err)
	_, err = e.Where(t.Context(), "", ppaas.CreateRequest{PaymentType: "KB", PaymentScenario: ppaas.MerchantScan, ClientTransactionID: "c1",
		ScannedPaymentID: "281666027690188713769014", PaymentAmount: ppaas.Amount{Amount: 100, Currency: "EUR"}})
	require.ErrorIs(t, err, ErrWouldCharge)
	creates, _, _ := p.counts()
	require.Zero(t, creates)
}

// Locate reads every page of the create's window, widened for the clocks,
// and ignores the device's other transactions.
func TestLocateReadsTheCreatesWindow(t *testing.T) {
	p, c := newWalletPPaaS(t)
	p.pageLen = 2
	started := time.Now().Add(-time.Hour)
	e, err := NewEngine(Config{LocateMargin: time.Minute}, c, &memRecorder{}, nopAdvisor{}, nil)
	require.NoError(t, err)
	sentBy := e.CreateSentBy(started)
	require.Equal(t, started.Add(150*time.Second), sentBy) // default Timeout 120 s + CreateTimeout 30 s
	for i, at := range []time.Duration{-2 * time.Minute, -30 * time.Second, 0, time.Second, 2 * time.Second, 150*time.Second + 30*time.Second} {
		p.made(ppaas.Transaction{TransactionID: "other-" + strconv.Itoa(i), ClientTransactionID: "other-" + strconv.Itoa(i), Status: ppaas.Approved}, started.Add(at))
	}
	_, err = e.Locate(t.Context(), "mine", started, sentBy)
	require.ErrorIs(t, err, ErrNeverCreated)

	p.made(ppaas.Transaction{TransactionID: "qr-mine", ClientTransactionID: "mine", Status: ppaas.Approved}, sentBy.Add(50*time.Second))
	got, err := e.Locate(t.Context(), "mine", started, sentBy)
	require.NoError(t, err)
	require.Equal(t, "qr-mine", got.TransactionID)
	p.mu.Lock()
	lists := p.lists
	p.mu.Unlock()
	require.Greater(t, lists, 3, "the window spans several pages")

	_, err = e.Locate(t.Context(), "mine", time.Time{}, sentBy)
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrNeverCreated))

	// A terminal clock hours off the platform's: PPaaS's createdAt lies far
	// outside the window in the terminal's time, yet the payment is found,
	// never taken for one not charged.
	p.made(ppaas.Transaction{TransactionID: "qr-skewed", ClientTransactionID: "skewed", Status: ppaas.Approved}, sentBy.Add(3*time.Hour))
	got, err = e.Locate(t.Context(), "skewed", started, sentBy)
	require.NoError(t, err)
	require.Equal(t, "qr-skewed", got.TransactionID)
}
