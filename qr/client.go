package qr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/termagent/termagent/internal/jsonw"
	"github.com/termagent/termagent/ppaas"
)

// ErrUnreachable marks a call whose outcome is unknown: every attempt failed in
// transport or with a 5xx. Callers branch on it (errors.Is) to answer
// UnreachableHost and queue an advice instead of reporting a decline.
var ErrUnreachable = errors.New("ppaas unreachable")

// APIError is a definite answer from PPaaS with a 4xx status.
type APIError struct {
	Op         string
	StatusCode int
	Code       string `json:"error"`
	Message    string `json:"message"`
	// Transaction is set when the error body carries the transaction (409 on a
	// cancel of a decided transaction).
	Transaction *ppaas.Transaction `json:"transaction,omitempty"`
	// AfterUncertain: an earlier attempt of the same call failed in a way that
	// may have reached PPaaS (a transport error, a 5xx). For a create this
	// refusal then does not prove that no transaction exists.
	AfterUncertain bool `json:"-"`
}

// clipText bounds the platform's text in e, as the ppaas decoder does a
// transaction's: the message reaches the POS's answer and the journal.
func (e *APIError) clipText() {
	e.Code = ppaas.Clip(e.Code, ppaas.MaxIDLen)
	e.Message = ppaas.Clip(e.Message, ppaas.MaxTextLen)
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: ppaas answered %d %s: %s", e.Op, e.StatusCode, e.Code, e.Message)
}

// Retry is the retry policy for transient failures.
type Retry struct {
	Attempts   int           // total attempts, default 4
	BaseDelay  time.Duration // first backoff, default 100 ms
	MaxDelay   time.Duration // backoff cap, default 2 s
	PerAttempt time.Duration // deadline of one attempt, default 10 s
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 4
	}
	if r.BaseDelay <= 0 {
		r.BaseDelay = 100 * time.Millisecond
	}
	if r.MaxDelay <= 0 {
		r.MaxDelay = 2 * time.Second
	}
	if r.PerAttempt <= 0 {
		r.PerAttempt = 10 * time.Second
	}
	return r
}

// backoff returns the wait before attempt n (n ≥ 1): full jitter over a capped
// exponential, so many terminals retrying after one outage do not synchronise.
func backoff(base, maxDelay time.Duration, n int) time.Duration {
	d := base << min(n-1, 20)
	if d <= 0 || d > maxDelay {
		d = maxDelay
	}
	return d/2 + rand.N(d/2+1)
}

// Client calls PPaaS's qrcode-payment API. The http.Client must carry device
// authentication (mTLS and bearer token); Client adds retries on top.
type Client struct {
	base     string
	http     *http.Client
	retry    Retry
	statuses *ppaas.Statuses
}

// WithStatuses makes c decode status spellings with s (see Statuses) in every
// answer it reads: create, status read, poll, cancel (and its refusal's
// transaction), listing and refund. Call it before using c.
func (c *Client) WithStatuses(s *ppaas.Statuses) *Client {
	c.statuses = s
	return c
}

// NewClient returns a Client for baseURL (e.g. https://127.0.0.1:9021).
//
// Every call runs under its attempt's deadline (Retry.PerAttempt), which
// bounds the whole exchange, body included. hc's Timeout, when no shorter,
// adds nothing but what net/http starts for it on every request through a
// RoundTripper it does not know, as the agent's token-adding one (a goroutine
// and a timer, on the payment's path): the Client then uses a copy of hc
// without it, sharing hc's Transport and connections. hc is not changed.
func NewClient(hc *http.Client, baseURL string, r Retry) *Client {
	r = r.withDefaults()
	if hc != nil && hc.Timeout >= r.PerAttempt {
		cp := *hc
		cp.Timeout = 0
		hc = &cp
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), http: hc, retry: r}
}

const txPath = "/qrcode-payment/v1/transactions"

// marshalCreate is json.Marshal(r), byte for byte, without reflection: the
// body of every payment's create.
func marshalCreate(r ppaas.CreateRequest) []byte {
	b := make([]byte, 0, 192+len(r.PaymentType)+len(r.PaymentScenario)+len(r.ScannedPaymentID)+len(r.ClientTransactionID)+
		len(r.PaymentAmount.Currency)+len(r.Order.OrderID)+len(r.Order.OrderDescription))
	b = append(b, `{"paymentType":`...)
	b = jsonw.String(b, r.PaymentType)
	b = append(b, `,"paymentScenario":`...)
	b = jsonw.String(b, string(r.PaymentScenario))
	if r.ScannedPaymentID != "" {
		b = jsonw.String(append(b, `,"scannedPaymentId":`...), r.ScannedPaymentID)
	}
	b = append(b, `,"clientTransactionId":`...)
	b = jsonw.String(b, r.ClientTransactionID)
	b = append(b, `,"paymentAmount":{"amount":`...)
	b = jsonw.Int(b, r.PaymentAmount.Amount)
	b = append(b, `,"currency":`...)
	b = jsonw.String(b, r.PaymentAmount.Currency)
	b = append(b, `},"order":{"orderId":`...)
	b = jsonw.String(b, r.Order.OrderID)
	if r.Order.OrderDescription != "" {
		b = jsonw.String(append(b, `,"orderDescription":`...), r.Order.OrderDescription)
	}
	return append(b, "}}"...)
}

