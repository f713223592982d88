package nexo

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// codeLists are the Nexo Retailer 3.x code lists of testdata/codelists.json.
func codeLists(t *testing.T) map[string]map[string]bool {
	t.Helper()
	b, err := os.ReadFile("testdata/codelists.json")
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(b, &raw))
	out := map[string]map[string]bool{}
	for field, v := range raw {
		vs, ok := v.([]any)
		if !ok {
			continue // _source
		}
		out[field] = map[string]bool{}
		for _, s := range vs {
			out[field][s.(string)] = true
		}
	}
	return out
}

// TestEmittedValuesAreInTheCodeLists: every enumerated value this package
// writes is in its Nexo code list, so no made-up value ships.
func TestEmittedValuesAreInTheCodeLists(t *testing.T) {
	lists := codeLists(t)
	emitted := map[string][]string{
		"MessageClass": {string(ClassService), string(ClassDevice), string(ClassEvent)},
		"MessageCategory": {string(CategoryLogin), string(CategoryLogout), string(CategoryPayment), string(CategoryReversal), string(CategoryAbort),
			string(CategoryTransactionStatus), string(CategoryDiagnosis), string(CategoryDisplay), string(CategoryEvent), string(CategoryGetTotals), string(CategoryReconciliation)},
		"MessageType": {string(TypeRequest), string(TypeResponse), string(TypeNotification)},
		"Result":      {string(Success), string(Failure), string(Partial)},
		"ErrorCondition": {string(Aborted), string(Busy), string(Cancel), string(DeviceOut), string(InsertedCard), string(InProgress), string(LoggedOut),
			string(MessageFormat), string(NotAllowed), string(NotFound), string(PaymentRestriction), string(Refusal), string(UnavailableDevice),
			string(UnavailableService), string(UnreachableHost), string(WrongPIN)},
		"PaymentType":           {string(PaymentNormal), string(PaymentRefund)},
		"PaymentInstrumentType": {InstrumentMobile},
		"GlobalStatus":          {"OK", "Busy"},
		"EventToNotify":         {"Reject"},
		"OutputFormat":          {OutputText, OutputBarCode},
		"BarcodeType":           {BarcodeQRCode},
		"TotalDetails":          allDetails,
		"TransactionType":       {TotalsDebit, TotalsCredit, TotalsReverseDebit, TotalsReverseCredit},
		"ReconciliationType":    {ReconSale, ReconAcquirerSynchronisation, ReconAcquirer, ReconPrevious},
		"DocumentQualifier":     {CashierReceipt, CustomerReceipt},
		"EntryMode":             {EntryModeScanned},
		"TokenRequestedType":    {TokenTransaction},
	}
	for field, values := range emitted {
		list, ok := lists[field]
		require.True(t, ok, "no code list for %s in testdata/codelists.json", field)
		for _, v := range values {
			require.True(t, list[v], "%s %q is not in the Nexo code list", field, v)
		}
	}
}

// TestGoldenValuesAreInTheCodeLists walks every golden message (what the
// server answered, and the requests it accepts) and checks each enumerated
// field against its code list.
func TestGoldenValuesAreInTheCodeLists(t *testing.T) {
	lists := codeLists(t)
	files, err := filepath.Glob("testdata/golden/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var tree any
		require.NoError(t, json.Unmarshal(b, &tree), f)
		var walk func(path string, v any)
		walk = func(path string, v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, c := range x {
					if list, ok := lists[k]; ok {
						var vals []any
						switch cv := c.(type) {
						case string:
							vals = []any{cv}
						case []any:
							vals = cv
						}
						for _, s := range vals {
							require.True(t, list[s.(string)], "%s: %s.%s %q is not in the Nexo code list", f, path, k, s)
							checked++
						}
					}
					walk(path+"."+k, c)
				}
			case []any:
				for _, c := range x {
					walk(path, c)
				}
			}
		}
		walk("", tree)
	}
	require.Greater(t, checked, 100, "the walk reached the enumerated fields")
}
