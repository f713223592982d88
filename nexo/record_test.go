package nexo

import (
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fillAll sets every field reachable from v (a pointer) to a distinct
// non-zero value, allocating pointers and one-element... two-element slices,
// so that a round trip that drops or swaps a field fails.
func fillAll(t *testing.T, v reflect.Value, n *int) {
	t.Helper()
	*n++
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillAll(t, v.Elem(), n)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, *n, time.UTC)))
			return
		}
		for i := range v.NumField() {
			fillAll(t, v.Field(i), n)
		}
	case reflect.String:
		v.SetString("s" + string(rune('A'+*n%26)) + time.Duration(*n).String())
	case reflect.Int64:
		v.SetInt(int64(*n) * 1001)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fillAll(t, s.Index(i), n)
		}
		v.Set(s)
	default:
		t.Fatalf("fillAll: %s not handled: teach the journal record (record.go) and this test the new field", v.Type())
	}
}

// Every field of a journaled request and response (Payment and Reversal
// bodies) survives the journal record: a field added to the model and
// forgotten in record.go fails here.
func TestRecordRoundTripsEveryField(t *testing.T) {
	n := 0
	for _, body := range []string{"Payment", "Reversal"} {
		req := &Request{}
		fillAll(t, reflect.ValueOf(&req.Header).Elem(), &n)
		fillAll(t, reflect.ValueOf(req).Elem().FieldByName(body), &n)
		b, err := AppendRequestRecord(nil, req)
		require.NoError(t, err)
		got, err := DecodeRequestRecord(b)
		require.NoError(t, err)
		require.Equal(t, req, got, body)

		resp := &Response{}
		fillAll(t, reflect.ValueOf(&resp.Header).Elem(), &n)
		fillAll(t, reflect.ValueOf(&resp.Status).Elem(), &n)
		fillAll(t, reflect.ValueOf(resp).Elem().FieldByName(body), &n)
		b, err = AppendResponseRecord(nil, resp)
		require.NoError(t, err)
		gotResp, err := DecodeResponseRecord(b)
		require.NoError(t, err)
		require.Equal(t, resp, gotResp, body)

		// Cut anywhere, the record is an error, never a panic or a half
		// response.
		for i := range len(b) {
			_, err := DecodeResponseRecord(b[:i])
			require.ErrorIs(t, err, ErrRecord, "cut at %d", i)
		}
		_, err = DecodeResponseRecord(append(b, 0))
		require.ErrorIs(t, err, ErrRecord, "trailing bytes")
	}
}

// A failure without a body, and a timestamp's zone, read back as written
// (a replay shows the POS the offset it was answered with).
func TestRecordKeepsZoneAndEmptyBodies(t *testing.T) {
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))
	req := &Request{Header: Header{Category: CategoryPayment}, Payment: &PaymentRequest{SaleTransactionID: TransactionID{ID: "o", TimeStamp: at}}}
	b, err := AppendRequestRecord(nil, req)
	require.NoError(t, err)
	got, err := DecodeRequestRecord(b)
	require.NoError(t, err)
	require.Equal(t, formatTime(at), formatTime(got.Payment.SaleTransactionID.TimeStamp))
	require.True(t, at.Equal(got.Payment.SaleTransactionID.TimeStamp))

	resp := &Response{Header: Header{Category: CategoryPayment}, Status: ResponseStatus{Result: Failure, ErrorCondition: Refusal}}
	b, err = AppendResponseRecord(nil, resp)
	require.NoError(t, err)
	gotResp, err := DecodeResponseRecord(b)
	require.NoError(t, err)
	require.Equal(t, resp, gotResp)
}

// Only transactions are journaled: a body the record does not carry is an
// error, not silently dropped.
func TestRecordRefusesOtherBodies(t *testing.T) {
	_, err := AppendRequestRecord(nil, &Request{Header: Header{Category: CategoryLogin}, Login: &LoginRequest{}})
	require.Error(t, err)
	_, err = AppendResponseRecord(nil, &Response{Header: Header{Category: CategoryDiagnosis}, Diagnosis: &DiagnosisResponse{}})
	require.Error(t, err)
	_, err = DecodeResponseRecord([]byte{recordVersion + 1})
	require.ErrorIs(t, err, ErrRecord, "unknown version")
}

// FuzzDecodeRecord: whatever the bytes, the record decoders return a value
// or an error without panicking, and what decodes re-encodes to the same
// bytes.
func FuzzDecodeRecord(f *testing.F) {
	req := &Request{Header: Header{Category: CategoryPayment, SaleID: "POS1"}, Payment: &PaymentRequest{Amount: Amount{Minor: 100, Currency: "EUR"}, AllowedBrands: []string{"KB"}}}
	b, _ := AppendRequestRecord(nil, req)
	f.Add(b)
	resp := &Response{Header: Header{Category: CategoryReversal}, Status: ResponseStatus{Result: Success},
		Reversal: &ReversalResponse{ReversedAmount: "1.00", Receipts: []PaymentReceipt{{DocumentQualifier: CashierReceipt, Lines: []string{"a", "b"}}}}}
	b, _ = AppendResponseRecord(nil, resp)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := DecodeRequestRecord(b); err == nil {
			again, err := AppendRequestRecord(nil, r)
			require.NoError(t, err)
			r2, err := DecodeRequestRecord(again)
			require.NoError(t, err)
			require.Equal(t, r, r2)
		}
		if r, err := DecodeResponseRecord(b); err == nil {
			again, err := AppendResponseRecord(nil, r)
			require.NoError(t, err)
			r2, err := DecodeResponseRecord(again)
			require.NoError(t, err)
			require.Equal(t, r, r2)
		}
	})
}
