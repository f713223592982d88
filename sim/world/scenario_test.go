package world_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/sim/world"
)

// scenarioFiles are the repository's scenario files, which CI runs.
func scenarioFiles(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join("..", "..", "scenarios", "*.json"))
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
			sc, err := world.ParseScenario(data)
			require.NoError(t, err)
			var progress bytes.Buffer
			err = world.RunScenario(t.Context(), sc, world.ScenarioOptions{Dir: t.TempDir(), Progress: &progress})
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
		sc, err := world.ParseScenario(data)
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
					"path suffix": fl.Suffix != "", "aimed at a payment": fl.Payment != "", "status spellings": len(fl.StatusSpellings) > 0,
					"async refunds": fl.Refunds == "async", "agent clock": fl.AgentClock != nil,
					// issue 16: the Retail API relay
					"relay drop": fl.Retail != nil && fl.Retail.DropAfterRelay > 0, "relay answer lost": fl.Retail != nil && fl.Retail.DropAnswer > 0,
					"relay duplicate": fl.Retail != nil && fl.Retail.Duplicate > 0, "slow device": fl.Retail != nil && fl.Retail.SlowDevice > 0,
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
		{"cloud without settings.cloud", `{"name":"x","steps":[{"pos":"diagnosis","via":"cloud"}]}`, []string{`step 1 (pos diagnosis): field "via"`, "settings.cloud"}},
		{"via elsewhere", `{"name":"x","settings":{"cloud":true},"steps":[{"pos":"diagnosis","via":"mqtt"}]}`, []string{`field "via"`, `want "cloud"`}},
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

		// The adversarial PPaaS's steps and fields.
		{"suffix without /", `{"name":"x","steps":[{"fault":{"suffix":"refund","status":404}}]}`, []string{`step 1 (fault): field "fault.suffix"`, "start with /"}},
		{"suffix without effect", `{"name":"x","steps":[{"fault":{"suffix":"/refund"}}]}`, []string{`field "fault.suffix"`, "status, reset or latency"}},
		{"payment fault for no pay step", `{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB","serviceId":"A"},{"fault":{"payment":"B","status":404}}]}`,
			[]string{`step 2 (fault): field "fault.payment"`, `"B" is not the serviceId of a pay step`}},
		{"payment fault without effect", `{"name":"x","steps":[{"fault":{"payment":"A"}},{"pos":"pay","amount":"1","currency":"EUR","brand":"KB","serviceId":"A"}]}`,
			[]string{`step 1 (fault): field "fault.payment"`, "status, reset or latency"}},
		{"spelling of no status", `{"name":"x","steps":[{"fault":{"statusSpellings":{"paid":"PAID"}}}]}`, []string{`field "fault.statusSpellings"`, `"paid" is not a PPaaS status`}},
		{"empty spelling", `{"name":"x","steps":[{"fault":{"statusSpellings":{"approved":""}}}]}`, []string{`field "fault.statusSpellings.approved"`}},
		{"bad refund mode", `{"name":"x","steps":[{"fault":{"refunds":"later"}}]}`, []string{`field "fault.refunds"`, "sync or async"}},
		{"refund delay alone", `{"name":"x","steps":[{"fault":{"refundDelay":"1s"}}]}`, []string{`field "fault.refundDelay"`, "async"}},
		{"bad agent clock", `{"name":"x","steps":[{"fault":{"agentClock":"tomorrow"}}]}`, []string{"step 1", `duration "tomorrow"`}},
		{"negative wait", `{"name":"x","steps":[{"wait":"-1s"}]}`, []string{`step 1 (wait -1s): field "wait"`, "negative"}},
		{"wait longer than its timeout", `{"name":"x","steps":[{"wait":"2s","timeout":"1s"}]}`, []string{`field "timeout"`, "shorter than the wait"}},
		{"wait with a serviceId", `{"name":"x","steps":[{"wait":"1s","serviceId":"A"}]}`, []string{`field "serviceId"`, "does not take a serviceId"}},
		{"wait and expect", `{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB"},{"wait":"1s","expectNetCharges":0}]}`,
			[]string{"step 2", "does one thing"}},
		{"negative net charges", `{"name":"x","steps":[{"expectNetCharges":-1}]}`, []string{`step 1 (expectNetCharges): field "expectNetCharges"`}},
		{"expectPPaaS before a pay", `{"name":"x","steps":[{"expectPPaaS":{"status":"approved"}}]}`, []string{`step 1 (expectPPaaS): field "expectPPaaS"`, "earlier pay step"}},
		{"expectPPaaS of an unknown payment", `{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB","serviceId":"A"},{"expectPPaaS":{"status":"approved"},"serviceId":"B"}]}`,
			[]string{`step 2 (expectPPaaS): field "serviceId"`}},
		{"expectPPaaS checks nothing", `{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB"},{"expectPPaaS":{}}]}`,
			[]string{`step 2 (expectPPaaS): field "expectPPaaS"`, "nothing to check"}},
		{"expectPPaaS bad fields", `{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB"},{"expectPPaaS":{"status":"paid","refunded":"-1","charged":"1e3","charges":-1}}]}`,
			[]string{`field "expectPPaaS.status"`, `field "expectPPaaS.refunded"`, `field "expectPPaaS.charged"`, `field "expectPPaaS.charges"`}},
		{"expectPPaaS unknown field", `{"name":"x","steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB"},{"expectPPaaS":{"refund":"1"}}]}`,
			[]string{"step 2", `unknown field "refund"`}},
		{"bad repeated expect", `{"name":"x","steps":[{"pos":"status","expect":{"repeated":{"result":"OK","errorCondition":"Refusal"}}}]}`,
			[]string{`step 1 (pos status): field "expect.repeated.result"`}},
		{"repeated inside repeated", `{"name":"x","steps":[{"pos":"status","expect":{"repeated":{"repeated":{}}}}]}`, []string{`field "expect.repeated"`, "no original response of its own"}},
		{"message and notMessage the same", `{"name":"x","steps":[{"pos":"status","expect":{"message":"a","notMessage":"a"}}]}`, []string{`field "expect.notMessage"`}},
		{"bad Pennymatic paid status", `{"name":"x","settings":{"pennymaticPaidStatus":"paid"},"steps":[{"await":"idle"}]}`, []string{`field "settings.pennymaticPaidStatus"`}},
		{"unknown agent config key", `{"name":"x","settings":{"agentConfig":{"no_such_key":1}},"steps":[{"await":"idle"}]}`,
			[]string{`field "settings.agentConfig.no_such_key"`, "not an agent configuration key"}},
		{"agent config of the wrong type", `{"name":"x","settings":{"agentConfig":{"strict":"yes"}},"steps":[{"await":"idle"}]}`,
			[]string{`field "settings.agentConfig.strict"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := world.ParseScenario([]byte(tc.json))
			require.Error(t, err)
			var se *world.ScenarioError
			require.True(t, errors.As(err, &se), "a *ScenarioError: %v", err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestParseScenarioAdversarialSteps(t *testing.T) {
	sc, err := world.ParseScenario([]byte(`{"name":"adv","settings":{"pennymaticPaidStatus":"confirming","agentConfig":{"strict":false}},"steps":[
		{"fault":{"payment":"S1","suffix":"/refund","status":404,"count":2}},
		{"fault":{"statusSpellings":{"approved":"AUTHORIZED"},"refunds":"async","refundDelay":"1s","agentClock":"-2h"}},
		{"pos":"pay","amount":"1","currency":"EUR","brand":"KB","serviceId":"S1"},
		{"wait":"250ms"},
		{"fault":{"completeRefunds":true,"statusSpellings":{}}},
		{"expectPPaaS":{"status":"refunded","charged":"1.00","refunded":"1","refundPending":"0","charges":1},"serviceId":"S1"},
		{"expectNetCharges":0},
		{"pos":"status","serviceId":"S1","expect":{"result":"Success","repeated":{"result":"Failure","errorCondition":"Aborted","message":"refunded","notMessage":"never"}}}]}`))
	require.NoError(t, err)
	require.Equal(t, "/refund", sc.Steps[0].Fault.Suffix)
	require.Equal(t, "S1", sc.Steps[0].Fault.Payment)
	require.Equal(t, map[string]string{"approved": "AUTHORIZED"}, sc.Steps[1].Fault.StatusSpellings)
	require.Equal(t, -2*time.Hour, sc.Steps[1].Fault.AgentClock.D())
	require.Equal(t, 250*time.Millisecond, sc.Steps[3].Wait.D())
	require.NotNil(t, sc.Steps[4].Fault.StatusSpellings, "{} restores the spellings: set, not absent")
	require.Equal(t, "1", sc.Steps[5].ExpectPPaaS.Refunded)
	require.Equal(t, "Aborted", sc.Steps[7].Expect.Repeated.ErrorCondition)
	for i, want := range []string{"fault", "fault", "pos pay", "wait 250ms", "fault", "expectPPaaS", "expectNetCharges", "pos status"} {
		require.Equal(t, want, world.StepKind(&sc.Steps[i]), "step %d", i+1)
	}
}

// scenarioFilesIn are the scenario files in scenarios/dir of the repository.
func scenarioFilesIn(t testing.TB, dir string) []string {
	files, err := filepath.Glob(filepath.Join("..", "..", "scenarios", dir, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no scenario files in scenarios/%s", dir)
	return files
}

// moneyScenarioFiles are the issue-10 money-safety scenarios: they express
// the agent's fixed behaviour, so CI runs them only once it is merged.
func moneyScenarioFiles(t testing.TB) []string { return scenarioFilesIn(t, "money") }

// runScenarioFiles runs each scenario file as a parallel subtest.
func runScenarioFiles(t *testing.T, files []string) {
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			sc, err := world.ParseScenario(data)
			require.NoError(t, err)
			t.Parallel()
			var progress bytes.Buffer
			err = world.RunScenario(t.Context(), sc, world.ScenarioOptions{Dir: t.TempDir(), Progress: &progress})
			require.NoError(t, err, "progress:\n%s", progress.String())
		})
	}
}

// The money-safety scenarios (issue 10: each failed against the agent before
// its fix) run in CI with the others.
func TestMoneyScenarioFiles(t *testing.T) { runScenarioFiles(t, moneyScenarioFiles(t)) }

func TestParseScenarioAcceptsAMinimalFile(t *testing.T) {
	sc, err := world.ParseScenario([]byte(`{"name":"min","steps":[{"pos":"pay","amount":"1","currency":"eur","brand":"KB"},{"expect":{"result":"Success"}}]}`))
	require.NoError(t, err)
	require.Len(t, sc.Steps, 2)
}

// FuzzParseScenario: the parser never panics, and what it accepts validates
// and survives a round trip through JSON.
func FuzzParseScenario(f *testing.F) {
	for _, file := range append(scenarioFiles(f), moneyScenarioFiles(f)...) {
		data, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte(`{"name":"x","steps":[{"fault":{"clockSkew":"-1h","path":"/a","latency":"1ms"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := world.ParseScenario(data)
		if err != nil {
			var se *world.ScenarioError
			if !errors.As(err, &se) {
				t.Fatalf("error is not a *ScenarioError: %v", err)
			}
			return
		}
		require.NoError(t, sc.Validate())
		require.NotEmpty(t, sc.Steps)
	})
}
