//go:build unix

package store

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkPaymentCPU: the CPU time (user and system, the whole process)
// one payment of benchWorldPayment costs the store without fsync: its
// operations, bbolt's tree work and page writes, the reads of the outbox.
// caller-cpu-µs/payment is the part spent on the payment's own thread (a
// lone write commits on its caller's goroutine, locked to one thread here):
// what the POS waits for, without the garbage collector's and the other
// goroutines' work, and much less disturbed by other processes.
//
//	go test -run '^$' -bench PaymentCPU -benchtime 3000x ./store/
func BenchmarkPaymentCPU(b *testing.B) {
	ctx := context.Background()
	s, _ := openTest(b, Options{PruneInterval: -1, NoSync: true})
	var prev []uint64
	for i := range 1000 {
		var err error
		if prev, err = benchWorldPayment(ctx, s, i, prev); err != nil {
			b.Fatal(err)
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	t0 := threadCPU(b)
	b.ResetTimer()
	for i := range b.N {
		var err error
		if prev, err = benchWorldPayment(ctx, s, 1000+i, prev); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	t1 := threadCPU(b)
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := time.Duration(syscall.TimevalToNsec(r1.Utime) - syscall.TimevalToNsec(r0.Utime) + syscall.TimevalToNsec(r1.Stime) - syscall.TimevalToNsec(r0.Stime))
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/payment")
	b.ReportMetric(float64(r1.Minflt-r0.Minflt)/float64(b.N), "minflt/payment")
	b.ReportMetric(float64((t1-t0).Nanoseconds())/1e3/float64(b.N), "caller-cpu-µs/payment")
}

// threadCPU is the CPU time the calling thread has used.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}
