package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/sim/world"
)

// runDemo runs one complete QR payment on loopback: the built-in POS asks the agent
// for 20.00 EUR with the KB wallet, the terminal shows the provider's QR (printed
// here), the simulated consumer scans and pays, and the agent answers the POS.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var wf worldFlags
	wf.register(fs, "", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
	amount := fs.String("amount", "20.00", "amount in major units")
	currency := fs.String("currency", "EUR", "ISO 4217 currency")
	brand := fs.String("brand", "KB", "APM brand (KB, PENNYMATIC, PLEDG, KTWIDGET, PTI)")
	payAfter := fs.Duration("pay-after", 1500*time.Millisecond, "how long the simulated consumer takes to scan and pay")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected argument %q", rest[0])
	}
	minor, err := parseAmount(*amount, *currency)
	if err != nil {
		return err
	}
	if wf.dir == "" {
		dir, err := os.MkdirTemp("", "termagent-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		wf.dir = dir
	}
	cfg, err := wf.config(stderr)
	if err != nil {
		return err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	w, err := world.StartWorld(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer ccancel()
		_ = w.Close(cctx)
	}()
	fmt.Fprintf(stdout, "▶ simulated PPaaS %s, agent %s (serial %s) authenticated in %s\n", w.PPaaS.URL(), w.Agent.POIID(), w.Agent.Serial(), time.Since(start).Round(time.Millisecond))
	client, err := w.POS()
	if err != nil {
		return err
	}
	pos := &world.POS{Client: client, POIID: w.Agent.POIID(), SaleID: "DEMO-POS"}
	req := pos.PaymentRequest("", minor, *currency, *brand)
	fmt.Fprintf(stdout, "▶ POS → agent: Nexo PaymentRequest %s %s, brand %s, ServiceID %s\n", *amount, *currency, *brand, req.Header.ServiceID)

	screens := w.PPaaS.Terminals().Watch(ctx, w.Agent.Serial())
	type result struct {
		resp *nexo.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := client.Do(ctx, req)
		done <- result{r, err}
	}()
	var payTimer <-chan time.Time
	var txID string
	for {
		select {
		case s, ok := <-screens:
			if !ok { // ctx ended: its case answers
				screens = nil
				continue
			}
			if s.State == "awaiting_consumer" && s.QRPayload != "" && txID == "" {
				txID = s.TransactionID
				text, err := qr.Text(s.QRPayload, qr.LevelMedium)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "▶ terminal shows the provider's QR (POI transaction %s, PPaaS transaction %s); also live at %s\n%s  payload: %s\n", s.ClientTransactionID, txID, w.PPaaS.TerminalURL(w.Agent.Serial()), text, s.QRPayload)
				payTimer = time.After(*payAfter)
			} else if s.State != "idle" {
				fmt.Fprintf(stdout, "▶ terminal: %s %s\n", s.State, s.Message)
			}
		case <-payTimer:
			payTimer = nil
			fmt.Fprintln(stdout, "▶ consumer scans the QR with the wallet and pays")
			if _, err := w.PPaaS.Act(txID, "pay"); err != nil {
				return fmt.Errorf("consumer pays: %w", err)
			}
		case r := <-done:
			if r.err != nil {
				return fmt.Errorf("payment: %w", r.err)
			}
			raw, _ := nexo.JSONCodec{}.EncodeResponse(r.resp)
			fmt.Fprintf(stdout, "▶ agent → POS: %s\n\nNexo PaymentResponse:\n%s\n\n", world.Describe(r.resp), indentJSON(raw))
			_, charges := w.PPaaS.Transactions()
			fmt.Fprintf(stdout, "done in %s; charges at the simulated PPaaS for this terminal: %d\n\n", time.Since(start).Round(time.Millisecond), charges[w.Agent.Serial()])
			if r.resp.Status.Result != nexo.Success {
				return fmt.Errorf("payment did not succeed: %s", r.resp.Status.ErrorCondition)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%w", ctx.Err())
		}
	}
}
