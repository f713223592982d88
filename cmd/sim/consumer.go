package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/sim"
)

const consumerUsage = `Usage: sim consumer [flags] pay|decline|abandon [ID]
       sim consumer [flags] scan CODE


The consumer in front of the virtual terminal, through the simulator's control
API: scans the QR and pays, declines in the wallet, or walks away. ID is the
POI transaction id (what sim pos prints and the POS gets back) or the PPaaS
transaction id (qr-…); without it, the payment waiting on the terminal.
Provider-specific actions without arguments (sim/PROVIDERS.md) work too.

scan CODE shows the terminal's scanner the code of the consumer's wallet: the
merchantscan payment waiting on terminal -serial (default the simulator's
device) takes it, as from the virtual terminal page's scan field.

Flags:
`

// defaultControlURL is where `sim up` serves its control API.
const defaultControlURL = "http://127.0.0.1:9080"

func runConsumer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim consumer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	control := fs.String("control", defaultControlURL, "the simulator's control API")
	serial := fs.String("serial", "", "the terminal whose waiting payment is meant when no ID is given (default: any)")
	fs.Usage = func() { fmt.Fprint(stderr, consumerUsage); fs.PrintDefaults() }
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || len(pos) > 2 {
		fs.Usage()
		return errors.New("want an action (pay, decline or abandon) and optionally a transaction id")
	}
	action, id := pos[0], ""
	if len(pos) == 2 {
		id = pos[1]
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cc := &controlClient{base: strings.TrimSuffix(*control, "/"), http: &http.Client{}}
	if action == "scan" {
		if id == "" {
			return errors.New("scan: want the CODE the consumer's wallet shows")
		}
		return cc.scan(ctx, *serial, id, stdout)
	}
	tx, err := cc.find(ctx, id, *serial)
	if err != nil {
		return err
	}
	after, err := cc.act(ctx, tx.TransactionID, action)
	if err != nil {
		return err // the simulator's message names the action and the transaction
	}
	fmt.Fprintf(stdout, "consumer %s: PPaaS transaction %s (POI transaction %s) is now %s\n", action, after.TransactionID, after.ClientTransactionID, after.Status)
	return nil
}

// controlClient speaks to the simulator's control API (plain HTTP, loopback).
type controlClient struct {
	base string
	http *http.Client
}

// transactions lists the simulated PPaaS's QR transactions, oldest first.
func (c *controlClient) transactions(ctx context.Context) ([]sim.SimTransaction, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/control/transactions", nil)
	if err != nil {
		return nil, err
	}
	var out struct {
		Transactions []sim.SimTransaction `json:"transactions"`
	}
	if err := c.do(req, &out); err != nil {
		return nil, fmt.Errorf("list transactions: %w", err)
	}
	return out.Transactions, nil
}

// find returns the transaction named by id (PPaaS or POI/client id), or the
// newest one still waiting for the consumer when id is empty.
func (c *controlClient) find(ctx context.Context, id, serial string) (sim.SimTransaction, error) {
	txs, err := c.transactions(ctx)
	if err != nil {
		return sim.SimTransaction{}, err
	}
	for i := len(txs) - 1; i >= 0; i-- {
		tx := txs[i]
		switch {
		case id != "" && (tx.TransactionID == id || tx.ClientTransactionID == id):
			return tx, nil
		case id == "" && !tx.Status.Final() && (serial == "" || tx.Serial == serial):
			return tx, nil
		}
	}
	if id != "" {
		return sim.SimTransaction{}, fmt.Errorf("no transaction %q at the simulated PPaaS (%d known; give the POI transaction id that sim pos prints, or the PPaaS qr-… id)", id, len(txs))
	}
	return sim.SimTransaction{}, errors.New("no payment is waiting for the consumer: start one with `sim pos pay 12.50 EUR`")
}

// act makes the consumer (or provider) act on a PPaaS transaction.
func (c *controlClient) act(ctx context.Context, ppaasID, action string) (sim.SimTransaction, error) {
	u := c.base + "/control/transactions/" + url.PathEscape(ppaasID) + "/" + url.PathEscape(action)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader([]byte("{}")))
	if err != nil {
		return sim.SimTransaction{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	var tx sim.SimTransaction
	return tx, c.do(req, &tx)
}

func (c *controlClient) do(req *http.Request, out any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("simulator control API %s unreachable (is `sim up` running?): %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error, Message string }
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return errors.New(e.Message)
		}
		return fmt.Errorf("control API answered %s", resp.Status)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("control API answer: %w", err)
	}
	return nil
}

// scan posts a code to the virtual terminal's scanner (POST /terminal/{serial}/scan).
func (c *controlClient) scan(ctx context.Context, serial, code string, stdout io.Writer) error {
	if serial == "" {
		serial = certs.DefaultSerial
	}
	body, _ := json.Marshal(map[string]string{"code": code})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/terminal/"+url.PathEscape(serial)+"/scan", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		ClientTransactionID string `json:"clientTransactionId"`
		Error               string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&out)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("scan refused (%d): %s", resp.StatusCode, out.Error)
	}
	fmt.Fprintf(stdout, "consumer scan: POI transaction %s took the code\n", out.ClientTransactionID)
	return nil
}
