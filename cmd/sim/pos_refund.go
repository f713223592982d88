package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim/world"
)

// refundArgs checks `sim pos refund POI-TRANSACTION-ID [AMOUNT [CURRENCY]]`:
// without AMOUNT the payment is reversed whole (a Reversal: cancelled if
// undecided, refunded if approved); with AMOUNT it is a referenced refund
// (PaymentType Refund) of that amount in CURRENCY (default EUR), one of
// several partial refunds up to the amount paid.
func refundArgs(rest []string) (id string, minor int64, currency string, err error) {
	if len(rest) < 1 || len(rest) > 3 {
		return "", 0, "", errors.New("refund: want POI-TRANSACTION-ID [AMOUNT [CURRENCY]], e.g. refund 6f1c… 5.00 EUR (no amount: reverse the whole payment)")
	}
	id = rest[0]
	if len(rest) == 1 {
		return id, 0, "", nil
	}
	currency = "EUR"
	if len(rest) == 3 {
		currency = strings.ToUpper(rest[2])
	}
	if minor, err = parseAmount(rest[1], currency); err != nil {
		return "", 0, "", fmt.Errorf("refund: %w", err)
	}
	if minor == 0 {
		return "", 0, "", errors.New("refund: the amount must be greater than zero")
	}
	return id, minor, currency, nil
}

// posRefund sends the refund (or the whole reversal) and, for a refund PPaaS
// has only accepted, says how to follow it.
func posRefund(ctx context.Context, p *world.POS, o posOptions, rest []string, stdout io.Writer) (*nexo.Response, error) {
	id, minor, currency, err := refundArgs(rest)
	if err != nil {
		return nil, err
	}
	if minor == 0 {
		return p.Client.Do(ctx, p.ReversalRequest(o.serviceID, id, "", "MerchantCancel"))
	}
	resp, err := p.Refund(ctx, o.serviceID, id, minor, currency)
	if err == nil && resp != nil && resp.Status.ErrorCondition == nexo.InProgress {
		fmt.Fprintf(stdout, "  the refund is pending at PPaaS; follow it with: %s pos status %s\n", progName(), resp.Header.ServiceID)
	}
	return resp, err
}
