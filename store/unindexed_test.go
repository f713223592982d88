package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// pendingIn counts the entries of journal.unindexed.
func pendingIn(t testing.TB, s *Store) int {
	t.Helper()
	var n int
	require.NoError(t, s.view(func(tx *bolt.Tx) error { n = tx.Bucket(bucketUnindexed).Stats().KeyN; return nil }))
	return n
}

// Readers see a transaction whose indexes are pending as they see an
// indexed one, and after the apply as before it.
func TestPendingIndexesAreRead(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	_, err := s.StartTxn(ctx, TxnRef{ID: "p1", SaleID: "POS1", ServiceID: "7"}, Transition{State: "started"})
	require.NoError(t, err)
	require.NoError(t, s.AppendTxn(ctx, "p1", Transition{State: "qr", Alias: "ppaas-1"}))
	_, err = s.StartTxn(ctx, TxnRef{ID: "p2", SaleID: "POS2", ServiceID: "7"}, Transition{State: "started"})
	require.NoError(t, err)
	require.Equal(t, 2, pendingIn(t, s))
	check := func(when string) {
		got, ok, err := s.TxnByServiceID(ctx, "POS1", "7")
		require.NoError(t, err)
		require.True(t, ok, when)
		require.Equal(t, "p1", got.ID, when)
		_, stamp, ok, err := s.TxnByServiceIDSince(ctx, "POS2", "7", TxnStamp{})
		require.NoError(t, err)
		require.True(t, ok, when)
		require.Equal(t, TxnStamp{ID: "p2", N: 1}, stamp, when)
		got, ok, err = s.TxnByAlias(ctx, "ppaas-1")
		require.NoError(t, err)
		require.True(t, ok, when)
		require.Equal(t, "p1", got.ID, when)
		got, ok, err = s.LastTxn(ctx)
		require.NoError(t, err)
		require.True(t, ok, when)
		require.Equal(t, "p2", got.ID, when)
		_, err = s.StartTxn(ctx, TxnRef{ID: "dup", SaleID: "POS1", ServiceID: "7"}, Transition{State: "started"})
		require.ErrorIs(t, err, ErrDuplicateServiceID, when)
	}
	check("pending")
	require.NoError(t, s.applyIndexesNow(ctx))
	require.Zero(t, pendingIn(t, s))
	check("applied")
	// An alias given again, to an applied transaction, is pending again.
	require.NoError(t, s.AppendTxn(ctx, "p2", Transition{State: "qr", Alias: "ppaas-1"}))
	requireAliasOwner(t, s, "ppaas-1", "p2")
	require.NoError(t, s.applyIndexesNow(ctx))
	requireAliasOwner(t, s, "ppaas-1", "p2")
}

// The writer applies a batch on its own once indexBatch entries pend, or
// once Options.indexDelay has passed; Close applies the rest.
func TestWriterAppliesPendingIndexes(t *testing.T) {
	ctx := t.Context()
	s, path := openTest(t, Options{NoSync: true, PruneInterval: -1, indexDelay: time.Hour})
	start := func(i int) {
		_, err := s.StartTxn(ctx, TxnRef{ID: fmt.Sprint("t", i), SaleID: "POS1", ServiceID: fmt.Sprint(i)}, Transition{State: "s"})
		require.NoError(t, err)
	}
	for i := range indexBatch {
		start(i)
	}
	require.Eventually(t, func() bool { return pendingIn(t, s) == 0 }, 10*time.Second, time.Millisecond, "a full batch")
	start(100)
	require.Equal(t, 1, pendingIn(t, s))
	require.NoError(t, s.Close())
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		require.Zero(t, tx.Bucket(bucketUnindexed).Stats().KeyN, "Close applies")
		require.Equal(t, indexBatch+1, tx.Bucket(bucketOrder).Stats().KeyN)
		return nil
	}))
	require.NoError(t, db.Close())

	s2, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, indexDelay: 20 * time.Millisecond})
	_, err = s2.StartTxn(ctx, TxnRef{ID: "x", SaleID: "POS1", ServiceID: "1"}, Transition{State: "s"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return pendingIn(t, s2) == 0 }, 10*time.Second, time.Millisecond, "after the delay")
}

