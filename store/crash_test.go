package store

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// crashEnv names the store file when the test binary runs as the crash
// test's writer subprocess.
const crashEnv = "TERMAGENT_STORE_CRASH_WRITER"

// TestCrashWriterProcess is not a test on its own: TestCrashKill9 re-executes
// the test binary with crashEnv set, and this function is then the writer it
// kills. It appends from several goroutines and acks the head from another,
// printing an intent line before each call and a confirmation line after it
// returns, so the parent knows exactly which writes were acknowledged.
func TestCrashWriterProcess(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper process for TestCrashKill9")
	}
	run := os.Getenv(crashEnv + "_RUN")
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...) // unbuffered: one write per line
	}
	ctx := context.Background()
	s, err := Open(ctx, path, Options{LockTimeout: 5 * time.Second, MaxCount: 1 << 30, DefaultTTL: -1})
	if err != nil {
		say("E open: %v", err)
		os.Exit(2)
	}
	say("ready")
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				key := uuid.New()
				say("a %s.%d %d %s", run, p, n, key)
				r, err := s.Append(ctx, Event{Kind: KindTransactionResult, Key: key, Payload: []byte(key.String())})
				if err != nil {
					say("E append: %v", err)
					os.Exit(2)
				}
				say("A %s %d", key, r.Seq)
			}
		})
	}
	// Journal and event de-dup writes share the writer with the outbox.
	wg.Go(func() {
		for n := 0; ; n++ {
			id := fmt.Sprintf("%s-%d", run, n)
			if _, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS", ServiceID: id}, Transition{State: "s0"}); err != nil {
				say("E start txn: %v", err)
				os.Exit(2)
			}
			say("J %s 1", id)
			for k := 1; k < 3; k++ {
				// The alias and the ServiceID are indexed after the step
				// (unindexed.go): a kill may land before or during the apply.
				if err := s.AppendTxn(ctx, id, Transition{State: fmt.Sprintf("s%d", k), Final: k == 2, Alias: "pp-" + id}); err != nil {
					say("E append txn: %v", err)
					os.Exit(2)
				}
				say("J %s %d", id, k+1)
			}
			if seen, err := s.SeenEvent(ctx, "evt-"+id); err != nil || seen {
				say("E seen event: %v %v", seen, err)
				os.Exit(2)
			}
			say("S evt-%s", id)
		}
	})
	wg.Go(func() {
		for {
			// Keep about 20 records queued so the outbox carries records
			// across runs, while acks interleave with appends.
			if s.Stats().Depth <= 20 {
				<-s.Appended()
				continue
			}
			r, ok, err := s.Lease(ctx, time.Now())
			if err != nil {
				say("E lease: %v", err)
				os.Exit(2)
			}
			if !ok {
				continue
			}
			say("k %s", r.Key)
			if err := s.Ack(ctx, r.Seq); err != nil {
				say("E ack: %v", err)
				os.Exit(2)
			}
			say("K %s", r.Key)
		}
	})
	wg.Wait()
}

// crashLog accumulates what the writers said across runs on one file.
type crashLog struct {
	intent    map[uuid.UUID]string // key → "run.producer n"
	appended  map[uuid.UUID]bool   // Append returned
	ackIntent map[uuid.UUID]bool   // Ack called
	acked     map[uuid.UUID]bool   // Ack returned
	txns      map[string]int       // journaled transitions confirmed per transaction
	events    []string             // event ids confirmed marked
}

func (l *crashLog) read(t *testing.T, r io.Reader) (ready bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "ready":
			ready = true
		case "E":
			t.Errorf("writer: %s", sc.Text())
		case "a":
			l.intent[uuid.MustParse(f[3])] = f[1] + " " + f[2]
		case "A":
			l.appended[uuid.MustParse(f[1])] = true
		case "k":
			l.ackIntent[uuid.MustParse(f[1])] = true
		case "K":
			l.acked[uuid.MustParse(f[1])] = true
		case "J":
			n, _ := strconv.Atoi(f[2])
			l.txns[f[1]] = max(l.txns[f[1]], n)
		case "S":
			l.events = append(l.events, f[1])
		}
	}
	return ready
}

