//go:build !failpoints || !unix

package failpoint

// Enabled reports whether failpoints are compiled in.
const Enabled = false

// Hit marks a failpoint; in a release build it does nothing.
func Hit(string) {}
