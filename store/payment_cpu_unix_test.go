//go:build unix

package store

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPaymentCPU: the CPU time (user and system, the whole process)
// one payment of benchWorldPayment costs the store without fsync: its
// operations, bbolt's tree work and page writes, the reads of the outbox.
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
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	b.ResetTimer()
	for i := range b.N {
		var err error
		if prev, err = benchWorldPayment(ctx, s, 1000+i, prev); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := time.Duration(syscall.TimevalToNsec(r1.Utime) - syscall.TimevalToNsec(r0.Utime) + syscall.TimevalToNsec(r1.Stime) - syscall.TimevalToNsec(r0.Stime))
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/payment")
	b.ReportMetric(float64(r1.Minflt-r0.Minflt)/float64(b.N), "minflt/payment")
}
