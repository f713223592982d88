package nexo

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func golden5Requests(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join("testdata", "golden5", "*.request.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	sort.Strings(files)
	return files
}

// noResponse5 are the golden v5 messages answered with HTTP 200 and no body
// (casp.011 and casp.012 have no response message).
func noResponse5(f string) bool {
	return strings.Contains(f, "_abort.") || strings.Contains(f, "_event.")
}

func post(t testing.TB, url, ctype string, body []byte) (int, []byte, string) {
	t.Helper()
	resp, err := http.Post(url, ctype, bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, got, resp.Header.Get("Content-Type")
}

// TestGoldenV5 plays every golden v5 request, in order, against a server with
// a fixed clock and fake engine, and compares each answer with its golden
// response (go test -run TestGoldenV5 -update rewrites them).
func TestGoldenV5(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	for _, f := range golden5Requests(t) {
		body, err := os.ReadFile(f)
		require.NoError(t, err)
		status, got, ctype := post(t, env.url, "application/json", body)
		require.Equal(t, http.StatusOK, status, f)
		golden := strings.Replace(f, ".request.", ".response.", 1)
		if noResponse5(f) {
			require.Empty(t, got, "%s is answered with an empty body", f)
			continue
		}
		require.Equal(t, "application/json", ctype)
		if *update {
			var buf bytes.Buffer
			require.NoError(t, json.Indent(&buf, got, "", "  "))
			require.NoError(t, os.WriteFile(golden, append(buf.Bytes(), '\n'), 0o644))
		}
		want, err := os.ReadFile(golden)
		require.NoError(t, err)
		var buf bytes.Buffer
		require.NoError(t, json.Compact(&buf, want))
		require.Equal(t, buf.String(), string(got), golden)
	}
}

// TestGoldenV5RoundTrip decodes each golden v5 message, encodes it and decodes
// it again; a golden rejection decodes to a Nexo *Error.
func TestGoldenV5RoundTrip(t *testing.T) {
	c := JSON5Codec{Now: newTestClock().Now}
	for _, f := range golden5Requests(t) {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		req, err := c.DecodeRequest(b)
		if strings.Contains(f, "_rejected_") || strings.Contains(f, "_bad_") {
			var ne *Error
			require.ErrorAs(t, err, &ne, f)
		} else {
			require.NoError(t, err, f)
			enc, err := c.EncodeRequest(req)
			require.NoError(t, err)
			again, err := c.DecodeRequest(enc)
			require.NoError(t, err)
			require.Equal(t, req, again, f)
		}
		if noResponse5(f) {
			continue
		}
		rf := strings.Replace(f, ".request.", ".response.", 1)
		rb, err := os.ReadFile(rf)
		require.NoError(t, err)
		resp, err := c.DecodeResponse(rb)
		if strings.Contains(f, "_rejected_") {
			var ne *Error
			require.ErrorAs(t, err, &ne, rf)
			require.Contains(t, ne.Text, rejectVersion)
			continue
		}
		require.NoError(t, err, rf)
		renc, err := c.EncodeResponse(resp)
		require.NoError(t, err)
		ragain, err := c.DecodeResponse(renc)
		require.NoError(t, err)
		require.Equal(t, resp, ragain, rf)
	}
}

// TestV5SameModelAs3 checks that the v5 and 3.x golden payments decode to
// the same model request once the envelope-only fields are set aside.
func TestV5SameModelAs3(t *testing.T) {
	b5, err := os.ReadFile("testdata/golden5/02_payment.request.json")
	require.NoError(t, err)
	r5, err := JSON5Codec{}.DecodeRequest(b5)
	require.NoError(t, err)
	b3, err := os.ReadFile("testdata/golden/02_payment.request.json")
	require.NoError(t, err)
	r3, err := JSONCodec{}.DecodeRequest(b3)
	require.NoError(t, err)
	require.Equal(t, Header{Class: ClassService, Category: CategoryPayment, Type: TypeRequest, ServiceID: "5002", SaleID: "POS5", POIID: testPOIID}, r5.Header)
	require.Equal(t, r3.Payment.Amount, r5.Payment.Amount)
	require.Equal(t, r3.Payment.Type, r5.Payment.Type)
	require.Equal(t, r3.Payment.AllowedBrands, r5.Payment.AllowedBrands)
	require.Equal(t, r3.Payment.SaleTransactionID.TimeStamp, r5.Payment.SaleTransactionID.TimeStamp)
	// The journal keeps the 3.x encoding of every request: a v5 request must
	// survive it (recovery decodes it after a restart).
	raw, err := JSONCodec{}.EncodeRequest(r5)
	require.NoError(t, err)
	back, err := JSONCodec{}.DecodeRequest(raw)
	require.NoError(t, err)
	require.Equal(t, r5, back)
}

// mutate5 applies f to the golden v5 payment request as a generic JSON tree.
func mutate5(t *testing.T, f func(root, hdr, pr map[string]any)) []byte {
	b, err := os.ReadFile("testdata/golden5/02_payment.request.json")
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	root := m["SaleToPOIServiceRequest"].(map[string]any)
	hdr := root["Header"].(map[string]any)
	pr := root["ServiceRequest"].(map[string]any)["PaymentRequest"].(map[string]any)
	f(root, hdr, pr)
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return out
}

func details5(pr map[string]any) map[string]any {
	return pr["PaymentTransaction"].(map[string]any)["TransactionDetails"].(map[string]any)
}

func TestDecodeV5Validation(t *testing.T) {
	tests := []struct {
		name   string
		mut    func(root, hdr, pr map[string]any)
		reject string // rejection reason expected (header level); "" for a body error
		field  string // expected in the error text; "" means valid
	}{
		{"valid", func(root, hdr, pr map[string]any) {}, "", ""},
		{"unknown members ignored", func(root, hdr, pr map[string]any) { pr["Whatever"] = 1; hdr["Traceability"] = []any{} }, "", ""},
		{"no header", func(root, hdr, pr map[string]any) { delete(root, "Header") }, rejectInvalid, "Header"},
		{"no message function", func(root, hdr, pr map[string]any) { delete(hdr, "MessageFunction") }, rejectInvalid, "Header.MessageFunction"},
		{"wrong message function", func(root, hdr, pr map[string]any) { hdr["MessageFunction"] = "SASQ" }, rejectInvalid, "Header.MessageFunction"},
		{"3.x version", func(root, hdr, pr map[string]any) { hdr["ProtocolVersion"] = "3.1" }, rejectVersion, "Header.ProtocolVersion"},
		{"no version", func(root, hdr, pr map[string]any) { delete(hdr, "ProtocolVersion") }, rejectVersion, "Header.ProtocolVersion"},
		{"version 50", func(root, hdr, pr map[string]any) { hdr["ProtocolVersion"] = "50.1" }, rejectVersion, "Header.ProtocolVersion"},
		{"version 5.1-WL", func(root, hdr, pr map[string]any) { hdr["ProtocolVersion"] = "5.1-WL1.0.0" }, "", ""},
		{"no exchange id", func(root, hdr, pr map[string]any) { delete(hdr, "ExchangeIdentification") }, rejectParsing, "Header.ExchangeIdentification"},
		{"exchange id too long", func(root, hdr, pr map[string]any) { hdr["ExchangeIdentification"] = "12345678901" }, rejectParsing, "Header.ExchangeIdentification"},
		{"no creation time", func(root, hdr, pr map[string]any) { delete(hdr, "CreationDateTime") }, rejectParsing, "Header.CreationDateTime"},
		{"bad creation time", func(root, hdr, pr map[string]any) { hdr["CreationDateTime"] = "now" }, rejectParsing, "Header.CreationDateTime"},
		{"no initiating party", func(root, hdr, pr map[string]any) { delete(hdr, "InitiatingParty") }, rejectParsing, "Header.InitiatingParty"},
		{"long initiating party", func(root, hdr, pr map[string]any) {
			hdr["InitiatingParty"] = map[string]any{"Identification": strings.Repeat("x", 36)}
		}, rejectParsing, "Header.InitiatingParty"},
		{"no recipient party", func(root, hdr, pr map[string]any) { delete(hdr, "RecipientParty") }, rejectRecipient, "Header.RecipientParty"},
		{"unsupported service", func(root, hdr, pr map[string]any) {
			root["ServiceRequest"].(map[string]any)["ServiceContent"] = "FSIQ"
		}, rejectMessageType, "ServiceRequest.ServiceContent"},
		{"no sale transaction id", func(root, hdr, pr map[string]any) { delete(pr, "SaleTransactionIdentification") }, "", "PaymentRequest.SaleTransactionIdentification"},
		{"no currency", func(root, hdr, pr map[string]any) { delete(details5(pr), "Currency") }, "", "TransactionDetails.Currency"},
		{"unknown currency", func(root, hdr, pr map[string]any) { details5(pr)["Currency"] = "XYZ" }, "", "TransactionDetails.Currency"},
		{"negative", func(root, hdr, pr map[string]any) { details5(pr)["TotalAmount"] = json.Number("-1") }, "", "TransactionDetails.TotalAmount"},
		{"zero", func(root, hdr, pr map[string]any) { details5(pr)["TotalAmount"] = json.Number("0.00") }, "", "TransactionDetails.TotalAmount"},
		{"too many decimals", func(root, hdr, pr map[string]any) { details5(pr)["TotalAmount"] = json.Number("1.001") }, "", "TransactionDetails.TotalAmount"},
		{"amount bool", func(root, hdr, pr map[string]any) { details5(pr)["TotalAmount"] = true }, "", "TotalAmount"},
		{"transaction type", func(root, hdr, pr map[string]any) {
			pr["PaymentTransaction"].(map[string]any)["TransactionType"] = "CSHW"
		}, "", "PaymentTransaction.TransactionType"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := mutate5(t, tc.mut)
			_, err := JSON5Codec{}.DecodeRequest(b)
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			var ne *Error
			require.ErrorAs(t, err, &ne)
			require.Contains(t, ne.Text, tc.field)
			if tc.reject != "" {
				require.True(t, strings.HasPrefix(ne.Text, tc.reject+": "), ne.Text)
			} else {
				require.Equal(t, MessageFormat, ne.Condition)
			}
		})
	}
}

func TestSniffRoot5(t *testing.T) {
	for body, want := range map[string]bool{
		`{"SaleToPOIServiceRequest":{}}`:                true,
		"\ufeff \n{ \"SaleToPOIMessageStatusRequest\":": true,
		`{"SaleToPOIAdminRequest":{}}`:                  true, // v5-shaped: rejected as MSGT
		`{"SaleToPOIRequest":{}}`:                       false,
		`{"SaleToPOIResponse":{}}`:                      false,
		`{"Foo":{}}`:                                    false,
		`<SaleToPOIServiceRequest/>`:                    false,
		`{"SaleToPOI`:                                   false,
		`{"Sale\u0054oPOIServiceRequest":{}}`:           false,
		`{"SaleToPOI` + strings.Repeat("x", 200) + `"`:  false,
		``: false,
	} {
		require.Equal(t, want, isNexoV5([]byte(body)), body)
	}
}

func FuzzDecodeV5(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden5", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	c := JSON5Codec{Now: newTestClock().Now}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := c.DecodeRequest(b)
		if err != nil {
			var ne *Error
			if !errors.As(err, &ne) || (ne.Condition != MessageFormat && ne.Condition != NotAllowed) {
				t.Fatalf("decode error is not a Nexo error: %v", err)
			}
		} else {
			enc, err := c.EncodeRequest(req)
			if err != nil {
				t.Fatalf("accepted request does not encode: %v", err)
			}
			again, err := c.DecodeRequest(enc)
			if err != nil {
				t.Fatalf("re-encoded request does not decode: %v\n%s", err, enc)
			}
			enc2, err := c.EncodeRequest(again)
			if err != nil || !bytes.Equal(enc, enc2) {
				t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
			}
		}
		if resp, err := c.DecodeResponse(b); err == nil {
			if _, err := c.EncodeResponse(resp); err != nil {
				t.Fatalf("accepted response does not encode: %v", err)
			}
		}
		_ = isNexoV5(b)
	})
}

