package sim

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFakeImportsNoDeviceSide keeps the simulated platform apart from the
// system under test: sim, its tests included, depends on the wire (ppaas),
// the certificates and third-party libraries, never on the device's packages
// nor on the harness (sim/world) that drives them.
func TestFakeImportsNoDeviceSide(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH")
	}
	out, err := exec.Command("go", "list", "-deps", "-test", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	const mod = "github.com/termagent/termagent/"
	forbidden := []string{"agent", "store", "nexo", "qr", "sim/world", "internal/testrig"}
	var seen []string
	for _, p := range strings.Fields(string(out)) {
		p, _, _ = strings.Cut(p, " ") // "pkg [pkg.test]" variants
		rel, ok := strings.CutPrefix(p, mod)
		if !ok {
			continue
		}
		seen = append(seen, rel)
		for _, f := range forbidden {
			if rel == f || strings.HasPrefix(rel, f+"/") {
				t.Errorf("package sim depends on %s%s: the fake platform must not import the device side or the harness", mod, rel)
			}
		}
	}
	require.Contains(t, seen, "ppaas", "the listing names sim's own dependencies")
}
