package nexo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

// codecRequestHash is requestHash as it was before the hand-written JSON:
// journals on disk hold these hashes, so a retried request must hash the
// same after an upgrade.
func codecRequestHash(req *Request) string {
	b, err := JSONCodec{}.EncodeRequest(req)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkRequestJSON holds appendPaymentRequestJSON to the codec's bytes, and
// requestHash to the codec's hash, for req.
func checkRequestJSON(t *testing.T, req *Request) {
	t.Helper()
	want, wantErr := JSONCodec{}.EncodeRequest(req)
	got, ok := appendPaymentRequestJSON(nil, req)
	switch {
	case ok && wantErr != nil:
		t.Fatalf("appended %s where the codec fails: %v", got, wantErr)
	case ok && !bytes.Equal(got, want):
		t.Fatalf("appended JSON differs from the codec's\n got: %s\nwant: %s", got, want)
	}
	if h, old := requestHash(req), codecRequestHash(req); h != old {
		t.Fatalf("requestHash %s, the codec's %s", h, old)
	}
}

// paymentFromFuzz builds a payment request of every field the record keeps
// from fuzzed values (brands separated by '|', empty: none).
func paymentFromFuzz(svc, sale, poi, ref, op, typ, inst, shift, group, brands, currency, txid, origID string, minor, unix int64, off int32, origUnix int64) *Request {
	h := testHeader(CategoryPayment, svc)
	h.SaleID, h.POIID = sale, poi
	ts := func(sec int64) time.Time {
		if sec == 0 {
			return time.Time{}
		}
		return time.Unix(sec%(400*365*24*3600), int64(off)%1e9).In(time.FixedZone("", int(off)%(30*3600)))
	}
	p := &PaymentRequest{
		SaleTransactionID: TransactionID{ID: txid, TimeStamp: ts(unix)},
		SaleReferenceID:   ref, OperatorID: op, Type: PaymentType(typ), InstrumentType: inst,
		ShiftNumber: shift, TotalsGroupID: group,
		Amount:                   Amount{Minor: minor, Currency: currency},
		OriginalPOITransactionID: TransactionID{ID: origID, TimeStamp: ts(origUnix)},
	}
	if brands != "" {
		p.AllowedBrands = strings.Split(brands, "|")
	}
	return &Request{Header: h, Payment: p}
}

func TestPaymentRequestJSONIsTheCodecs(t *testing.T) {
	checkRequestJSON(t, paymentReq("1002", "KB", 1099))
	checkRequestJSON(t, paymentFromFuzz("7", "POS<1>", "M400&", "ref\u2028", "op\x00", "Refund", "QR", "s1", "g1", "KB|WeChat|\xff", "JPY", "ORD\"1", "POI-9", 0, 1772355660, 3600, 1772355000))
	checkRequestJSON(t, paymentFromFuzz("", "", "", "", "", "", "", "", "", "", "EUR", "", "", 5, 0, 0, 0))
	checkRequestJSON(t, paymentFromFuzz("1", "S", "P", "", "", "Normal", "", "", "", "", "XXX", "T", "", 5, 0, 0, 0))  // unknown currency: the codec's error
	checkRequestJSON(t, paymentFromFuzz("1", "S", "P", "", "", "Normal", "", "", "", "", "EUR", "T", "", -5, 0, 0, 0)) // negative: the codec's error
	scanned := paymentReq("1003", "KB", 1)
	scanned.Payment.ScannedCode = "28763443825664"
	checkRequestJSON(t, scanned) // the codec's
	rev := &Request{Header: testHeader(CategoryReversal, "9"), Reversal: &ReversalRequest{OriginalPOITransactionID: TransactionID{ID: "X"}, Reason: "MerchantCancel"}}
	checkRequestJSON(t, rev)
	for _, minor := range []int64{0, 1, 9, 10, 99, 100, 101, 999, 1000, 1099, 123456789, 1<<63 - 1} {
		for _, cur := range []string{"EUR", "JPY", "BHD", "CLF"} {
			checkRequestJSON(t, paymentReq("1", "KB", minor))
			r := paymentReq("1", "KB", minor)
			r.Payment.Amount.Currency = cur
			checkRequestJSON(t, r)
		}
	}
}

// FuzzPaymentRequestJSON holds the hand-written payment JSON (and so the
// request hash) to the codec's, for requests built field by field.
func FuzzPaymentRequestJSON(f *testing.F) {
	f.Add("1002", "POS1", testPOIID, "basket-77", "", "Normal", "", "", "", "KB", "EUR", "ORD-1", "", int64(1099), int64(1772355660), int32(3600), int64(0))
	f.Add("1", "<s>", "&p", "\u2029", "op", "Refund", "QR", "3", "grp", "A|B", "BHD", "\xfe", "orig", int64(1), int64(-62135596800), int32(-3600), int64(1))
	f.Add("", "", "", "", "", "", "", "", "", "", "JPY", "", "", int64(0), int64(0), int32(0), int64(0))
	f.Add("1", "S", "P", "", "", "Odd", "", "", "", "|", "eur", "T", "", int64(-1), int64(253402300800), int32(86399), int64(0))
	f.Fuzz(func(t *testing.T, svc, sale, poi, ref, op, typ, inst, shift, group, brands, currency, txid, origID string, minor, unix int64, off int32, origUnix int64) {
		checkRequestJSON(t, paymentFromFuzz(svc, sale, poi, ref, op, typ, inst, shift, group, brands, currency, txid, origID, minor, unix, off, origUnix))
	})
}

// FuzzRequestHash holds requestHash to the codec's for whatever the JSON
// decoder accepts (the golden requests and the decoder's corpus as seeds).
func FuzzRequestHash(f *testing.F) {
	addGoldenSeeds(f, "*.request.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := JSONCodec{}.DecodeRequest(b)
		if err != nil {
			return
		}
		checkRequestJSON(t, req)
	})
}