// Two starts with one SaleID+ServiceID in one group commit: the second sees
// the first's pending entry and is refused.
func TestDuplicateServiceIDInOneGroupCommit(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	commits := s.Stats().Commits
	s.wmu.Lock() // a commit is running: both starts queue for the next one
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			_, err := s.StartTxn(ctx, TxnRef{ID: fmt.Sprint("g", i), SaleID: "POS1", ServiceID: "same"}, Transition{State: "s"})
			errs <- err
		}()
	}
	waitQueued(t, s, 2)
	s.wmu.Unlock()
	e1, e2 := <-errs, <-errs
	require.Equal(t, commits+1, s.Stats().Commits, "one group commit")
	if e1 == nil {
		e1, e2 = e2, e1
	}
	require.NoError(t, e2)
	require.ErrorIs(t, e1, ErrDuplicateServiceID)
}

func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.reqs) < n {
		require.True(t, time.Now().Before(deadline), "writes not queued: %d", len(s.reqs))
		time.Sleep(time.Millisecond)
	}
}

// A commit that fails leaves nothing in the overlay: the ServiceID is free
// and unknown, as it is in the file.
func TestFailedCommitLeavesNoPendingIndex(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	s.wmu.Lock()
	errs := make(chan error, 2)
	go func() {
		_, err := s.StartTxn(ctx, TxnRef{ID: "f1", SaleID: "POS1", ServiceID: "9"}, Transition{State: "s", Alias: "al"})
		errs <- err
	}()
	waitQueued(t, s, 1)
	go func() { errs <- s.do(ctx, func(*wtx) error { return rollback{errors.New("boom")} }) }()
	waitQueued(t, s, 2)
	s.wmu.Unlock()
	require.Error(t, <-errs)
	require.Error(t, <-errs)
	_, ok, err := s.TxnByServiceID(ctx, "POS1", "9")
	require.NoError(t, err)
	require.False(t, ok)
	_, ok, err = s.TxnByAlias(ctx, "al")
	require.NoError(t, err)
	require.False(t, ok)
	_, ok, err = s.LastTxn(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	require.Zero(t, s.pendN.Load())
	_, err = s.StartTxn(ctx, TxnRef{ID: "f1", SaleID: "POS1", ServiceID: "9"}, Transition{State: "s"})
	require.NoError(t, err)
}

// Readers racing the writer's applies never miss a transaction: each one
// is in the overlay or in the indexes of the snapshot read after it.
func TestReadersNeverMissAPendingIndex(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, indexDelay: time.Millisecond})
	const n = 1500
	started := make(chan int, n)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(started)
		for i := range n {
			id := fmt.Sprint("r", i)
			if _, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, Transition{State: "s", Alias: "a" + id}); err != nil {
				t.Error(err)
				return
			}
			started <- i
		}
	})
	wg.Go(func() { // applies besides the writer's own
		for range 200 {
			if err := s.applyIndexesNow(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for r := range 2 {
		wg.Go(func() {
			for i := range started {
				id := fmt.Sprint("r", i)
				for k := range 3 { // again while an apply may run
					got, ok, err := s.TxnByServiceID(ctx, "POS1", id)
					if err != nil || !ok || got.ID != id {
						t.Errorf("reader %d try %d: TxnByServiceID %s: %v %v %q", r, k, id, ok, err, got.ID)
						return
					}
					got, ok, err = s.TxnByAlias(ctx, "a"+id)
					if err != nil || !ok || got.ID != id {
						t.Errorf("reader %d try %d: TxnByAlias %s: %v %v %q", r, k, id, ok, err, got.ID)
						return
					}
					last, ok, err := s.LastTxn(ctx)
					if err != nil || !ok {
						t.Errorf("reader %d: LastTxn: %v %v", r, ok, err)
						return
					}
					var li int
					if _, err := fmt.Sscanf(last.ID, "r%d", &li); err != nil || li < i {
						t.Errorf("reader %d: LastTxn %s after r%d started", r, last.ID, i)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// crashIndexEnv names the store file when the test binary runs as
// TestCrashWithPendingIndexes's writer.
const crashIndexEnv = "TERMAGENT_STORE_CRASH_INDEX_WRITER"

// TestCrashIndexWriterProcess is the writer TestCrashWithPendingIndexes
// kills: it starts and aliases transactions, none applied, and waits.
func TestCrashIndexWriterProcess(t *testing.T) {
	path := os.Getenv(crashIndexEnv)
	if path == "" {
		t.Skip("helper process for TestCrashWithPendingIndexes")
	}
	ctx := context.Background()
	s, err := Open(ctx, path, Options{PruneInterval: -1, manualIndexes: true})
	if err != nil {
		fmt.Printf("E open: %v\n", err)
		os.Exit(2)
	}
	for i := range 5 {
		id := fmt.Sprint("c", i)
		if _, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: fmt.Sprint("POS", i%2), ServiceID: id}, Transition{State: "started"}); err != nil {
			fmt.Printf("E start: %v\n", err)
			os.Exit(2)
		}
		if err := s.AppendTxn(ctx, id, Transition{State: "qr", Alias: "pp-" + id, Final: i < 3}); err != nil {
			fmt.Printf("E append: %v\n", err)
			os.Exit(2)
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Minute) // killed
}

// kill -9 with index entries pending: reopened, the file answers as if they
// had been applied (Open applies them).
func TestCrashWithPendingIndexes(t *testing.T) {
	if os.Getenv(crashIndexEnv) != "" {
		t.Skip("inside the writer")
	}
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "termagent.db")
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashIndexWriterProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashIndexEnv+"="+path)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if sc.Text() == "ready" {
			ready = true
			break
		}
		t.Log(sc.Text())
	}
	require.True(t, ready)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		require.Equal(t, 5, tx.Bucket(bucketUnindexed).Stats().KeyN, "the kill left them pending")
		require.Zero(t, tx.Bucket(bucketSvc).Stats().KeyN)
		have, _ := getSchema(tx.Bucket(bucketMeta))
		require.Equal(t, 3, have, "an agent of schema 2 refuses it (ErrSchemaTooNew)")
		return nil
	}))
	require.NoError(t, db.Close())

	s, err := Open(ctx, path, Options{PruneInterval: -1, Verify: true})
	require.NoError(t, err)
	defer s.Close()
	require.Zero(t, pendingIn(t, s), "Open applies them")
	for i := range 5 {
		id := fmt.Sprint("c", i)
		_, err := s.StartTxn(ctx, TxnRef{ID: "again-" + id, SaleID: fmt.Sprint("POS", i%2), ServiceID: id}, Transition{State: "started"})
		require.ErrorIs(t, err, ErrDuplicateServiceID, id)
		got, ok, err := s.TxnByAlias(ctx, "pp-"+id)
		require.NoError(t, err)
		require.True(t, ok, id)
		require.Equal(t, id, got.ID)
	}
	last, ok, err := s.LastTxn(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "c4", last.ID)
	for sale, want := range map[string]string{"POS0": "c4", "POS1": "c3"} {
		got, ok, err := s.LastTxnForSale(ctx, sale)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, want, got.ID, sale)
	}
	unf, err := s.UnfinishedTxns(ctx)
	require.NoError(t, err)
	require.Len(t, unf, 2)
	require.Equal(t, "c3", unf[0].ID)
	require.Equal(t, "c4", unf[1].ID)
	// The order counter went on past the pending orders.
	_, err = s.StartTxn(ctx, TxnRef{ID: "next", SaleID: "POS0"}, Transition{State: "s"})
	require.NoError(t, err)
	last, _, err = s.LastTxn(ctx)
	require.NoError(t, err)
	require.Equal(t, "next", last.ID)
}

// `agent queue status --recover` salvages a file whose index entries were
// pending (and a damaged outbox record): the reopened store finds the
// transactions by ServiceID, alias and order, and goes on numbering after
// them.
func TestRecoverKeepsPendingIndexes(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "termagent.db")
	s, err := Open(ctx, path, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	require.NoError(t, err)
	appendN(t, s, KindTransactionResult, 3)
	_, err = s.StartTxn(ctx, TxnRef{ID: "old", SaleID: "POS1", ServiceID: "1"}, Transition{State: "s", Final: true})
	require.NoError(t, err)
	require.NoError(t, s.applyIndexesNow(ctx))
	_, err = s.StartTxn(ctx, TxnRef{ID: "new", SaleID: "POS1", ServiceID: "2"}, Transition{State: "s", Alias: "pp-new"})
	require.NoError(t, err)
	require.Equal(t, 1, pendingIn(t, s))
	// What a crash leaves: the file as the last commit wrote it.
	crashed, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, os.WriteFile(path, crashed, 0o600))

	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		require.Equal(t, 1, tx.Bucket(bucketUnindexed).Stats().KeyN)
		return tx.Bucket(bucketOutbox).Put(seqKey(2), []byte("garbage"))
	}))
	require.NoError(t, db.Close())
	rep, err := Recover(path)
	require.NoError(t, err)
	require.True(t, rep.Opened)
	require.Equal(t, 1, rep.Copied[string(bucketUnindexed)], "%+v", rep)

	s2, err := Open(ctx, path, Options{Verify: true, PruneInterval: -1})
	require.NoError(t, err)
	defer s2.Close()
	got, ok, err := s2.TxnByServiceID(ctx, "POS1", "2")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "new", got.ID)
	got, ok, err = s2.TxnByAlias(ctx, "pp-new")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "new", got.ID)
	got, ok, err = s2.LastTxn(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "new", got.ID)
	_, err = s2.StartTxn(ctx, TxnRef{ID: "next", SaleID: "POS1", ServiceID: "3"}, Transition{State: "s"})
	require.NoError(t, err)
	got, _, err = s2.LastTxn(ctx)
	require.NoError(t, err)
	require.Equal(t, "next", got.ID, "the order goes on past the salvaged pending one")
}

