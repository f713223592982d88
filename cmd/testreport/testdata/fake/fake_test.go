package fake

import (
	"os"
	"testing"
)

func TestPasses(t *testing.T) { t.Log("quiet when it passes") }

func TestNeedsMosquitto(t *testing.T) {
	t.Skip("mosquitto not installed (apt-get install mosquitto; .ci/run installs it)")
}

func TestHelperProcess(t *testing.T) { t.Skip("helper process for TestPasses") }

func TestFailsWhenAsked(t *testing.T) {
	if os.Getenv("TESTREPORT_FAIL") != "" {
		t.Fatal("failed as asked")
	}
}

func TestCrashesWhenAsked(t *testing.T) {
	t.Log("last words before the crash")
	if os.Getenv("TESTREPORT_CRASH") != "" {
		os.Exit(3)
	}
}
