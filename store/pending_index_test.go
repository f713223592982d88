package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLastTxnWhileEvicting: LastTxn reads the overlay, then its snapshot;
// a transaction evicted between the two must not make it fail.
func TestLastTxnWhileEvicting(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	_, err := s.StartTxn(ctx, TxnRef{ID: "keep", SaleID: "POS"}, Transition{State: "s"}) // unfinished: never evicted
	require.NoError(t, err)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var fails atomic.Int64
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := s.LastTxn(ctx); err != nil && fails.Add(1) == 1 {
				t.Log(err)
			}
		}
	})
	for i := range 2000 { // compact refusals: evictable at once
		_, err := s.StartTxn(ctx, TxnRef{ID: fmt.Sprint("c", i), SaleID: "POS", ServiceID: fmt.Sprint(i), Compact: true}, Transition{State: "refused", Final: true})
		require.NoError(t, err)
		_, _, err = s.evictChunk(ctx, nil, 1<<30)
		require.NoError(t, err)
	}
	close(stop)
	wg.Wait()
	require.Zero(t, fails.Load(), "LastTxn failed while transactions were evicted")
}
