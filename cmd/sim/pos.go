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
	"strings"
	"time"

	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
)

const posUsage = `Usage: sim pos [flags] <command> [arguments]

Sends real Nexo Retailer requests to an agent (or any Nexo POI) and prints the
response. Commands:

  login | logout
  pay AMOUNT CURRENCY        e.g. pay 12.50 EUR  (-brand KB, -service-id ID)
  refund POI-TRANSACTION-ID  reverse an APM payment (cancel, or refund if approved)
  abort SERVICE-ID           abort the payment in progress
  status [SERVICE-ID]        TransactionStatus of a payment (the last one if omitted)
  diagnosis                  POI health, host reachability, outbox depth

Message security: -key-id and -key-version with the passphrase in
TERMAGENT_NEXO_PASSPHRASE.

Flags:
`

func runPOS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim pos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "https://127.0.0.1:8443/nexo", "the POI's Nexo endpoint")
	caFile := fs.String("ca", ".sim/certs/bundle.pem", "CA bundle that verifies the POI's certificate")
	poiid := fs.String("poiid", "DX8000-220597303201181723869389", "POIID addressed")
	saleID := fs.String("sale-id", "POS1", "SaleID of this POS")
	brand := fs.String("brand", "KB", "payment brand for pay")
	serviceID := fs.String("service-id", "", "ServiceID of the request (default: a fresh one)")
	useXML := fs.Bool("xml", false, "send XML instead of JSON")
	keyID := fs.String("key-id", "", "message security key identifier")
	keyVersion := fs.Int("key-version", 1, "message security key version")
	asJSON := fs.Bool("json", false, "print the raw response JSON too")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the response")
	fs.Usage = func() { fmt.Fprint(stderr, posUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("sim pos: missing command")
	}
	client := &nexo.Client{URL: *url, HTTP: &http.Client{Timeout: *timeout}}
	if strings.HasPrefix(*url, "https://") {
		pool, err := mtls.LoadCAPool(*caFile)
		if err != nil {
			return fmt.Errorf("sim pos: -ca: %w", err)
		}
		client.HTTP.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	if *useXML {
		client.Codec = nexo.XMLCodec{}
	}
	if *keyID != "" {
		pass := os.Getenv("TERMAGENT_NEXO_PASSPHRASE")
		if pass == "" {
			return errors.New("sim pos: -key-id needs the passphrase in TERMAGENT_NEXO_PASSPHRASE")
		}
		k, err := nexo.NewKey(*keyID, *keyVersion, pass)
		if err != nil {
			return err
		}
		client.Key = k
	}
	pos := &sim.POS{Client: client, SaleID: *saleID, POIID: *poiid}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var (
		resp *nexo.Response
		err  error
	)
	switch cmd {
	case "login":
		resp, err = pos.Login(ctx)
	case "logout":
		resp, err = pos.Logout(ctx)
	case "pay":
		if len(rest) != 2 {
			return errors.New("sim pos pay: want AMOUNT CURRENCY, e.g. pay 12.50 EUR")
		}
		minor, perr := parseAmount(rest[0], rest[1])
		if perr != nil {
			return perr
		}
		resp, err = pos.Pay(ctx, *serviceID, minor, strings.ToUpper(rest[1]), *brand)
	case "refund":
		if len(rest) != 1 {
			return errors.New("sim pos refund: want the POI transaction id of the payment")
		}
		resp, err = pos.Reverse(ctx, rest[0], "MerchantCancel")
	case "abort":
		if len(rest) != 1 {
			return errors.New("sim pos abort: want the ServiceID of the payment to abort")
		}
		err = pos.Abort(ctx, rest[0])
	case "status":
		ref := ""
		if len(rest) > 0 {
			ref = rest[0]
		}
		resp, err = pos.Status(ctx, ref)
	case "diagnosis":
		resp, err = pos.Diagnosis(ctx)
	default:
		fs.Usage()
		return fmt.Errorf("sim pos: unknown command %q", cmd)
	}
	if err != nil {
		return fmt.Errorf("sim pos %s: %w", cmd, err)
	}
	fmt.Fprintln(stdout, sim.Describe(resp))
	if *asJSON && resp != nil {
		raw, _ := nexo.JSONCodec{}.EncodeResponse(resp)
		fmt.Fprintln(stdout, indentJSON(raw))
	}
	if resp != nil && resp.Status.Result == nexo.Failure {
		return fmt.Errorf("sim pos %s: %s", cmd, resp.Status.ErrorCondition)
	}
	return nil
}

// parseAmount reads a major-unit amount ("12.50") into minor units, respecting
// the currency's exponent; it names the argument in its errors.
func parseAmount(s, currency string) (int64, error) {
	exp, ok := nexo.CurrencyExponent(strings.ToUpper(currency))
	if !ok {
		return 0, fmt.Errorf("currency %q: not an ISO 4217 code this agent knows", currency)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Sign() <= 0 {
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
