package agent

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
)

// TestAgentValuesAreInTheNexoCodeLists: what the agent itself puts in Nexo
// messages (beyond the nexo package's own values) is in the Nexo 3.x code
// lists of nexo/testdata/codelists.json.
func TestAgentValuesAreInTheNexoCodeLists(t *testing.T) {
	b, err := os.ReadFile("../nexo/testdata/codelists.json")
	require.NoError(t, err)
	var lists map[string]any
	require.NoError(t, json.Unmarshal(b, &lists))
	in := func(field, v string) {
		t.Helper()
		for _, s := range lists[field].([]any) {
			if s == v {
				return
			}
		}
		t.Fatalf("%s %q is not in the Nexo code list", field, v)
	}
	res, err := outcomeToNexo(qr.Outcome{Result: qr.ResultApproved, ClientTransactionID: "c", TransactionID: "t",
		Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}, Method: qr.Method{PaymentType: "KB"}}, "KB", nexo.PaymentRequest{})
	require.NoError(t, err)
	in("PaymentInstrumentType", res.InstrumentType)
	in("PaymentType", string(res.Type))
	for _, ev := range []string{"Shutdown", "Initialised", afterSaleEvent} { // notifyPOS, after-sale updates
		in("EventToNotify", ev)
	}
}
