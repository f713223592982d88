package sim_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/sim"
)

// scenarioFiles are the repository's scenario files, which CI runs.
func scenarioFiles(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join("..", "scenarios", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no scenario files in ../scenarios")
	return files
}

func TestScenarioFiles(t *testing.T) {
	for _, f := range scenarioFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			sc, err := sim.ParseScenario(data)
			require.NoError(t, err)
			var progress bytes.Buffer
			err = sim.RunScenario(t.Context(), sc, sim.ScenarioOptions{Dir: t.TempDir(), Progress: &progress})
			require.NoError(t, err, "progress:\n%s", progress.String())
		})
	}
}

func TestScenarioFilesCoverEveryProviderAndFault(t *testing.T) {
	brands := map[string]bool{}
	faults := map[string]bool{}
	for _, f := range scenarioFiles(t) {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		sc, err := sim.ParseScenario(data)
		require.NoError(t, err, f)
		for _, s := range sc.Steps {
			if s.Brand != "" {
				brands[s.Brand] = true
			}
			if fl := s.Fault; fl != nil {
				for name, set := range map[string]bool{
					"http status": fl.Status != 0, "http latency": fl.Latency != 0, "http reset": fl.Reset,
					"create lost": fl.CreateErrors > 0, "drop": fl.DropEvents > 0, "duplicate": fl.DuplicateEvents > 0,
					"reorder": fl.ReorderEvents > 0, "delay": fl.DelayEvents > 0, "clock skew": fl.ClockSkew != nil,
					"token expiry": fl.ExpireTokens, "revoke": fl.RevokeDevice, "restore": fl.RestoreDevice,
					"broker stop": fl.Broker == "stop", "broker kick": fl.Broker == "kick",
				} {
					faults[name] = faults[name] || set
				}
			}
		}
	}
	for _, b := range []string{"KB", "PENNYMATIC", "PLEDG", "KTWIDGET", "PTI"} {
		require.True(t, brands[b], "no scenario pays with %s", b)
	}
	for name, covered := range faults {
		require.True(t, covered, "no scenario injects %s", name)
	}
}

func TestParseScenarioErrorsNameStepAndField(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string // substrings of the error
	}{
		{"not JSON", `{`, []string{"unexpected EOF"}},
		{"unknown top-level field", `{"name":"x","stpes":[]}`, []string{`unknown field "stpes"`}},
		{"no name, no steps", `{"steps":[]}`, []string{`field "name": is required`, `field "steps"`}},
		{"unknown step field", `{"name":"x","steps":[{"pos":"pay","amout":"1"}]}`, []string{`step 1`, `unknown field "amout"`}},
		{"wrong type", `{"name":"x","steps":[{"expectCharges":"one"}]}`, []string{"step 1", "expectCharges"}},
		{"no action", `{"name":"x","steps":[{"amount":"1"}]}`, []string{"step 1", "no action"}},
		{"two actions", `{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB"},{"await":"approved","consumer":"pay"}]}`,
			[]string{"step 2", `field "consumer"`, "does one thing"}},
		{"unknown POS request", `{"name":"x","steps":[{"pos":"refund"}]}`, []string{`step 1 (pos refund): field "pos"`}},
		{"bad amount", `{"name":"x","steps":[{"pos":"pay","amount":"12.345","currency":"EUR","brand":"KB"}]}`,
			[]string{`step 1 (pos pay): field "amount"`, "2 decimals"}},
		{"bad currency", `{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EURO","brand":"KB"}]}`, []string{`field "amount"`, "ISO 4217"}},
		{"missing brand", `{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR"}]}`, []string{`field "brand": is required`}},
		{"long service id", `{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB","serviceId":"12345678901"}]}`,
			[]string{`field "serviceId"`, "1 to 10"}},
		{"consumer before pay", `{"name":"x","steps":[{"consumer":"pay"}]}`, []string{`step 1 (consumer pay)`, "earlier pay step"}},
		{"unknown screen", `{"name":"x","steps":[{"await":"paid"}]}`, []string{`step 1 (await paid): field "await"`}},
		{"bad duration", `{"name":"x","steps":[{"await":"approved","timeout":"soon"}]}`, []string{"step 1", `duration "soon"`}},
		{"bad settings", `{"name":"x","settings":{"providerMode":"maybe"},"steps":[{"await":"idle"}]}`, []string{`field "settings.providerMode"`}},
		{"empty fault", `{"name":"x","steps":[{"fault":{}}]}`, []string{`step 1 (fault): field "fault"`, "no fault"}},
		{"http fault without path", `{"name":"x","steps":[{"fault":{"status":503}}]}`, []string{`field "fault.path"`}},
		{"bad status", `{"name":"x","steps":[{"fault":{"path":"/x","status":42}}]}`, []string{`field "fault.status"`}},
		{"bad broker", `{"name":"x","steps":[{"fault":{"broker":"reboot"}}]}`, []string{`field "fault.broker"`}},
		{"bad expect", `{"name":"x","steps":[{"pos":"status","expect":{"result":"OK"}}]}`, []string{`step 1 (pos status): field "expect.result"`}},
		{"expect for an unknown payment", `{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB","serviceId":"A"},{"expect":{},"serviceId":"B"}]}`,
			[]string{`step 2 (expect): field "serviceId"`}},
		{"negative charges", `{"name":"x","steps":[{"expectCharges":-1}]}`, []string{`field "expectCharges"`}},
		{"several problems at once", `{"name":"x","steps":[{"pos":"pay"},{"await":"nope"}]}`,
			[]string{`step 1 (pos pay): field "currency"`, `step 1 (pos pay): field "brand"`, `step 2 (await nope)`}},
		{"trailing data", `{"name":"x","steps":[{"await":"idle"}]} {}`, []string{"trailing data"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sim.ParseScenario([]byte(tc.json))
			require.Error(t, err)
			var se *sim.ScenarioError
			require.True(t, errors.As(err, &se), "a *ScenarioError: %v", err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestParseScenarioAcceptsAMinimalFile(t *testing.T) {
	sc, err := sim.ParseScenario([]byte(`{"name":"min","steps":[{"pos":"pay","amount":"1","currency":"eur","brand":"KB"},{"expect":{"result":"Success"}}]}`))
	require.NoError(t, err)
	require.Len(t, sc.Steps, 2)
}

// FuzzParseScenario: the parser never panics, and what it accepts validates
// and survives a round trip through JSON.
func FuzzParseScenario(f *testing.F) {
	for _, file := range scenarioFiles(f) {
		data, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte(`{"name":"x","steps":[{"fault":{"clockSkew":"-1h","path":"/a","latency":"1ms"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := sim.ParseScenario(data)
		if err != nil {
			var se *sim.ScenarioError
			if !errors.As(err, &se) {
				t.Fatalf("error is not a *ScenarioError: %v", err)
			}
			return
		}
		require.NoError(t, sc.Validate())
		require.NotEmpty(t, sc.Steps)
	})
}
