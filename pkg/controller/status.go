package controller

import (
	"errors"
	"sync"
	"time"
)

// informerSyncGrace is how long a leader may wait for its informer caches
// before Healthy reports it unhealthy.
const informerSyncGrace = 2 * time.Minute

// Status reports the controller's state to /healthz and /readyz. The zero
// value is "starting"; all methods are safe for concurrent use.
type Status struct {
	mu          sync.Mutex
	configured  bool      // ClusterNetwork parsed
	leading     bool      // holds the Lease
	leadingFrom time.Time // when leadership was acquired
	synced      bool      // caches synced and allocators rebuilt
}

func (s *Status) setConfigured() { s.update(func() { s.configured = true }) }
func (s *Status) setSynced()     { s.update(func() { s.synced = true }) }

func (s *Status) setLeading(leading bool) {
	s.update(func() {
		s.leading, s.synced = leading, false
		if leading {
			s.leadingFrom = time.Now()
		}
	})
}

func (s *Status) update(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// Leading reports whether this replica holds the Lease.
func (s *Status) Leading() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leading
}

// Ready returns nil once the ClusterNetwork is valid and the replica is
// either a standby or a leader whose caches have synced and whose
// allocators are rebuilt.
func (s *Status) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.configured:
		return errors.New("waiting for a valid ClusterNetwork \"default\"")
	case s.leading && !s.synced:
		return errors.New("leader is waiting for informer caches to sync")
	}
	return nil
}

// Healthy returns nil unless this replica leads and its informer caches
// have not synced within informerSyncGrace of acquiring the Lease.
func (s *Status) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leading && !s.synced && time.Since(s.leadingFrom) > informerSyncGrace {
		return errors.New("informer caches have not synced since leadership was acquired")
	}
	return nil
}
