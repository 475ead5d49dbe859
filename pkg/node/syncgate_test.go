package node

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSyncGateShares: callers arriving while a sync runs share the next
// one; every caller's mark, made before it called do, is seen by the sync
// that answers it.
func TestSyncGateShares(t *testing.T) {
	var g syncGate
	var marks atomic.Int64 // marks made so far
	var runs atomic.Int64
	release := make(chan struct{})
	sync0 := func() (seen int64) { return marks.Load() }
	var mu sync.Mutex
	seenBy := map[int64]int64{} // run → marks seen when it started
	syncFn := func() error {
		n := runs.Add(1)
		mu.Lock()
		seenBy[n] = sync0()
		mu.Unlock()
		if n == 1 {
			<-release
		}
		return nil
	}
	const callers = 20
	var wg sync.WaitGroup
	covered := make([]bool, callers)
	call := func(i int) {
		defer wg.Done()
		mine := marks.Add(1)
		if err := g.do(context.Background(), syncFn); err != nil {
			t.Error(err)
		}
		mu.Lock()
		for _, seen := range seenBy {
			covered[i] = covered[i] || seen >= mine
		}
		mu.Unlock()
	}
	wg.Add(1)
	go call(0)
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for i := 1; i < callers; i++ {
		wg.Add(1)
		go call(i)
	}
	time.Sleep(50 * time.Millisecond) // let them queue
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 2 {
		t.Errorf("%d syncs for %d callers, want 2 (the running one, then one shared by the rest)", n, callers)
	}
	for i, ok := range covered {
		if !ok {
			t.Errorf("caller %d was answered by a sync that started before its mark", i)
		}
	}
}
