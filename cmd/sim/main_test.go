package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDemoCompletesAQRPayment(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"demo", "-dir", t.TempDir(), "-pay-after", "10ms"}, &out, &errb)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	for _, want := range []string{"terminal shows the provider's QR", "▄", "consumer scans", "Payment Response: Success", `"AuthorizedAmount": 20.00`, "charges at the simulated PPaaS for this terminal: 1"} {
		require.Contains(t, out.String(), want)
	}
}

func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf")
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"certs", "--out", dir, "--serial", "220597303201181723869389", "--model", "DX8000"}, &out, &out))
	require.Contains(t, out.String(), "ingenico-DX8000-220597303201181723869389")
	for _, f := range []string{"ca.pem", "bundle.pem", "server.pem", "server.key", "client.pem", "client.key"} {
		_, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, f)
	}
	out.Reset()
	require.NoError(t, run(t.Context(), []string{"certs", "--out", dir}, &out, &out))
	require.Contains(t, out.String(), "kept the existing CA")
}

func TestParseAmount(t *testing.T) {
	tests := []struct {
		in, cur string
		want    int64
		err     string
	}{
		{"12.50", "EUR", 1250, ""},
		{"12.5", "eur", 1250, ""},
		{"1000", "JPY", 1000, ""},
		{"1.234", "KWD", 1234, ""},
		{"12.345", "EUR", 0, "has 2 decimals"},
		{"1.5", "JPY", 0, "has 0 decimals"},
		{"-1", "EUR", 0, "positive decimal"},
		{"0", "EUR", 0, "positive decimal"},
		{"ten", "EUR", 0, "positive decimal"},
		{"1", "XXZ", 0, "currency"},
		{"1e3", "EUR", 0, "positive decimal"},
		{"1/2", "EUR", 0, "positive decimal"},
		{"+1", "EUR", 0, "positive decimal"},
		{"1.", "EUR", 0, "positive decimal"},
		{".5", "EUR", 0, "positive decimal"},
		{"0x10", "EUR", 0, "positive decimal"},
		{" 1", "EUR", 0, "positive decimal"},
	}
	for _, tc := range tests {
		got, err := parseAmount(tc.in, tc.cur)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
	}
}

func TestUnknownCommandAndUsage(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"nope"}, &out, &out)
	require.ErrorContains(t, err, `unknown command "nope"`)
	require.True(t, strings.Contains(out.String(), "demo"))
}
