package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

const posUsage = `Usage: sim pos [flags] <command> [arguments] [flags]

Sends real Nexo Retailer requests to an agent (or any Nexo POI) and prints the
response. Flags go before or after the command. Commands:

  login | logout
  pay AMOUNT CURRENCY          e.g. pay 12.50 EUR -brand KB; while the consumer
                               pays, prints the POI and PPaaS transaction ids and
                               what to do next; Ctrl-C aborts the payment.
                               Consumer-presented: -brand KBSCAN -scan CODE sends the
                               code the POS's scanner read; without -scan the payment
                               waits for the terminal's (sim consumer scan CODE)
  refund POI-TRANSACTION-ID [AMOUNT [CURRENCY]]
                               without AMOUNT: reverse an APM payment (cancel, or
                               refund if approved); with AMOUNT: refund that much of
                               it (CURRENCY default EUR), up to what was paid
  abort [SALE-ID/]SERVICE-ID   abort a payment in progress, as a Busy answer names it
                               (POS1/EGQNN0XB82), and print how it ended
  status [[SALE-ID/]SERVICE-ID] TransactionStatus of a payment (the last one if omitted)
  diagnosis                    POI health, host reachability, outbox depth
  receipt [SALE-ID/]SERVICE-ID reprint a payment's cashier and customer receipts
  totals [DETAIL,...]          GetTotals of the period in progress, grouped by
                               POIID, SaleID, OperatorID, ShiftNumber, TotalsGroupID
  reconcile [sale|sync|previous ID]
                               close the period (sale, the default), compare it
                               with the platform (sync), or reprint a closed one
  devices                      with -cloud: the store's devices and payment methods

Cloud POS: -cloud https://127.0.0.1:9021 sends Nexo v5 through the platform's
Retail API (a session to the -poiid device, or the only one connected)
instead of to -url; the key is -cloud-key (TERMAGENT_RETAIL_KEY).

Message security: -key-id and -key-version with the passphrase in
TERMAGENT_NEXO_PASSPHRASE.

Flags:
`

// posOptions are the flags of sim pos that shape a command beyond its client.
type posOptions struct {
	brand, serviceID, control string
	scan                      string // the code the POS's scanner read (merchantscan)
	timeout                   time.Duration
}

