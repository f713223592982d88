//go:build (!unix && !windows) || solaris || aix

package store

import "os"

// tryLock is a no-op where the store does not take bbolt's lock (Solaris and
// AIX, where bbolt uses fcntl; none is a shipped target). There Open's check
// and Recover rely on the operator having stopped the agent.
func tryLock(*os.File) (unlock func(), err error) { return func() {}, nil }

const renameNeedsClose = false
