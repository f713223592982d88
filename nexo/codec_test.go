package nexo

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden response files")

func goldenRequests(t *testing.T, ext string) []string {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.request."+ext))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	sort.Strings(files)
	return files
}

// TestGolden plays every golden request, in order, against a server with a
// fixed clock and fake engine, and compares the answer with the golden
// response.
func TestGolden(t *testing.T) {
	for _, ext := range []string{"json", "xml"} {
		t.Run(ext, func(t *testing.T) {
			env := startServer(t, ServerConfig{}, nil)
			ctype := map[string]string{"json": "application/json", "xml": "text/xml; charset=utf-8"}[ext]
			for _, f := range goldenRequests(t, ext) {
				body, err := os.ReadFile(f)
				require.NoError(t, err)
				resp, err := http.Post(env.url, ctype, bytes.NewReader(body))
				require.NoError(t, err)
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				require.Equal(t, http.StatusOK, resp.StatusCode, f)
				golden := strings.Replace(f, ".request.", ".response.", 1)
				if strings.Contains(f, "abort") {
					require.Empty(t, got, "Abort is answered with an empty body")
					continue
				}
				if ext == "json" {
					require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
				} else {
					require.Equal(t, "application/xml", resp.Header.Get("Content-Type"))
				}
				if *update {
					out := got
					if ext == "json" {
						var buf bytes.Buffer
						require.NoError(t, json.Indent(&buf, got, "", "  "))
						out = append(buf.Bytes(), '\n')
					}
					require.NoError(t, os.WriteFile(golden, out, 0o644))
				}
				want, err := os.ReadFile(golden)
				require.NoError(t, err)
				if ext == "json" {
					var buf bytes.Buffer
					require.NoError(t, json.Compact(&buf, want))
					want = buf.Bytes()
				}
				require.Equal(t, string(want), string(got), golden)
			}
		})
	}
}

// TestGoldenRoundTrip decodes each golden message, encodes it and decodes it
// again, and checks that the JSON and XML goldens say the same thing.
func TestGoldenRoundTrip(t *testing.T) {
	codecs := map[string]Codec{"json": JSONCodec{}, "xml": XMLCodec{}}
	decoded := map[string]any{}
	for ext, c := range codecs {
		for _, f := range goldenRequests(t, ext) {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			req, err := c.DecodeRequest(b)
			require.NoError(t, err, f)
			enc, err := c.EncodeRequest(req)
			require.NoError(t, err)
			again, err := c.DecodeRequest(enc)
			require.NoError(t, err)
			require.Equal(t, req, again, f)
			key := strings.TrimSuffix(filepath.Base(f), "."+ext)
			if other, ok := decoded[key]; ok {
				require.Equal(t, other, req, "JSON and XML goldens of %s differ", key)
			}
			decoded[key] = req

			rf := strings.Replace(f, ".request.", ".response.", 1)
			rb, err := os.ReadFile(rf)
			if os.IsNotExist(err) {
				continue
			}
			require.NoError(t, err)
			resp, err := c.DecodeResponse(rb)
			require.NoError(t, err, rf)
			renc, err := c.EncodeResponse(resp)
			require.NoError(t, err)
			ragain, err := c.DecodeResponse(renc)
			require.NoError(t, err)
			require.Equal(t, resp, ragain, rf)
			rkey := strings.TrimSuffix(filepath.Base(rf), "."+ext)
			if other, ok := decoded[rkey]; ok {
				require.Equal(t, other, resp, "JSON and XML goldens of %s differ", rkey)
			}
			decoded[rkey] = resp
		}
	}
}

// mutate applies f to the golden payment request as a generic JSON tree.
func mutate(t *testing.T, f func(pr, hdr map[string]any)) []byte {
	b, err := os.ReadFile("testdata/golden/02_payment.request.json")
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	root := m["SaleToPOIRequest"].(map[string]any)
	pr, _ := root["PaymentRequest"].(map[string]any)
	hdr, _ := root["MessageHeader"].(map[string]any)
	f(pr, hdr)
	if pr == nil {
		delete(root, "PaymentRequest")
	}
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return out
}

func amounts(pr map[string]any) map[string]any {
	return pr["PaymentTransaction"].(map[string]any)["AmountsReq"].(map[string]any)
}

