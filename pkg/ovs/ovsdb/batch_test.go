package ovsdb

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ovn-org/libovsdb/ovsdb"
)

// fakeTxns is a transact for the batcher: it records each batch's size,
// holds the first transaction until release is closed, and fails any
// transaction holding an operation on table "bad".
type fakeTxns struct {
	mu      sync.Mutex
	sizes   []int
	next    int
	release chan struct{}
}

func (f *fakeTxns) transact(batch []*batchReq) (int, error) {
	f.mu.Lock()
	first := len(f.sizes) == 0
	f.sizes = append(f.sizes, len(batch))
	f.next++
	next := f.next
	f.mu.Unlock()
	if first {
		<-f.release
	}
	for _, r := range batch {
		if r.ops[0].Table == "bad" {
			return 0, opError{errors.New("constraint violation")}
		}
	}
	return next, nil
}

func (f *fakeTxns) batches() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.sizes...)
}

// TestGroupCommit: writes arriving while a transaction is in flight go
// together in the next one; each write gets the next_cfg of the
// transaction that carried it.
func TestGroupCommit(t *testing.T) {
	f := &fakeTxns{release: make(chan struct{})}
	b := &batcher{transact: f.transact, opError: isOpError}
	ctx := context.Background()
	const n = 20
	results := make(chan int, n)
	submit := func() {
		next, err := b.submit(ctx, []ovsdb.Operation{{Table: "Port"}})
		if err != nil {
			t.Error(err)
		}
		results <- next
	}
	go submit()
	waitQueued(t, f, b, 0)
	for range n - 1 {
		go submit()
	}
	waitQueued(t, f, b, n-1)
	close(f.release)
	got := map[int]int{}
	for range n {
		got[<-results]++
	}
	if sizes := f.batches(); len(sizes) != 2 || sizes[0] != 1 || sizes[1] != n-1 {
		t.Errorf("batch sizes %v, want [1 %d]", sizes, n-1)
	}
	if got[1] != 1 || got[2] != n-1 {
		t.Errorf("next_cfg per write %v, want 1 once and 2 for the rest", got)
	}
	if w, tx := b.stats(); w != n || tx != 2 {
		t.Errorf("stats: %d writes in %d transactions, want %d in 2", w, tx, n)
	}
}

// TestGroupCommitBadWrite: a write that fails its batch's transaction
// fails alone; the others of the batch are committed again and succeed.
func TestGroupCommitBadWrite(t *testing.T) {
	f := &fakeTxns{release: make(chan struct{})}
	b := &batcher{transact: f.transact, opError: isOpError}
	ctx := context.Background()
	errs := make(chan error, 4)
	submit := func(table string) {
		_, err := b.submit(ctx, []ovsdb.Operation{{Table: table}})
		errs <- err
	}
	go submit("Port")
	waitQueued(t, f, b, 0)
	go submit("Port")
	go submit("bad")
	go submit("Port")
	waitQueued(t, f, b, 3)
	close(f.release)
	failed := 0
	for range 4 {
		if err := <-errs; err != nil {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d writes failed, want only the bad one", failed)
	}
	if sizes := f.batches(); len(sizes) != 5 || sizes[1] != 3 {
		t.Errorf("batch sizes %v, want [1 3 1 1 1] (the failed batch retried write by write)", sizes)
	}
}

// TestGroupCommitGivenUp: a write whose context ends while it is queued is
// not sent.
func TestGroupCommitGivenUp(t *testing.T) {
	f := &fakeTxns{release: make(chan struct{})}
	b := &batcher{transact: f.transact, opError: isOpError}
	go func() { _, _ = b.submit(context.Background(), []ovsdb.Operation{{Table: "Port"}}) }()
	waitQueued(t, f, b, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, err := b.submit(ctx, []ovsdb.Operation{{Table: "Port"}}); done <- err }()
	waitQueued(t, f, b, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("given-up write: %v", err)
	}
	close(f.release)
	time.Sleep(50 * time.Millisecond)
	if sizes := f.batches(); len(sizes) != 1 {
		t.Errorf("batch sizes %v: the given-up write was sent", sizes)
	}
}

// waitQueued waits until the first transaction is in flight and n writes
// wait in the queue.
func waitQueued(t *testing.T, f *fakeTxns, b *batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		q := len(b.queue)
		b.mu.Unlock()
		if len(f.batches()) >= 1 && q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d writes, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}
