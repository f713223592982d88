package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReportListsSkipsAndWhatToInstall(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"-count=1", "./testdata/fake"}, &out, &errb)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	s := out.String()
	require.Contains(t, s, "ok  \tgithub.com/termagent/termagent/cmd/testreport/testdata/fake")
	require.NotContains(t, s, "quiet when it passes")
	require.Contains(t, s, "SKIPPED for a missing tool (1)")
	require.Contains(t, s, "testdata/fake TestNeedsMosquitto: mosquitto not installed (apt-get install mosquitto; .ci/run installs it)")
	require.Contains(t, s, "sudo apt-get install -y mosquitto\n")
	require.Contains(t, s, "skipped by design (1)")
	require.Contains(t, s, "TestHelperProcess: helper process for TestPasses")
	require.Less(t, strings.Index(s, "ok  "), strings.Index(s, "SKIPPED"), "the list comes last")
}

func TestReportShowsFailuresAndKeepsTheExitStatus(t *testing.T) {
	t.Setenv("TESTREPORT_FAIL", "1")
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"-count=1", "./testdata/fake"}, &out, &errb)
	require.NotEqual(t, 0, code)
	s := out.String()
	require.Contains(t, s, "--- FAIL: TestFailsWhenAsked")
	require.Contains(t, s, "failed as asked")
	require.Contains(t, s, "FAIL\tgithub.com/termagent/termagent/cmd/testreport/testdata/fake")
	require.Contains(t, s, "SKIPPED for a missing tool (1)", "skips are listed even when something failed")
}

func TestReportShowsBuildErrors(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"./testdata/nosuchpackage"}, &out, &errb)
	require.NotEqual(t, 0, code)
	require.Contains(t, out.String()+errb.String(), "nosuchpackage")
}

func TestSkipReason(t *testing.T) {
	require.Equal(t, "chromium not found", skipReason([]string{"=== RUN   TestX\n", "    x_test.go:36: chromium not found\n", "--- SKIP: TestX (0.00s)\n"}))
	require.Equal(t, "(no reason given)", skipReason([]string{"=== RUN   TestX\n", "--- SKIP: TestX (0.00s)\n"}))
}

func TestReportShowsWhereATestBinaryDied(t *testing.T) {
	t.Setenv("TESTREPORT_CRASH", "1")
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"-count=1", "./testdata/fake"}, &out, &errb)
	require.NotEqual(t, 0, code)
	require.Contains(t, out.String(), "last words before the crash")
}
