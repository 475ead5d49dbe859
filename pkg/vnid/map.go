package vnid

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Map is the node agent's view of namespace → VNID, filled from
// NetNamespace objects. Several namespaces may share one VNID.
//
// All methods are safe for concurrent use. The zero Map is empty and ready
// to use; a Map must not be copied after first use.
type Map struct {
	mu      sync.Mutex
	ids     map[string]uint32              // namespace → VNID
	byID    map[uint32]map[string]struct{} // VNID → namespaces
	waiters map[string]*waiter             // namespaces someone waits for
}

// waiter is shared by the WaitAndGet calls blocked on one namespace. Set
// closes ch to wake them all and removes the waiter; a call that gives up
// decrements n and removes the waiter when it was the last.
type waiter struct {
	ch chan struct{}
	n  int
}

// Set records that namespace has VNID id, replacing any previous VNID, and
// wakes WaitAndGet calls waiting for namespace. Idempotent.
func (m *Map) Set(namespace string, id uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	m.remove(namespace)
	m.ids[namespace] = id
	if m.byID[id] == nil {
		m.byID[id] = map[string]struct{}{}
	}
	m.byID[id][namespace] = struct{}{}
	if w := m.waiters[namespace]; w != nil {
		close(w.ch)
		delete(m.waiters, namespace)
	}
}

// Delete forgets namespace. Deleting an unknown namespace is a no-op.
func (m *Map) Delete(namespace string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.remove(namespace)
}

// Get returns the VNID of namespace and whether it is known.
func (m *Map) Get(namespace string) (uint32, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.ids[namespace]
	return id, ok
}

// Namespaces returns, sorted, the namespaces that have VNID id; nil if none.
func (m *Map) Namespaces(id uint32) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for ns := range m.byID[id] {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out
}

// Len returns the number of namespaces in the map.
func (m *Map) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.ids)
}

// WaitAndGet returns the VNID of namespace, blocking until Set records one,
// ctx is done, or timeout (if positive) passes; it does not poll. On giving
// up it returns an error wrapping both ErrNotFound and the context's cause
// (context.DeadlineExceeded when the timeout passed).
func (m *Map) WaitAndGet(ctx context.Context, namespace string, timeout time.Duration) (uint32, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	for {
		id, ch, ok := m.getOrWait(namespace)
		if ok {
			return id, nil
		}
		select {
		case <-ch: // Set ran; look again, the namespace may be gone already.
		case <-ctx.Done():
			if id, ok := m.stopWaiting(namespace, ch); ok {
				return id, nil
			}
			return 0, fmt.Errorf("namespace %q: %w: %w", namespace, ErrNotFound, context.Cause(ctx))
		}
	}
}

// getOrWait returns the VNID of namespace, or registers a waiter and
// returns the channel Set will close.
func (m *Map) getOrWait(namespace string) (uint32, <-chan struct{}, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.ids[namespace]; ok {
		return id, nil, true
	}
	m.init()
	w := m.waiters[namespace]
	if w == nil {
		w = &waiter{ch: make(chan struct{})}
		m.waiters[namespace] = w
	}
	w.n++
	return 0, w.ch, false
}

// stopWaiting unregisters a waiter on ch (unless Set already removed it)
// and takes a last look at namespace.
func (m *Map) stopWaiting(namespace string, ch <-chan struct{}) (uint32, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w := m.waiters[namespace]; w != nil && w.ch == ch {
		if w.n--; w.n == 0 {
			delete(m.waiters, namespace)
		}
	}
	id, ok := m.ids[namespace]
	return id, ok
}

// remove drops namespace from both indexes. Callers hold m.mu.
func (m *Map) remove(namespace string) {
	id, ok := m.ids[namespace]
	if !ok {
		return
	}
	delete(m.ids, namespace)
	delete(m.byID[id], namespace)
	if len(m.byID[id]) == 0 {
		delete(m.byID, id)
	}
}

// init allocates the maps of a zero Map. Callers hold m.mu.
func (m *Map) init() {
	if m.ids == nil {
		m.ids = map[string]uint32{}
		m.byID = map[uint32]map[string]struct{}{}
		m.waiters = map[string]*waiter{}
	}
}