// The pending set is bounded: with the writer never applying on its own
// (as when its applies keep failing), a commit that finds indexMaxPending
// entries applies them first. A damaged entry is dropped, not kept failing
// every apply.
func TestPendingIndexesAreBounded(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	require.NoError(t, s.do(ctx, func(w *wtx) error {
		return s.notePending(w, []byte("damaged"), func(*pendingEntry) {})
	}))
	require.NoError(t, s.do(ctx, func(w *wtx) error {
		return w.tx.Bucket(bucketUnindexed).Put([]byte("damaged"), []byte{0xff})
	}))
	most := 0
	for i := range indexMaxPending + 20 {
		_, err := s.StartTxn(ctx, TxnRef{ID: fmt.Sprint("b", i), SaleID: "POS1", ServiceID: fmt.Sprint(i)}, Transition{State: "s"})
		require.NoError(t, err)
		most = max(most, pendingIn(t, s))
	}
	require.Equal(t, indexMaxPending, most)
	require.Less(t, pendingIn(t, s), 30)
	got, ok, err := s.TxnByServiceID(ctx, "POS1", "3")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "b3", got.ID)
}

// A payment's pending entry (UUID id, ServiceID time, PPaaS alias) is about
// 100 bytes: a full batch of them keeps journal.unindexed inline in the tree
// of buckets, which stays one page.
func TestPendingIndexesStayInline(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	var prev []uint64
	for i := range indexBatch {
		var err error
		prev, err = benchWorldPayment(ctx, s, i, prev)
		require.NoError(t, err)
	}
	require.Equal(t, int64(indexBatch), s.pendN.Load())
	t.Logf("%d entries, %d bytes (with element headers)", s.pendN.Load(), s.pendBytes.Load())
	require.Less(t, s.pendBytes.Load(), int64(indexBatchBytes), "the count triggers first for payments")
	require.NoError(t, s.view(func(tx *bolt.Tx) error {
		require.Zero(t, tx.Bucket(bucketUnindexed).Root(), "inline")
		p, err := tx.Page(int(tx.Cursor().Bucket().Root()))
		require.NoError(t, err)
		require.Equal(t, "leaf", p.Type)
		require.Zero(t, p.OverflowCount, "the tree of buckets is one page")
		return nil
	}))
}
