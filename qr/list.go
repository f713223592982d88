package qr

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/termagent/termagent/ppaas"
)

// TransactionPage is one page of a device's transactions (List).
type TransactionPage struct {
	Transactions []ppaas.Transaction
	// Next is the after of the next page; empty on the last page.
	Next string
	// Skipped counts the transactions ListSkipping could not decode (List
	// fails on the first one instead).
	Skipped int
}

// List returns the device's transactions created in [from, to], oldest first,
// at most limit (1 to 200) after the transaction named by after (empty: from
// the first). The endpoint is an assumption of the simulator's PPaaS (the
// PPaaS document has none); reconciliation uses it.
func (c *Client) List(ctx context.Context, from, to time.Time, after string, limit int) (TransactionPage, error) {
	return c.list(ctx, from, to, after, limit, false)
}

// ListSkipping is List, leaving out (and counting in Skipped) the
// transactions of a page it cannot decode, for a reader that must get past
// one: the after-sale sweep, which would otherwise stop at that page for
// as long as the transaction is listed. Reconciliation uses List: a
// transaction it cannot read is a difference it cannot explain.
func (c *Client) ListSkipping(ctx context.Context, from, to time.Time, after string, limit int) (TransactionPage, error) {
	return c.list(ctx, from, to, after, limit, true)
}

func (c *Client) list(ctx context.Context, from, to time.Time, after string, limit int, skipBad bool) (TransactionPage, error) {
	const op = "list transactions"
	q := url.Values{}
	q.Set("createdFrom", from.UTC().Format(time.RFC3339Nano))
	q.Set("createdTo", to.UTC().Format(time.RFC3339Nano))
	q.Set("limit", strconv.Itoa(limit))
	if after != "" {
		q.Set("after", after)
	}
	b, err := c.do(ctx, op, http.MethodGet, txPath+"?"+q.Encode(), nil)
	if err != nil {
		return TransactionPage{}, err
	}
	var raw struct {
		Transactions []json.RawMessage `json:"transactions"`
		Next         string            `json:"next"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return TransactionPage{}, fmt.Errorf("%s: decode: %w", op, err)
	}
	if len(raw.Transactions) > limit {
		return TransactionPage{}, fmt.Errorf("%s: %d transactions in a page of %d", op, len(raw.Transactions), limit)
	}
	p := TransactionPage{Next: raw.Next}
	for i, r := range raw.Transactions {
		t, err := c.statuses.DecodeTransaction(r)
		if err != nil && skipBad {
			p.Skipped++
			continue
		}
		if err != nil {
			return TransactionPage{}, fmt.Errorf("%s: transaction %d: %w", op, i, err)
		}
		p.Transactions = append(p.Transactions, t)
	}
	return p, nil
}
