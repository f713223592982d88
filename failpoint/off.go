//go:build !failpoints || !unix

package failpoint

// Enabled reports whether failpoints are compiled in.
const Enabled = false

// EnvVar is empty: a release build reads no variable (on.go names it).
const EnvVar = ""

// Hit marks a failpoint; in a release build it does nothing.
func Hit(string) {}