func runPOS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim pos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "https://127.0.0.1:8443/nexo", "the POI's Nexo endpoint")
	caFile := fs.String("ca", ".sim/certs/bundle.pem", "CA bundle that verifies the POI's certificate")
	poiid := fs.String("poiid", "DX8000-220597303201181723869389", "POIID addressed")
	saleID := fs.String("sale-id", "POS1", "SaleID of this POS")
	var o posOptions
	fs.StringVar(&o.brand, "brand", "KB", "payment brand for pay")
	fs.StringVar(&o.scan, "scan", "", "pay: the consumer's wallet code read by the POS's scanner (merchantscan brands, e.g. -brand KBSCAN)")
	fs.StringVar(&o.serviceID, "service-id", "", "ServiceID of the request (default: a fresh one)")
	fs.StringVar(&o.control, "control", defaultControlURL, "the simulator's control API, for the ids and hints pay prints while it waits (empty: none)")
	useXML := fs.Bool("xml", false, "send XML instead of JSON")
	keyID := fs.String("key-id", "", "message security key identifier")
	// The agent's default, so the same key id and passphrase on both sides
	// agree without either version given.
	keyVersion := fs.Int("key-version", agent.DefaultConfig().NexoKeyVersion, "message security key version (default: the agent's nexo_key_version default)")
	asJSON := fs.Bool("json", false, "print the raw response JSON too")
	operator := fs.String("operator", "", "OperatorID sent with login (groups totals)")
	shift := fs.String("shift", "", "ShiftNumber sent with login (groups totals)")
	totalsGroup := fs.String("totals-group", "", "TotalsGroupID sent with login (groups totals)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for the response")
	cloud := fs.String("cloud", "", "the platform's Retail API base URL: send Nexo v5 through the cloud instead of -url")
	cloudKey := fs.String("cloud-key", "", "the POS key of the Retail API (default: TERMAGENT_RETAIL_KEY, else the simulator's)")
	fs.Usage = func() { fmt.Fprint(stderr, posUsage); fs.PrintDefaults() }
	words, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(words) == 0 {
		fs.Usage()
		return errors.New("missing command (pay, refund, abort, status, receipt, diagnosis, totals, reconcile, login, logout)")
	}
	cmd, rest := words[0], words[1:]
	var minor int64
	switch cmd {
	case "devices":
		if *cloud == "" {
			return errors.New("devices: needs -cloud (the platform's Retail API lists the store's devices)")
		}
		if len(rest) > 0 {
			return fmt.Errorf("%s: unexpected arguments %q", cmd, rest)
		}
	case "login", "logout", "diagnosis":
		if len(rest) > 0 {
			return fmt.Errorf("%s: unexpected arguments %q", cmd, rest)
		}
	case "pay":
		if len(rest) != 2 {
			return errors.New("pay: want AMOUNT CURRENCY, e.g. pay 12.50 EUR")
		}
		if minor, err = parseAmount(rest[0], rest[1]); err != nil {
			return fmt.Errorf("pay: %w", err)
		}
	case "refund":
		if _, _, _, err := refundArgs(rest); err != nil { // pos_refund.go
			return err
		}
	case "abort":
		if len(rest) != 1 {
			return errors.New("abort: want the ServiceID of the payment to abort (SALE-ID/SERVICE-ID as a Busy answer prints it, or SERVICE-ID)")
		}
	case "status":
		if len(rest) > 1 {
			return fmt.Errorf("status: unexpected arguments %q", rest[1:])
		}
	case "receipt":
		if len(rest) != 1 {
			return errors.New("receipt: want the ServiceID of the payment ([SALE-ID/]SERVICE-ID)")
		}
	case "totals":
		if len(rest) > 1 {
			return fmt.Errorf("totals: unexpected arguments %q (details go comma-separated)", rest[1:])
		}
	case "reconcile":
		if _, _, err := reconcileArgs(rest); err != nil {
			return err
		}
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}

	client := &nexo.Client{URL: *url, HTTP: &http.Client{Timeout: o.timeout}}
	tr := &http.Transport{}
	if strings.HasPrefix(*url, "https://") || strings.HasPrefix(*cloud, "https://") {
		pool, err := mtls.LoadCAPool(*caFile)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("-ca %s: %w (sim up writes it in .sim/certs of the directory it runs in; elsewhere pass -ca)", *caFile, err)
			}
			return fmt.Errorf("-ca %s: %w", *caFile, err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	client.HTTP.Transport = schemeHint{tr}
	if *useXML {
		client.Codec = nexo.XMLCodec{}
	}
	if *keyID != "" {
		pass := os.Getenv("TERMAGENT_NEXO_PASSPHRASE")
		if pass == "" {
			return errors.New("-key-id needs the passphrase in TERMAGENT_NEXO_PASSPHRASE")
		}
		k, err := nexo.NewKey(*keyID, *keyVersion, pass)
		if err != nil {
			return err
		}
		client.Key = k
	}
	p := &world.POS{Client: client, SaleID: *saleID, POIID: *poiid}
	if *cloud != "" {
		poiSet := false
		fs.Visit(func(f *flag.Flag) { poiSet = poiSet || f.Name == "poiid" })
		if p, err = cloudPOS(ctx, cloudOptions{base: *cloud, key: *cloudKey, poiid: *poiid, poiSet: poiSet, saleID: *saleID, xml: *useXML, list: cmd == "devices"}, client, stdout); err != nil || p == nil {
			return err
		}
	}
	p.OperatorID, p.ShiftNumber, p.TotalsGroupID = *operator, *shift, *totalsGroup
	var resp *nexo.Response
	switch cmd {
	case "pay":
		resp, err = posPay(ctx, p, o, rest[0], minor, strings.ToUpper(rest[1]), stdout)
	default:
		cctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		switch cmd {
		case "login":
			resp, err = p.Login(cctx)
		case "logout":
			resp, err = p.Logout(cctx)
		case "refund":
			resp, err = posRefund(cctx, p, o, rest, stdout) // pos_refund.go
		case "abort":
			resp, err = posAbort(cctx, p, rest[0], stdout)
		case "status":
			ref := ""
			if len(rest) > 0 {
				ref = rest[0]
			}
			resp, err = p.Status(cctx, ref)
		case "diagnosis":
			resp, err = p.Diagnosis(cctx)
		case "receipt":
			resp, err = p.Receipt(cctx, rest[0])
		case "totals":
			var details []string
			if len(rest) > 0 {
				details = strings.Split(rest[0], ",")
			}
			resp, err = p.Totals(cctx, details, nil)
		case "reconcile":
			typ, id, _ := reconcileArgs(rest)
			resp, err = p.Reconcile(cctx, typ, id)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	fmt.Fprintln(stdout, world.Describe(resp))
	if *asJSON && resp != nil {
		raw, _ := nexo.JSONCodec{}.EncodeResponse(resp)
		fmt.Fprintln(stdout, indentJSON(raw))
	}
	if resp != nil && resp.Status.Result == nexo.Failure {
		if m := inProgressRef.FindStringSubmatch(resp.Status.AdditionalResponse); m != nil && resp.Status.ErrorCondition == nexo.Busy {
			fmt.Fprintf(stdout, "  to abort it: %s pos abort %s\n", progName(), m[1])
		}
		return fmt.Errorf("%s: %s", cmd, resp.Status.ErrorCondition)
	}
	if cmd == "pay" && resp.Payment != nil && resp.Payment.POITransactionID.ID != "" {
		fmt.Fprintf(stdout, "  to refund it: %s pos refund %s [AMOUNT CURRENCY]\n", progName(), resp.Payment.POITransactionID.ID)
	}
	return nil
}

// posPay sends a payment and waits for its response. Meanwhile it tells the
// user which transaction the POI opened and how the consumer pays it; on
// Ctrl-C (ctx ends) it aborts its own payment and still waits for the
// POI's answer, so no payment is left open behind the user's back.
func posPay(ctx context.Context, p *world.POS, o posOptions, amount string, minor int64, currency string, stdout io.Writer) (*nexo.Response, error) {
	req := p.ScannedPaymentRequest(o.serviceID, minor, currency, o.brand, o.scan)
	ref := req.Header.SaleID + "/" + req.Header.ServiceID
	fmt.Fprintf(stdout, "Payment %s %s (%s) sent as %s; waiting for the consumer (Ctrl-C aborts it)\n", amount, currency, o.brand, ref)

	// The exchange outlives Ctrl-C: the POS must hear how its payment ended.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.timeout)
	defer cancel()
	type result struct {
		resp *nexo.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := p.Client.Do(rctx, req)
		done <- result{r, err}
	}()

	var found chan sim.SimTransaction
	if o.control != "" {
		cc := &controlClient{base: strings.TrimSuffix(o.control, "/"), http: &http.Client{Timeout: 5 * time.Second}}
		found = make(chan sim.SimTransaction, 1)
		lctx, lcancel := context.WithCancel(rctx)
		lookupDone := make(chan struct{})
		go func() {
			defer close(lookupDone)
			if tx, ok := lookupByOrder(lctx, cc, req.Payment.SaleTransactionID.ID); ok {
				found <- tx
			}
		}()
		defer func() { lcancel(); <-lookupDone }()
	}
	interrupted := ctx.Done()
	for {
		select {
		case tx := <-found:
			found = nil
			printPayHints(stdout, o.control, tx)
		case <-interrupted:
			interrupted = nil
			fmt.Fprintf(stdout, "Ctrl-C: aborting %s and waiting for the POI's answer (Ctrl-C again quits without it)\n", ref)
			actx, acancel := context.WithTimeout(rctx, 10*time.Second)
			if err := p.Abort(actx, ref); err != nil {
				fmt.Fprintf(stdout, "abort %s: %v\n", ref, err)
			}
			acancel()
		case r := <-done:
			if r.err == nil {
				return r.resp, nil
			}
			return askAfterLostAnswer(ctx, p, ref, r.err, stdout)
		}
	}
}

// lookupByOrder polls the simulator's transactions for the one the POI
// created for this payment (the agent sends the SaleTransactionID as the
// order id). It gives up quietly when no simulator answers: sim pos also
// drives real POIs.
func lookupByOrder(ctx context.Context, cc *controlClient, orderID string) (sim.SimTransaction, bool) {
	tick := time.NewTicker(150 * time.Millisecond)
	defer tick.Stop()
	for {
		txs, err := cc.transactions(ctx)
		if err != nil {
			return sim.SimTransaction{}, false
		}
		for _, tx := range txs {
			if tx.Order.OrderID == orderID {
				return tx, true
			}
		}
		select {
		case <-ctx.Done():
			return sim.SimTransaction{}, false
		case <-tick.C:
		}
	}
}

func printPayHints(w io.Writer, control string, tx sim.SimTransaction) {
	consumer := progName() + " consumer"
	if control != defaultControlURL {
		consumer += " -control " + control
	}
	fmt.Fprintf(w, `  POI transaction:   %s   (for refund, and for the consumer)
  PPaaS transaction: %s
  The consumer pays on the virtual terminal %s/terminal/%s
  or from another shell: %s pay %s   (or decline, abandon)
`, tx.ClientTransactionID, tx.TransactionID, strings.TrimSuffix(control, "/"), tx.Serial, consumer, tx.ClientTransactionID)
}

// posAbort sends an Abort (which Nexo answers with nothing) and then asks the
// POI how the payment ended, so the user learns whether the abort did anything.
func posAbort(ctx context.Context, p *world.POS, ref string, stdout io.Writer) (*nexo.Response, error) {
	if err := p.Abort(ctx, ref); err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "Abort sent for %s; the payment's outcome:\n", ref)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := p.Status(ctx, ref)
		if err != nil || resp.Status.Result != nexo.Failure || resp.Status.ErrorCondition != nexo.InProgress {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return resp, nil
		case <-tick.C:
		}
	}
}