// TestJournalable: a v5 request the 3.x journal encoding could not read back
// is refused before it runs; the golden v5 requests all pass.
func TestJournalable(t *testing.T) {
	for _, f := range golden5Requests(t) {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		if req, err := (JSON5Codec{}).DecodeRequest(b); err == nil {
			require.Nil(t, journalable(req), f)
		}
	}
	req := paymentReq("1", "KB", 100)
	req.Header.SaleID = "" // a 3.x Service request needs a SaleID
	e := journalable(req)
	require.NotNil(t, e)
	require.Equal(t, MessageFormat, e.Condition)
	require.Contains(t, e.Text, "not representable in the journal: MessageHeader.SaleID")
	diag := paymentReq("2", "KB", 100).Header
	diag.Category = CategoryDiagnosis
	require.Nil(t, journalable(&Request{Header: diag, Diagnosis: &DiagnosisRequest{}}))

	// Every v5 request is held to the 3.x field limits: a Login's OperatorID
	// is copied into the journaled payments of its SaleID, and recovery must
	// read them back.
	login := loginReq("POS1", "3")
	login.Header.ProtocolVersion = ""
	login.Login.OperatorID = strings.Repeat("o", 36)
	e = journalable(login)
	require.NotNil(t, e)
	require.Contains(t, e.Text, "OperatorID")
}
