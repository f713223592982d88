//go:build failpoints && unix

package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Enabled reports whether failpoints are compiled in.
const Enabled = true

// EnvVar selects the armed failpoint.
const EnvVar = "TERMAGENT_FAILPOINT"

var (
	armOnce sync.Once
	armed   string
	nth     int64
	hits    atomic.Int64
)

func arm() {
	spec := os.Getenv(EnvVar)
	name, n, ok := strings.Cut(spec, "@")
	armed, nth = name, 1
	if ok {
		if v, err := strconv.ParseInt(n, 10, 64); err == nil && v > 0 {
			nth = v
		}
	}
}

// Hit kills the process with SIGKILL when name is the armed failpoint and this
// is its n-th hit.
func Hit(name string) {
	armOnce.Do(arm)
	if armed == "" || name != armed {
		return
	}
	if hits.Add(1) != nth {
		return
	}
	fmt.Fprintf(os.Stderr, "{\"msg\":\"failpoint hit\",\"failpoint\":%q}\n", name)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not deliverable late; never return
}