func TestDecodeValidation(t *testing.T) {
	num := func(s string) json.Number { return json.Number(s) }
	tests := []struct {
		name  string
		mut   func(pr, hdr map[string]any)
		field string // expected in the MessageFormat text; "" means valid
	}{
		{"valid", func(pr, hdr map[string]any) {}, ""},
		{"unknown fields ignored", func(pr, hdr map[string]any) { pr["Whatever"] = map[string]any{"X": 1}; hdr["Extra"] = "x" }, ""},
		{"amount as string", func(pr, hdr map[string]any) { amounts(pr)["RequestedAmount"] = "10.99" }, ""},
		{"trailing zero decimals", func(pr, hdr map[string]any) { amounts(pr)["RequestedAmount"] = num("10.990") }, ""},
		{"exponent", func(pr, hdr map[string]any) { amounts(pr)["RequestedAmount"] = num("1.099E1") }, ""},
		{"no header", func(pr, hdr map[string]any) { clear(hdr) }, "MessageHeader.MessageClass"},
		{"no service id", func(pr, hdr map[string]any) { delete(hdr, "ServiceID") }, "MessageHeader.ServiceID"},
		{"service id too long", func(pr, hdr map[string]any) { hdr["ServiceID"] = "12345678901" }, "MessageHeader.ServiceID"},
		{"no sale id", func(pr, hdr map[string]any) { delete(hdr, "SaleID") }, "MessageHeader.SaleID"},
		{"no poiid", func(pr, hdr map[string]any) { delete(hdr, "POIID") }, "MessageHeader.POIID"},
		{"protocol 2", func(pr, hdr map[string]any) { hdr["ProtocolVersion"] = "2.0" }, "MessageHeader.ProtocolVersion"},
		{"bad class", func(pr, hdr map[string]any) { hdr["MessageClass"] = "Nope" }, "MessageHeader.MessageClass"},
		{"no body", func(pr, hdr map[string]any) { clear(pr); delete(pr, "x") }, "PaymentRequest.SaleData"},
		{"no sale transaction id", func(pr, hdr map[string]any) {
			delete(pr["SaleData"].(map[string]any), "SaleTransactionID")
		}, "PaymentRequest.SaleData.SaleTransactionID"},
		{"bad timestamp", func(pr, hdr map[string]any) {
			pr["SaleData"].(map[string]any)["SaleTransactionID"].(map[string]any)["TimeStamp"] = "yesterday"
		}, "PaymentRequest.SaleData.SaleTransactionID.TimeStamp"},
		{"no currency", func(pr, hdr map[string]any) { delete(amounts(pr), "Currency") }, "AmountsReq.Currency"},
		{"unknown currency", func(pr, hdr map[string]any) { amounts(pr)["Currency"] = "XYZ" }, "AmountsReq.Currency"},
		{"currency wrong type", func(pr, hdr map[string]any) { amounts(pr)["Currency"] = 978 }, "AmountsReq.Currency"},
		{"no amount", func(pr, hdr map[string]any) { delete(amounts(pr), "RequestedAmount") }, "AmountsReq.RequestedAmount"},
		{"negative", func(pr, hdr map[string]any) { amounts(pr)["RequestedAmount"] = num("-1.00") }, "AmountsReq.RequestedAmount"},
		{"zero", func(pr, hdr map[string]any) { amounts(pr)["RequestedAmount"] = num("0") }, "AmountsReq.RequestedAmount"},
		{"too many decimals", func(pr, hdr map[string]any) { amounts(pr)["RequestedAmount"] = num("10.999") }, "AmountsReq.RequestedAmount"},
		{"amount bool", func(pr, hdr map[string]any) { amounts(pr)["RequestedAmount"] = true }, "RequestedAmount"},
		{"payment type", func(pr, hdr map[string]any) {
			pr["PaymentData"].(map[string]any)["PaymentType"] = "CashAdvance"
		}, "PaymentRequest.PaymentData.PaymentType"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := JSONCodec{}.DecodeRequest(mutate(t, tc.mut))
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			var ne *Error
			require.ErrorAs(t, err, &ne)
			require.Equal(t, MessageFormat, ne.Condition)
			require.Contains(t, ne.Text, tc.field)
		})
	}
}
