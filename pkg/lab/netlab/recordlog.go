package netlab

import (
	"context"
	"fmt"
	"sync"
)

// Log is an append-only, bounded record of what an ExternalHost saw (Contacts, Packets),
// with snapshot and wait helpers for tests. Positions are stable: Mark returns the position
// of the next record, Since(mark) what came after it, so a test can look at "everything
// from this point on" without resetting anything. Records beyond the limit are not kept but
// counted in Lost; a test that asserts the absence of a record must also check Lost() == 0.
// Safe for concurrent use.
type Log[T any] struct {
	mu      sync.Mutex
	items   []T
	limit   int
	lost    int
	changed chan struct{} // closed (and replaced) on every append
}

func newLog[T any](limit int) *Log[T] {
	return &Log[T]{limit: limit, changed: make(chan struct{})}
}

func (l *Log[T]) add(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.items) >= l.limit {
		l.lost++
		return
	}
	l.items = append(l.items, v)
	close(l.changed)
	l.changed = make(chan struct{})
}

// Snapshot returns every record kept, oldest first.
func (l *Log[T]) Snapshot() []T { return l.Since(0) }

// Mark returns the position the next record will have.
func (l *Log[T]) Mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.items)
}

// Since returns the records from position mark on.
func (l *Log[T]) Since(mark int) []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	if mark >= len(l.items) {
		return nil
	}
	return append([]T(nil), l.items[max(mark, 0):]...)
}

// Lost returns how many records did not fit under the limit.
func (l *Log[T]) Lost() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Wait returns the first record from position mark on that matches, waiting for it until
// ctx ends.
func (l *Log[T]) Wait(ctx context.Context, mark int, match func(T) bool) (T, error) {
	for {
		l.mu.Lock()
		for ; mark < len(l.items); mark++ {
			if match(l.items[mark]) {
				v := l.items[mark]
				l.mu.Unlock()
				return v, nil
			}
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			var zero T
			return zero, fmt.Errorf("waiting for a record: %w", ctx.Err())
		}
	}
}

// Filter returns the records from position mark on that match.
func (l *Log[T]) Filter(mark int, match func(T) bool) []T {
	var out []T
	for _, v := range l.Since(mark) {
		if match(v) {
			out = append(out, v)
		}
	}
	return out
}