// TestCrashKill9 kills a writer process with SIGKILL at random points and
// checks, after each kill, that every append the writer was told is durable
// is present exactly once and in order, and that no acknowledged Ack came
// back.
func TestCrashKill9(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("inside the writer")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	const (
		files       = 40
		runsPerFile = 5 // 200 kills
		parallel    = 4
	)
	deadline := time.Now().Add(25 * time.Second)
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	var mu sync.Mutex
	kills, totalAppended, totalAcked := 0, 0, 0
	for f := range files {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			rng := rand.New(rand.NewPCG(seed, uint64(f)))
			path := filepath.Join(t.TempDir(), "termagent.db")
			log := &crashLog{intent: map[uuid.UUID]string{}, appended: map[uuid.UUID]bool{},
				ackIntent: map[uuid.UUID]bool{}, acked: map[uuid.UUID]bool{}, txns: map[string]int{}}
			prevAppended, prevAcked := 0, 0
			for run := range runsPerFile {
				if t.Failed() || time.Now().After(deadline) {
					return
				}
				crashOnce(t, rng, path, fmt.Sprintf("%d-%d", f, run), log)
				verifyCrash(t, path, log)
				mu.Lock()
				kills++
				totalAppended += len(log.appended) - prevAppended
				totalAcked += len(log.acked) - prevAcked
				prevAppended, prevAcked = len(log.appended), len(log.acked)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d kill -9 iterations; %d acknowledged appends, %d acknowledged acks checked", kills, totalAppended, totalAcked)
	if !t.Failed() && kills < files*runsPerFile {
		t.Logf("time budget reached after %d iterations", kills)
	}
}

func crashOnce(t *testing.T, rng *rand.Rand, path, run string, log *crashLog) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashWriterProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path, crashEnv+"_RUN="+run)
	cmd.Stderr = io.Discard
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	// Read the writer's output as it comes; note when it is ready so the
	// kill usually lands in the middle of writes (sometimes during Open).
	lines := make(chan string, 1024)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var buf strings.Builder
	killAt := time.Duration(rng.IntN(50_000)) * time.Microsecond
	duringOpen := rng.IntN(10) == 0
	var timer <-chan time.Time
	if duringOpen {
		timer = time.After(killAt / 4)
	}
	for timer == nil || func() bool {
		select {
		case <-timer:
			return false
		default:
			return true
		}
	}() {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Errorf("writer exited early: %s", buf.String())
				return
			}
			buf.WriteString(l + "\n")
			if l == "ready" && timer == nil {
				timer = time.After(killAt)
			}
		case <-timer:
			timer = closedTimer()
		case <-ctx.Done():
			t.Error("writer never became ready")
			return
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	for l := range lines {
		buf.WriteString(l + "\n")
	}
	<-readDone
	_ = cmd.Wait()
	log.read(t, strings.NewReader(buf.String()))
}

func closedTimer() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}

func verifyCrash(t *testing.T, path string, log *crashLog) {
	ctx := t.Context()
	s, err := Open(ctx, path, Options{Verify: true, MaxCount: 1 << 30, PruneInterval: -1})
	require.NoError(t, err)
	defer s.Close()
	recs, err := s.List(ctx, 1<<30)
	require.NoError(t, err)
	require.Equal(t, int64(len(recs)), s.Stats().Depth, "depth counter matches contents")

	present := map[uuid.UUID]bool{}
	lastN := map[string]int{}
	var prevSeq uint64
	for _, r := range recs {
		require.False(t, present[r.Key], "key %s stored twice", r.Key)
		present[r.Key] = true
		require.Greater(t, r.Seq, prevSeq)
		prevSeq = r.Seq
		who, ok := log.intent[r.Key]
		require.True(t, ok, "record %d was never appended", r.Seq)
		require.False(t, log.acked[r.Key], "record %d was acked but came back", r.Seq)
		prod, nStr, _ := strings.Cut(who, " ")
		n, _ := strconv.Atoi(nStr)
		if last, seen := lastN[prod]; seen {
			require.Greater(t, n, last, "producer %s out of order", prod)
		}
		lastN[prod] = n
	}
	for key := range log.appended {
		if !log.ackIntent[key] {
			require.True(t, present[key], "acknowledged append %s lost", key)
		}
	}
	for id, n := range log.txns {
		tx, err := s.Txn(ctx, id)
		require.NoError(t, err, "journaled transaction %s lost", id)
		require.GreaterOrEqual(t, len(tx.Transitions), n, "transaction %s lost transitions", id)
		for k, tr := range tx.Transitions {
			require.Equal(t, fmt.Sprintf("s%d", k), tr.State, "transaction %s transitions out of order", id)
		}
		require.Equal(t, len(tx.Transitions) == 3, tx.Final)
		byService, ok, err := s.TxnByServiceID(ctx, "POS", id)
		require.NoError(t, err)
		require.True(t, ok, "transaction %s not found by its ServiceID", id)
		require.Equal(t, id, byService.ID)
		if n >= 2 {
			byAlias, ok, err := s.TxnByAlias(ctx, "pp-"+id)
			require.NoError(t, err)
			require.True(t, ok, "transaction %s not found by its alias", id)
			require.Equal(t, id, byAlias.ID)
		}
	}
	require.NoError(t, s.view(func(tx *bolt.Tx) error {
		for _, id := range log.events {
			require.NotNil(t, tx.Bucket(bucketSeen).Get([]byte(id)), "event mark %s lost", id)
		}
		return nil
	}))
}
