package node

import (
	"context"
	"sync"
)

// syncGate lets concurrent callers share syncs. Each CNI ADD and DEL must
// return only once its pod's flows are in effect, and used to run a render
// and a bundle of its own; with 50 pods starting at once those 50 passes
// ran one after the other. A caller marks its keys, then waits for a sync
// that starts after its marks; all callers that arrive while a sync runs
// are served together by the next one (group commit).
type syncGate struct {
	mu      sync.Mutex
	waiting []chan error // callers for the next sync
	running bool
}

// do waits for a run of sync that starts after the call, or for ctx. The
// runs happen on a goroutine of the gate, with the context the first
// waiter's run was started with (the agent's, not a request's: a request
// that gives up must not cancel the others' sync).
func (g *syncGate) do(ctx context.Context, sync func() error) error {
	ch := make(chan error, 1)
	g.mu.Lock()
	g.waiting = append(g.waiting, ch)
	if !g.running {
		g.running = true
		go g.loop(sync)
	}
	g.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop runs sync for each group of waiters until none is left.
func (g *syncGate) loop(sync func() error) {
	for {
		g.mu.Lock()
		batch := g.waiting
		g.waiting = nil
		if len(batch) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		err := sync()
		for _, ch := range batch {
			ch <- err
		}
	}
}
