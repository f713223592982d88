package sim

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/termagent/termagent/ppaas"
)

// Listing a device's transactions (issue 14, AcquirerSynchronisation). The
// PPaaS document describes no listing endpoint; this one is our assumption of
// what the platform offers for reconciliation:
//
//	GET /qrcode-payment/v1/transactions?createdFrom=RFC3339&createdTo=RFC3339&after=ID&limit=N
//
// answers {"transactions":[…], "next":"ID"} with the calling device's
// transactions created in [createdFrom, createdTo], oldest first, at most
// limit (default and maximum 200) per page; next, when set, is the after of
// the next page.

const maxListLimit = 200

func (pm *payments) handleList(w http.ResponseWriter, r *http.Request) {
	dev, _ := DeviceFrom(r.Context())
	q := r.URL.Query()
	var from, to time.Time
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"createdFrom", &from}, {"createdTo", &to}} {
		v := q.Get(p.name)
		if v == "" {
			apiError(w, http.StatusBadRequest, "invalid_request", p.name+" is required")
			return
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			apiError(w, http.StatusBadRequest, "invalid_request", p.name+" is not an RFC 3339 time")
			return
		}
		*p.t = t
	}
	limit := maxListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			apiError(w, http.StatusBadRequest, "invalid_request", "limit must be 1 to 200")
			return
		}
		limit = n
	}
	after := q.Get("after")
	pm.mu.Lock()
	var mine []*SimTransaction
	for _, tx := range pm.byID {
		if tx.Serial == dev.Serial && !tx.CreatedAt.Before(from) && !tx.CreatedAt.After(to) {
			mine = append(mine, tx)
		}
	}
	sort.Slice(mine, func(i, j int) bool {
		if !mine[i].CreatedAt.Equal(mine[j].CreatedAt) {
			return mine[i].CreatedAt.Before(mine[j].CreatedAt)
		}
		return mine[i].TransactionID < mine[j].TransactionID
	})
	start := 0
	if after != "" {
		start = len(mine)
		for i, tx := range mine {
			if tx.TransactionID == after {
				start = i + 1
				break
			}
		}
	}
	page := struct {
		Transactions []ppaas.Transaction `json:"transactions"`
		Next         string              `json:"next,omitempty"`
	}{Transactions: []ppaas.Transaction{}}
	for _, tx := range mine[start:] {
		if len(page.Transactions) == limit {
			page.Next = page.Transactions[limit-1].TransactionID
			break
		}
		page.Transactions = append(page.Transactions, pm.spelledLocked(tx.Transaction))
	}
	pm.mu.Unlock()
	writeJSON(w, http.StatusOK, page)
}
