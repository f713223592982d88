package sim

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFaultsRoundTrip: what GET /control/faults lists, POST takes back and
// installs as the same faults; latency reads as a duration string or, as
// before, milliseconds, and lists as a duration string.
func TestFaultsRoundTrip(t *testing.T) {
	a := newAdvPPaaS(t, ProvidersConfig{})
	for _, body := range []string{
		`{"path":"/qrcode-payment","latency":"2s"}`,
		`{"path":"/qrcode-payment/v1/transactions","method":"POST","latencyMs":1500,"status":503,"count":2}`,
		`{"suffix":"/refund","orderId":"ORDER-S1","transactionId":"qr-1","reset":true}`,
	} {
		code, out := a.control(http.MethodPost, "/control/faults", body)
		require.Equal(t, http.StatusCreated, code, out)
	}
	code, listed := a.control(http.MethodGet, "/control/faults", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, listed, `"latency":"2s"`)
	require.Contains(t, listed, `"latency":"1.5s"`)
	require.NotContains(t, listed, "latencyMs")
	var before []Fault
	require.NoError(t, json.Unmarshal([]byte(listed), &before))
	require.Equal(t, []Fault{
		{Path: "/qrcode-payment", Latency: 2 * time.Second},
		{Path: "/qrcode-payment/v1/transactions", Method: "POST", Latency: 1500 * time.Millisecond, Status: 503, Count: 2},
		{Suffix: "/refund", OrderID: "ORDER-S1", Transaction: "qr-1", Reset: true},
	}, before)

	// The list posted back as it is, after a clear: the same faults.
	code, _ = a.control(http.MethodDelete, "/control/faults", "")
	require.Equal(t, http.StatusNoContent, code)
	code, out := a.control(http.MethodPost, "/control/faults", listed)
	require.Equal(t, http.StatusCreated, code, out)
	code, again := a.control(http.MethodGet, "/control/faults", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, listed, again)

	// One listed fault posted alone is taken too.
	var one []json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(listed), &one))
	code, out = a.control(http.MethodPost, "/control/faults", string(one[0]))
	require.Equal(t, http.StatusCreated, code, out)
	require.JSONEq(t, string(one[0]), out)
}

// TestPaymentFaultsRoundTrip: GET /control/payments/faults returns what POST
// takes back.
func TestPaymentFaultsRoundTrip(t *testing.T) {
	a := newAdvPPaaS(t, ProvidersConfig{})
	code, out := a.control(http.MethodPost, "/control/payments/faults", `{"createErrors":1,"dropEvents":2,"duplicateEvents":3,"reorderEvents":4,"delayEvents":5,"eventDelayMs":250}`)
	require.Equal(t, http.StatusOK, code, out)
	code, listed := a.control(http.MethodGet, "/control/payments/faults", "")
	require.Equal(t, http.StatusOK, code)
	code, out = a.control(http.MethodPost, "/control/payments/faults", listed)
	require.Equal(t, http.StatusOK, code, out)
	code, again := a.control(http.MethodGet, "/control/payments/faults", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, listed, again)
	require.JSONEq(t, `{"createErrors":1,"dropEvents":2,"duplicateEvents":3,"reorderEvents":4,"delayEvents":5,"eventDelayMs":250}`, again)
}

// TestControlRefusesUnknownFields: a misspelt or unsupported field is refused
// by name, on every control body, instead of being ignored.
func TestControlRefusesUnknownFields(t *testing.T) {
	a := newAdvPPaaS(t, ProvidersConfig{})
	for _, tc := range []struct{ method, path, body, field string }{
		{http.MethodPost, "/control/faults", `{"path":"/a","status":404,"sufix":"/x"}`, "sufix"},
		{http.MethodPost, "/control/faults", `[{"path":"/a","status":404},{"path":"/b","latencey":"1s"}]`, "latencey"},
		{http.MethodPost, "/control/payments/faults", `{"dropEvents":1,"dropEvent":2}`, "dropEvent"},
		{http.MethodPost, "/control/payments/mode", `{"mode":"approve","delay":1}`, "delay"},
		{http.MethodPost, "/control/payments/refunds", `{"mode":"async","delay":"1s"}`, "delay"},
		{http.MethodPost, "/control/clock", `{"skewMs":10,"skew":"10ms"}`, "skew"},
		{http.MethodPost, "/terminal/" + advSerial + "/scan", `{"code":"x","cod":"y"}`, "cod"},
	} {
		code, out := a.control(tc.method, tc.path, tc.body)
		require.Equal(t, http.StatusBadRequest, code, "%s %s: %s", tc.path, tc.body, out)
		require.Contains(t, out, `unknown field \"`+tc.field+`\"`, "%s %s", tc.path, tc.body)
	}
	// A refused list installs none of it.
	code, out := a.control(http.MethodGet, "/control/faults", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `[]`, out)

	code, out = a.control(http.MethodPost, "/control/faults", `{"path":"/a","latency":"2s","latencyMs":2000}`)
	require.Equal(t, http.StatusBadRequest, code, out)
	require.Contains(t, out, "not both")
	code, out = a.control(http.MethodPost, "/control/faults", `{"path":"/a","latency":2000}`)
	require.Equal(t, http.StatusBadRequest, code, out)
	require.Contains(t, out, "duration string")
}

// TestReadmeFaultExample posts the README's example fault body as written.
func TestReadmeFaultExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	m := regexp.MustCompile("one fault or a list, e\\.g\\.\\s+`(\\{[^`]+\\})`").FindSubmatch(readme)
	require.NotNil(t, m, "the README's example fault")
	a := newAdvPPaaS(t, ProvidersConfig{})
	code, out := a.control(http.MethodPost, "/control/faults", string(m[1]))
	require.Equal(t, http.StatusCreated, code, out)
	code, listed := a.control(http.MethodGet, "/control/faults", "")
	require.Equal(t, http.StatusOK, code)
	var f []Fault
	require.NoError(t, json.Unmarshal([]byte(listed), &f))
	require.Equal(t, []Fault{{Path: "/qrcode-payment/v1/transactions", Method: "POST", Status: 503, Latency: 2 * time.Second, Count: 1}}, f)
}
