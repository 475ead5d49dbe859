package vnid

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestMapSetGetDelete(t *testing.T) {
	var m Map
	if _, ok := m.Get("a"); ok {
		t.Fatal("Get on zero Map found something")
	}
	m.Set("b", 20)
	m.Set("a", 20)
	m.Set("c", 30)
	m.Set("c", 30) // idempotent
	if id, ok := m.Get("a"); !ok || id != 20 {
		t.Errorf("Get(a) = %d, %v; want 20, true", id, ok)
	}
	if got := m.Namespaces(20); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Namespaces(20) = %v, want [a b]", got)
	}
	m.Set("a", 30) // move
	if got := m.Namespaces(30); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("Namespaces(30) after move = %v, want [a c]", got)
	}
	if got := m.Namespaces(20); !slices.Equal(got, []string{"b"}) {
		t.Errorf("Namespaces(20) after move = %v, want [b]", got)
	}
	m.Delete("b")
	m.Delete("b")
	m.Delete("never")
	if got := m.Namespaces(20); got != nil {
		t.Errorf("Namespaces(20) after delete = %v, want nil", got)
	}
	if _, ok := m.Get("b"); ok || m.Len() != 2 {
		t.Errorf("after delete: Get(b) found=%v Len()=%d; want false, 2", ok, m.Len())
	}
}

func TestWaitAndGetPresent(t *testing.T) {
	var m Map
	m.Set("ns", 42)
	id, err := m.WaitAndGet(context.Background(), "ns", time.Nanosecond)
	if err != nil || id != 42 {
		t.Errorf("WaitAndGet = %d, %v; want 42, nil", id, err)
	}
}

func TestWaitAndGetWakesOnSet(t *testing.T) {
	var m Map
	const waiters = 5
	errs := make(chan error, waiters)
	for range waiters {
		go func() {
			id, err := m.WaitAndGet(context.Background(), "late", time.Minute)
			if err == nil && id != 77 {
				err = fmt.Errorf("got VNID %d, want 77", id)
			}
			errs <- err
		}()
	}
	waitForWaiters(t, &m, "late", waiters)
	m.Set("other", 1) // must not wake them
	m.Set("late", 77)
	// The waiters' own timeout is a minute: returning promptly proves Set
	// woke them rather than the final look-up after the timeout.
	wake := time.After(10 * time.Second)
	for range waiters {
		select {
		case err := <-errs:
			if err != nil {
				t.Error(err)
			}
		case <-wake:
			t.Fatal("Set did not wake the waiters")
		}
	}
	if hasWaiter(&m, "late") {
		t.Error("waiter left registered after Set")
	}
}

func TestWaitAndGetTimeout(t *testing.T) {
	var m Map
	start := time.Now()
	_, err := m.WaitAndGet(context.Background(), "missing", 20*time.Millisecond)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitAndGet = %v, want ErrNotFound and DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed < 20*time.Millisecond {
		t.Errorf("returned after %v, before the timeout", elapsed)
	}
	if hasWaiter(&m, "missing") {
		t.Error("waiter left registered after timeout")
	}
}

func TestWaitAndGetCancel(t *testing.T) {
	var m Map
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := m.WaitAndGet(ctx, "missing", 0)
		done <- err
	}()
	waitForWaiters(t, &m, "missing", 1)
	cancel()
	if err := <-done; !errors.Is(err, ErrNotFound) || !errors.Is(err, context.Canceled) {
		t.Errorf("WaitAndGet after cancel = %v, want ErrNotFound and Canceled", err)
	}
}

func TestMapConcurrent(t *testing.T) {
	var m Map
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 200 {
				ns := fmt.Sprintf("ns-%d", i%20)
				m.Set(ns, uint32(w*10+i%3))
				m.Namespaces(uint32(w * 10))
				if i%7 == 0 {
					m.Delete(ns)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range 50 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
				_, err := m.WaitAndGet(ctx, fmt.Sprintf("ns-%d", i%25), 0)
				cancel()
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Errorf("WaitAndGet: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	checkMapConsistent(t, &m)
}

// checkMapConsistent verifies that both indexes of m describe the same
// relation.
func checkMapConsistent(t *testing.T, m *Map) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id, set := range m.byID {
		if len(set) == 0 {
			t.Errorf("empty namespace set kept for VNID %d", id)
		}
		for ns := range set {
			if m.ids[ns] != id {
				t.Errorf("byID[%d] has %q, but ids says %d", id, ns, m.ids[ns])
			}
			n++
		}
	}
	if n != len(m.ids) {
		t.Errorf("byID holds %d namespaces, ids %d", n, len(m.ids))
	}
}

func waiterCount(m *Map, ns string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w := m.waiters[ns]; w != nil {
		return w.n
	}
	return 0
}

// hasWaiter reports whether m still keeps a waiter entry for ns.
func hasWaiter(m *Map, ns string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.waiters[ns]
	return ok
}

// waitForWaiters blocks until n WaitAndGet calls are registered for ns.
func waitForWaiters(t *testing.T, m *Map, ns string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for waiterCount(m, ns) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d waiters registered", waiterCount(m, ns), n)
		}
		time.Sleep(time.Millisecond)
	}
}
