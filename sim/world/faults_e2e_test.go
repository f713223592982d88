package world_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

// ctlClient drives a simulator's control API over HTTP, as integrators'
// scripts do.
type ctlClient struct {
	t    *testing.T
	base string
}

// call sends a JSON body (nil for none) and decodes the answer into out (nil
// to discard it); it returns the HTTP status.
func (c ctlClient) call(method, path string, body, out any) int {
	c.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(c.t, err)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, rd)
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		require.NoError(c.t, json.NewDecoder(resp.Body).Decode(out))
	}
	return resp.StatusCode
}

type ctlEvents struct {
	Stats  sim.IngestStats     `json:"stats"`
	Events []sim.IngestedEvent `json:"events"`
}

// The fault knobs of the control API act on a real agent: API faults with a
// count are consumed and then gone, dropped provider events leave the agent to
// poll, and an outage of the events ingest holds the agent's transaction
// results in its outbox until the faults are cleared; then each arrives once.
func TestControlAPIFaultsReachTheAgent(t *testing.T) {
	w, pos := worldrig.Start(t, worldrig.Agent(func(c *agent.Config) {
		c.PaymentTimeout = 20 * time.Second
		c.EventWait = 200 * time.Millisecond
	}))
	ctl := ctlClient{t: t, base: w.PPaaS.ControlURL()}
	serial := w.Agent.Serial()

	pay := func(serviceID, action string) *nexo.Response {
		t.Helper()
		done := make(chan *nexo.Response, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, err := pos.Pay(ctx, serviceID, 1200, "EUR", "KB")
			if err != nil {
				r = nil
			}
			done <- r
		}()
		wctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		var id string
		for s := range w.PPaaS.Terminals().Watch(wctx, serial) {
			if s.State == "awaiting_consumer" && s.ClientTransactionID != "" {
				txs, _ := w.PPaaS.Transactions()
				if txs[len(txs)-1].TransactionID == s.TransactionID {
					id = s.TransactionID
					break
				}
			}
		}
		require.NotEmpty(t, id, "the terminal showed the QR")
		require.Equal(t, http.StatusOK, ctl.call(http.MethodPost, "/control/transactions/"+id+"/"+action, nil, nil))
		select {
		case r := <-done:
			require.NotNil(t, r, "a Nexo answer")
			return r
		case <-time.After(20 * time.Second):
			t.Fatal("no payment answer")
			return nil
		}
	}

	// Two creates refused with 503 before reaching the API, every provider
	// event dropped: retried, then decided by polling.
	require.Equal(t, http.StatusCreated, ctl.call(http.MethodPost, "/control/faults",
		map[string]any{"path": "/qrcode-payment/v1/transactions", "method": "POST", "status": 503, "count": 2}, nil))
	require.Equal(t, http.StatusOK, ctl.call(http.MethodPost, "/control/payments/faults", sim.PaymentFaults{DropEvents: 10}, nil))
	r := pay("CTL1", "pay")
	require.Equal(t, nexo.Success, r.Status.Result, world.Describe(r))
	var faults []sim.Fault
	require.Equal(t, http.StatusOK, ctl.call(http.MethodGet, "/control/faults", nil, &faults))
	require.Empty(t, faults, "a fault with a count is gone once used")
	var txs struct {
		Transactions []sim.SimTransaction `json:"transactions"`
		Charges      map[string]int       `json:"charges"`
	}
	require.Equal(t, http.StatusOK, ctl.call(http.MethodGet, "/control/transactions", nil, &txs))
	require.Len(t, txs.Transactions, 1)
	require.Equal(t, 1, txs.Transactions[0].CreateCalls, "the refused creates never reached the API")
	require.Equal(t, 1, txs.Charges[serial])
	require.Equal(t, http.StatusOK, ctl.call(http.MethodPost, "/control/payments/faults", sim.PaymentFaults{}, nil))

	// The agent reports each outcome to the events ingest; while the ingest is
	// down the results wait in the agent's outbox.
	events := func() ctlEvents {
		var ev ctlEvents
		require.Equal(t, http.StatusOK, ctl.call(http.MethodGet, "/control/events", nil, &ev))
		return ev
	}
	// CTL1's result and its digital receipt (issue 14).
	require.Eventually(t, func() bool { return events().Stats.Events == 2 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, http.StatusCreated, ctl.call(http.MethodPost, "/control/faults",
		map[string]any{"path": sim.EventsPath, "reset": true}, nil))
	r = pay("CTL2", "decline")
	require.Equal(t, nexo.Refusal, r.Status.ErrorCondition, world.Describe(r))
	require.Eventually(t, func() bool {
		var f []sim.Fault
		ctl.call(http.MethodGet, "/control/faults", nil, &f)
		return len(f) == 1 && f[0].Hits >= 2
	}, 10*time.Second, 10*time.Millisecond, "the agent keeps trying")
	require.Equal(t, 2, events().Stats.Events)
	require.Equal(t, http.StatusNoContent, ctl.call(http.MethodDelete, "/control/faults", nil, nil))
	require.Eventually(t, func() bool { return events().Stats.Events == 3 }, 10*time.Second, 10*time.Millisecond)

	ev := events()
	require.Zero(t, ev.Stats.Duplicates)
	var (
		results  []agent.TransactionResult
		receipts []agent.DigitalReceipt
	)
	for _, e := range ev.Events {
		require.Equal(t, serial, e.Serial)
		if e.Kind == "receipt" {
			var d agent.DigitalReceipt
			require.NoError(t, json.Unmarshal(e.Payload, &d))
			receipts = append(receipts, d)
			continue
		}
		require.Equal(t, "transaction-result", e.Kind)
		var res agent.TransactionResult
		require.NoError(t, json.Unmarshal(e.Payload, &res))
		results = append(results, res)
	}
	require.Equal(t, []string{"CTL1", "CTL2"}, []string{results[0].ServiceID, results[1].ServiceID}, "in order")
	require.Equal(t, string(nexo.Success), results[0].Result)
	require.Equal(t, string(nexo.Refusal), results[1].ErrorCondition)
	require.Len(t, receipts, 1, "a receipt for the Success only")
	require.Equal(t, "CTL1", receipts[0].ServiceID)
}