// Create starts a transaction. Retries reuse req.ClientTransactionID, which
// PPaaS de-duplicates per device, so a retry never creates a second charge.
func (c *Client) Create(ctx context.Context, req ppaas.CreateRequest) (ppaas.Transaction, error) {
	if err := req.Validate(); err != nil {
		return ppaas.Transaction{}, fmt.Errorf("create transaction: %w", err)
	}
	t, err := c.transaction(ctx, "create transaction", http.MethodPost, txPath, marshalCreate(req))
	if err != nil {
		hideScannedCode(err, req.ScannedPaymentID)
	}
	return t, err
}

// hideScannedCode keeps the consumer's code out of a refusal of the create
// that quotes it: the refusal's text reaches the logs, the journal and the
// POS, and the code is the consumer's payment credential.
func hideScannedCode(err error, code string) {
	var ae *APIError
	if code == "" || !errors.As(err, &ae) {
		return
	}
	ae.Code = strings.ReplaceAll(ae.Code, code, "[scanned code]")
	ae.Message = strings.ReplaceAll(ae.Message, code, "[scanned code]")
}

// Get fetches the current state of a transaction.
func (c *Client) Get(ctx context.Context, id string) (ppaas.Transaction, error) {
	return c.transaction(ctx, "get transaction", http.MethodGet, txPath+"/"+url.PathEscape(id), nil)
}

// Cancel cancels a transaction not yet decided. Cancelling an already decided
// transaction yields an *APIError with StatusCode 409 and the Transaction set.
func (c *Client) Cancel(ctx context.Context, id string) (ppaas.Transaction, error) {
	return c.transaction(ctx, "cancel transaction", http.MethodPost, txPath+"/"+url.PathEscape(id)+"/cancel", []byte("{}"))
}

// Refund refunds (part of) an approved transaction; req.ClientRefundID is the
// idempotency key reused across retries.
func (c *Client) Refund(ctx context.Context, id string, req ppaas.RefundRequest) (ppaas.Refund, error) {
	if req.ClientRefundID == "" || req.Amount.Amount <= 0 {
		return ppaas.Refund{}, errors.New("refund transaction: clientRefundId and a positive amount are required")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return ppaas.Refund{}, fmt.Errorf("refund transaction: %w", err)
	}
	b, err := c.do(ctx, "refund transaction", http.MethodPost, txPath+"/"+url.PathEscape(id)+"/refund", body)
	if err != nil {
		return ppaas.Refund{}, err
	}
	r, err := c.statuses.DecodeRefund(b)
	if err != nil {
		return ppaas.Refund{}, fmt.Errorf("refund transaction: %w", err)
	}
	return r, nil
}

func (c *Client) transaction(ctx context.Context, op, method, path string, body []byte) (ppaas.Transaction, error) {
	b, err := c.do(ctx, op, method, path, body)
	if err != nil {
		return ppaas.Transaction{}, err
	}
	t, err := c.statuses.DecodeTransaction(b)
	if err != nil {
		return ppaas.Transaction{}, fmt.Errorf("%s: %w", op, err)
	}
	return t, nil
}

// do sends one logical request with retries and returns the 2xx body.
func (c *Client) do(ctx context.Context, op, method, path string, body []byte) ([]byte, error) {
	var last error
	for attempt := 1; attempt <= c.retry.Attempts; attempt++ {
		if attempt > 1 {
			t := time.NewTimer(backoff(c.retry.BaseDelay, c.retry.MaxDelay, attempt-1))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("%s: %w: %w (last: %w)", op, ErrUnreachable, context.Cause(ctx), last)
			case <-t.C:
			}
		}
		b, retry, err := c.once(ctx, op, method, path, body)
		if err == nil {
			return b, nil
		}
		if !retry {
			var ae *APIError
			if last != nil && errors.As(err, &ae) {
				ae.AfterUncertain = true
			}
			return nil, err
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%s: %w after %d attempts: %w", op, ErrUnreachable, c.retry.Attempts, last)
}

func (c *Client) once(ctx context.Context, op, method, path string, body []byte) (_ []byte, retry bool, _ error) {
	ctx, cancel := context.WithTimeout(ctx, c.retry.PerAttempt)
	defer cancel()
	var rd io.Reader
	if body != nil {
		// bytes.Reader lets http.NewRequest set GetBody, so the transport can
		// replay the body when it re-authenticates after a 401.
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, true, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, true, fmt.Errorf("%s: read response: %w", op, err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return b, false, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, true, fmt.Errorf("%s: ppaas answered %d", op, resp.StatusCode)
	}
	ae := &APIError{Op: op, StatusCode: resp.StatusCode}
	_ = json.Unmarshal(b, ae) // a body that is not JSON still leaves a useful status
	ae.clipText()
	if ae.Transaction != nil && ae.Transaction.TransactionID == "" {
		ae.Transaction = nil
	}
	if ae.Transaction != nil {
		ae.Transaction.ClipText()
		ae.Transaction.RawStatus = string(ae.Transaction.Status)
		ae.Transaction.Status = c.statuses.State(ae.Transaction.RawStatus)
	}
	return nil, false, ae
}
