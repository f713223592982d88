package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	require.NoError(t, os.WriteFile(good, []byte(`{"name":"approve mode","settings":{"providerMode":"approve"},
		"steps":[{"pos":"pay","amount":"2.50","currency":"EUR","brand":"KB","expect":{"result":"Success","amount":"2.50"}},{"expectCharges":1}]}`), 0o600))
	failing := filepath.Join(dir, "failing.json")
	require.NoError(t, os.WriteFile(failing, []byte(`{"name":"wrong expectation","settings":{"providerMode":"decline"},
		"steps":[{"pos":"pay","amount":"1","currency":"EUR","brand":"KB","expect":{"result":"Success"}}]}`), 0o600))
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"name":"typo","steps":[{"pos":"pay","amout":"1"}]}`), 0o600))

	tests := []struct {
		name    string
		args    []string
		err     string
		outputs []string
	}{
		{"passes", []string{"run", good}, "", []string{"RUN  good.json: approve mode", "✓ step 1 pos pay", "Payment Response: Success", "ok   " + good, "\n1 passed, 0 failed\n"}},
		{"quiet, flags after the files", []string{"run", good, "-q"}, "", []string{"ok   " + good, "1 passed, 0 failed"}},
		{"check only", []string{"run", "-check", good, bad}, "1 of 2 scenarios failed", []string{"ok   " + good + " (2 steps)", "FAIL " + bad, `step 1: json: unknown field "amout"`, "1 passed, 1 failed"}},
		{"fails", []string{"run", failing}, "1 of 1 scenarios failed", []string{"FAIL " + failing, `step 1 (pos pay)`, `result is "Failure", want "Success"`, "0 passed, 1 failed"}},
		{"no file", []string{"run"}, "no scenario file", nil},
		{"missing file", []string{"run", filepath.Join(dir, "nope.json")}, "no such file", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(t.Context(), tc.args, &out, &errb)
			if tc.err == "" {
				require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
			} else {
				require.ErrorContains(t, err, tc.err)
			}
			for _, want := range tc.outputs {
				require.Contains(t, out.String(), want)
			}
		})
	}
}

func TestFleetCommand(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"fleet", "-n", "3", "-payments", "2", "-dir", t.TempDir()}, &out, &errb)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	for _, want := range []string{"fleet: 3 terminals", "payments: 6 sent, 6 succeeded, 0 failed", "payments/s", "memory per terminal", "lost: 0, duplicated: 0"} {
		require.Contains(t, out.String(), want)
	}
	require.Contains(t, errb.String(), "3 terminals ready")

	for _, args := range [][]string{{"fleet", "-n", "0"}, {"fleet", "-mosquitto", "-mqtt-url", "ssl://x:1"}, {"fleet", "-amount", "1.234"}, {"fleet", "extra"}} {
		require.Error(t, run(t.Context(), args, &out, &errb), "%v", args)
	}
}
