package testrig

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fatalT records the failure WaitFor reports and stops it as t.Fatal would.
type fatalT struct {
	*testing.T
	msg string
}

type stopped struct{}

func (f *fatalT) Helper() {}

func (f *fatalT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(stopped{})
}

func waitFor(t *testing.T, within time.Duration, cond func() bool, detail ...func() string) (msg string) {
	f := &fatalT{T: t}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopped); !ok {
				panic(r)
			}
			msg = f.msg
		}
	}()
	WaitFor(f, within, "the thing", cond, detail...)
	return ""
}

func TestWaitFor(t *testing.T) {
	n := 0
	require.Empty(t, waitFor(t, time.Second, func() bool { n++; return n == 3 }), "met on the third poll")
	require.Equal(t, 3, n)

	start := time.Now()
	msg := waitFor(t, 50*time.Millisecond, func() bool { return false }, func() string { return "state: idle" })
	require.Equal(t, "the thing: not within 50ms: state: idle", msg)
	require.Less(t, time.Since(start), 5*time.Second)
}
