package nexo

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkResponseJSON holds appendPaymentResponseJSON to the codec's bytes.
func checkResponseJSON(t *testing.T, r *Response) {
	t.Helper()
	want, wantErr := JSONCodec{}.EncodeResponse(r)
	got, ok := appendPaymentResponseJSON(nil, r)
	switch {
	case ok && wantErr != nil:
		t.Fatalf("appended %s where the codec fails: %v", got, wantErr)
	case ok && !bytes.Equal(got, want):
		t.Fatalf("appended JSON differs from the codec's\n got: %s\nwant: %s", got, want)
	case !ok && wantErr == nil && r.Header.Category == CategoryPayment:
		t.Fatalf("a payment response the codec encodes was not appended: %s", want)
	}
}

// paymentResponseFromFuzz builds a payment response from fuzzed values:
// lines separated by '|' and receipts by '#' (empty: none); shape picks
// which parts are set.
func paymentResponseFromFuzz(shape uint8, svc, result, cond, text, saleTx, poiTx, recon, typ, brand, inst, currency, acq, prov, appr, merch, acqPOI, receipts string, minor, unix int64, off int32) *Response {
	h := testHeader(CategoryPayment, svc)
	h.Type = TypeResponse
	if shape&64 != 0 {
		h.Category = CategoryReversal
	}
	ts := func(sec int64) time.Time {
		if sec == 0 {
			return time.Time{}
		}
		return time.Unix(sec%(400*365*24*3600), int64(off)%1e9).In(time.FixedZone("", int(off)%(30*3600)))
	}
	r := &Response{Header: h, Status: ResponseStatus{Result: Result(result), ErrorCondition: ErrorCondition(cond), AdditionalResponse: text}}
	if shape&1 == 0 {
		return r
	}
	p := &PaymentResponse{SaleTransactionID: TransactionID{ID: saleTx, TimeStamp: ts(unix)}, POIReconciliationID: recon}
	if shape&2 != 0 {
		p.POITransactionID = TransactionID{ID: poiTx, TimeStamp: ts(unix / 2)}
	}
	if shape&4 != 0 {
		p.Result = &PaymentResult{Type: PaymentType(typ), Brand: brand, InstrumentType: inst, AuthorizedAmount: Amount{Minor: minor, Currency: currency},
			AcquirerID: acq, ProviderReference: prov, ApprovalCode: appr, MerchantID: merch, AcquirerPOIID: acqPOI}
	}
	if receipts != "" {
		for _, rc := range strings.Split(receipts, "#") {
			q, lines, _ := strings.Cut(rc, "|")
			pr := PaymentReceipt{DocumentQualifier: q}
			if lines != "" || shape&8 != 0 {
				pr.Lines = strings.Split(lines, "|")
			}
			p.Receipts = append(p.Receipts, pr)
		}
	}
	r.Payment = p
	return r
}

func TestPaymentResponseJSONIsTheCodecs(t *testing.T) {
	for _, name := range []string{"02_payment", "08_payment_refused"} {
		b := readGolden(t, name+".response.json")
		r, err := JSONCodec{}.DecodeResponse(b)
		if err != nil {
			t.Fatal(err)
		}
		checkResponseJSON(t, r)
		r.Payment.Receipts = Receipts(r, "Shop <&>", false)
		checkResponseJSON(t, r)
	}
	checkResponseJSON(t, paymentResponseFromFuzz(0xbf, "1", "Success", "", "", "S", "P", "1", "Normal", "KB", "QR", "EUR", "PPaaS", "prov", "A1", "m", "t", "CashierReceipt|a|b#CustomerReceipt|c", 1099, 1772355660, 3600))
	checkResponseJSON(t, paymentResponseFromFuzz(0x07, "1", "Success", "", "", "S", "P", "1", "Normal", "KB", "", "XXX", "", "", "", "", "", "", 1099, 0, 0)) // the codec's error
	checkResponseJSON(t, paymentResponseFromFuzz(0x07, "1", "Success", "", "", "S", "P", "1", "Normal", "", "", "EUR", "", "", "", "", "", "", -1, 0, 0))     // the codec's error
	checkResponseJSON(t, paymentResponseFromFuzz(0x01, "1", "Failure", "Refusal", "declined\u2028<x>", "", "", "", "", "", "", "", "", "", "", "", "", "", 0, 0, 0))
	checkResponseJSON(t, paymentResponseFromFuzz(0x09, "1", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "#", 0, 0, 0))
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzPaymentResponseJSON holds the hand-written payment answer to the
// codec's bytes, for responses built field by field.
func FuzzPaymentResponseJSON(f *testing.F) {
	f.Add(uint8(0xff), "1002", "Success", "", "", "ORD-1", "POI-1", "1", "Normal", "KB", "", "EUR", "PPaaS", "prov-1", "A1B2C3", "", "", "CashierReceipt|PAYMENT|Amount: 10.99 EUR#CustomerReceipt|PAYMENT", int64(1099), int64(1772355660), int32(3600))
	f.Add(uint8(0x03), "1", "Failure", "Refusal", "<no>", "\xff", "", "", "", "", "", "", "", "", "", "", "", "", int64(0), int64(1), int32(-7200))
	f.Add(uint8(0x45), "1", "Success", "", "", "", "", "", "Refund", "", "x", "JPY", "", "", "", "m", "a", "|", int64(-3), int64(0), int32(0))
	f.Fuzz(func(t *testing.T, shape uint8, svc, result, cond, text, saleTx, poiTx, recon, typ, brand, inst, currency, acq, prov, appr, merch, acqPOI, receipts string, minor, unix int64, off int32) {
		checkResponseJSON(t, paymentResponseFromFuzz(shape, svc, result, cond, text, saleTx, poiTx, recon, typ, brand, inst, currency, acq, prov, appr, merch, acqPOI, receipts, minor, unix, off))
	})
}

// FuzzResponseJSON holds the hand-written answer to the codec's for
// whatever payment response the JSON decoder accepts.
func FuzzResponseJSON(f *testing.F) {
	addGoldenSeeds(f, "*.response.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := JSONCodec{}.DecodeResponse(b)
		if err != nil {
			return
		}
		checkResponseJSON(t, r)
	})
}
