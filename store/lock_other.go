//go:build !unix || solaris || aix

package store

import "os"

// flockExclusive is a no-op where bbolt does not use flock (Windows uses
// LockFileEx on a byte range; Solaris and AIX use fcntl). There Recover
// relies on the operator having stopped the agent, as the CLI requires.
func flockExclusive(*os.File) error { return nil }