// schemeHint turns the two scheme mix-ups into plain words: http:// to a TLS
// port (Go's server answers 400 "Client sent an HTTP request to an HTTPS
// server") and https:// to a plain-HTTP port (a TLS record header error).
type schemeHint struct{ rt http.RoundTripper }

func (h schemeHint) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.rt.RoundTrip(r)
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		return nil, fmt.Errorf("%s: this server speaks plain HTTP, not HTTPS: use -url http://%s%s", r.URL.Host, r.URL.Host, r.URL.Path)
	}
	if err != nil || resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "" {
		return resp, err
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if bytes.Contains(head, []byte("HTTP request to an HTTPS server")) {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: this server speaks HTTPS: use -url https://%s%s", r.URL.Host, r.URL.Host, r.URL.Path)
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	return resp, nil
}

// inProgressRef finds the payment a Busy answer names.
var inProgressRef = regexp.MustCompile(`transaction (\S+/\S+) in progress`)

var decimalAmount = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// parseAmount reads a major-unit amount ("12.50") into minor units, respecting
// the currency's exponent; it names the argument in its errors. Only plain
// decimals are amounts: no exponents, fractions or signs.
func parseAmount(s, currency string) (int64, error) {
	exp, ok := nexo.CurrencyExponent(strings.ToUpper(currency))
	if !ok {
		return 0, fmt.Errorf("currency %q: not an ISO 4217 code this agent knows", currency)
	}
	r, ok := new(big.Rat).SetString(s)
	if !decimalAmount.MatchString(s) || !ok || r.Sign() <= 0 {
		return 0, fmt.Errorf("amount %q: want a positive decimal number such as 12.50", s)
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)))
	if !r.IsInt() || !r.Num().IsInt64() {
		return 0, fmt.Errorf("amount %q: %s has %d decimals", s, currency, exp)
	}
	return r.Num().Int64(), nil
}