func TestFormatAmountIsSprintf(t *testing.T) {
	old := func(minor int64, exp int) string {
		s := fmt.Sprintf("%0*d", exp+1, minor)
		if exp == 0 {
			return s
		}
		return s[:len(s)-exp] + "." + s[len(s)-exp:]
	}
	for _, cur := range []string{"EUR", "JPY", "BHD", "CLF"} {
		exp, _ := CurrencyExponent(cur)
		for _, minor := range []int64{0, 1, 5, 9, 10, 11, 99, 100, 101, 999, 1000, 1001, 9999, 10000, 1099, 123456789, 1<<63 - 1} {
			got, err := formatAmount(minor, cur)
			if err != nil || got != old(minor, exp) {
				t.Fatalf("formatAmount(%d, %s) = %q, %v; want %q", minor, cur, got, err, old(minor, exp))
			}
		}
	}
}

// checkWireTime holds appendWireTime and receiptDate to time.Format's.
func checkWireTime(t *testing.T, tm time.Time) {
	t.Helper()
	if got, want := string(appendWireTime(nil, tm)), tm.Format(timeLayout); got != want {
		t.Fatalf("appendWireTime(%v) = %q, Format %q", tm, got, want)
	}
	if got, want := receiptDate(tm), "Date: "+tm.UTC().Format(time.DateTime)+" UTC"; got != want {
		t.Fatalf("receiptDate(%v) = %q, Format %q", tm, got, want)
	}
}

func TestWireTimeIsFormat(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 3, 1, 10, 1, 0, 0, time.FixedZone("", 3600)),
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 1e6, time.FixedZone("", -30)),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -(5*3600+30*60+15))),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 6, 1, 12, 0, 0, 123456789, time.FixedZone("", 14*3600)),
		time.Unix(0, 0),
		{},
	} {
		checkWireTime(t, tm)
	}
}

func FuzzWireTime(f *testing.F) {
	f.Add(int64(1772355660), int64(0), int32(3600))
	f.Add(int64(-62135596800), int64(999999999), int32(-30))
	f.Add(int64(253402300800), int64(1), int32(-86399))
	f.Fuzz(func(t *testing.T, sec, nsec int64, off int32) {
		checkWireTime(t, time.Unix(sec, nsec).In(time.FixedZone("", int(off)%(48*3600))))
	})
}