func indentJSON(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}

// reconcileArgs reads the arguments of sim pos reconcile.
func reconcileArgs(rest []string) (typ, id string, err error) {
	switch {
	case len(rest) == 0 || (len(rest) == 1 && rest[0] == "sale"):
		return nexo.ReconSale, "", nil
	case len(rest) == 1 && rest[0] == "sync":
		return nexo.ReconAcquirerSynchronisation, "", nil
	case len(rest) == 2 && rest[0] == "previous":
		return nexo.ReconPrevious, rest[1], nil
	}
	return "", "", fmt.Errorf("reconcile: want sale, sync or previous ID, not %q", rest)
}

// askAfterLostAnswer is what a POS does when its payment's answer is lost (a
// timeout, a broken connection): the outcome is unknown, not a failure, so it
// asks TransactionStatus and takes the journaled answer if there is one.
func askAfterLostAnswer(ctx context.Context, p *world.POS, ref string, lost error, stdout io.Writer) (*nexo.Response, error) {
	fmt.Fprintf(stdout, "no answer from the POI (%v); asking TransactionStatus for %s, as a POS does with a lost answer\n", lost, ref)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	st, err := p.Status(sctx, ref)
	switch {
	case err != nil:
		return nil, fmt.Errorf("payment %s: answer lost (%v) and TransactionStatus failed (%v): its outcome is unknown, ask again with `sim pos status %s`", ref, lost, err, ref)
	case st.Status.Result == nexo.Success && st.TransactionStatus != nil && st.TransactionStatus.Repeated != nil:
		return st.TransactionStatus.Repeated, nil
	}
	return nil, fmt.Errorf("payment %s: answer lost (%v); TransactionStatus: %s %s — not final yet: ask again with `sim pos status %s`, never pay it again",
		ref, lost, st.Status.ErrorCondition, st.Status.AdditionalResponse, ref)
}
