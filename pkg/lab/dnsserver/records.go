package dnsserver

import (
	"fmt"
	"net/netip"
	"time"
)

// SetA makes name an A RRset of addrs (IPv4, at least one) with ttl seconds, replacing
// whatever name held (a CNAME too). name must lie inside one of the zones; case and a
// trailing dot do not matter. The change is visible to the next query.
func (s *Server) SetA(name string, ttl uint32, addrs ...netip.Addr) error {
	sorted, err := sortedAddrs(addrs)
	if err != nil {
		return fmt.Errorf("set A %s: %w", name, err)
	}
	if len(sorted) == 0 {
		return fmt.Errorf("set A %s: no address (use Delete)", name)
	}
	return s.update(name, func(n string, _ entry, _ bool) (entry, error) {
		return entry{ttl: ttl, addrs: sorted}, nil
	})
}

// SetCNAME makes name a CNAME to target with ttl seconds, replacing whatever name held.
// target may lie outside the zones (the server then answers with the CNAME alone).
func (s *Server) SetCNAME(name, target string, ttl uint32) error {
	t, err := canonical(target)
	if err != nil {
		return fmt.Errorf("set CNAME %s: target: %w", name, err)
	}
	return s.update(name, func(n string, _ entry, _ bool) (entry, error) {
		if n == t {
			return entry{}, fmt.Errorf("CNAME to itself")
		}
		return entry{ttl: ttl, target: t}, nil
	})
}

// SetTTL changes the TTL of name's records, keeping the data. name must exist.
func (s *Server) SetTTL(name string, ttl uint32) error {
	return s.update(name, func(n string, e entry, ok bool) (entry, error) {
		if !ok {
			return e, fmt.Errorf("no records")
		}
		e.ttl = ttl
		return e, nil
	})
}

// update applies fn to name's entry under the lock; errors name the record.
func (s *Server) update(name string, fn func(n string, e entry, ok bool) (entry, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.data.owned(name)
	if err != nil {
		return fmt.Errorf("record %s: %w", name, err)
	}
	old, ok := s.data.names[n]
	e, err := fn(n, old, ok)
	if err != nil {
		return fmt.Errorf("record %s: %w", n, err)
	}
	s.data.set(n, e)
	return nil
}

// Delete removes name's records (queries then get NXDOMAIN). Deleting a missing name is a
// no-op.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := canonical(name)
	if err != nil {
		return
	}
	if _, ok := s.data.names[n]; ok {
		delete(s.data.names, n)
		s.data.serial++
	}
}

// Records returns every record in master-file format, sorted by name (what LoadFile reads).
func (s *Server) Records() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data.text()
}

// Queries returns the queries received since the server was created (or since
// ResetQueries), oldest first.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// QueriesFor returns the queries for name (any type; case and trailing dot do not matter).
func (s *Server) QueriesFor(name string) []Query {
	n, err := canonical(name)
	if err != nil {
		return nil
	}
	var out []Query
	for _, q := range s.Queries() {
		if q.Name == n {
			out = append(out, q)
		}
	}
	return out
}

// ResetQueries empties the query log.
func (s *Server) ResetQueries() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries = nil
}

// MaxQueriesPerWindow returns the largest number of queries in qs (sorted by time, as
// Queries returns them) that fall within any window of length w: with w = 1 s, the peak
// query rate per second.
func MaxQueriesPerWindow(qs []Query, w time.Duration) int {
	best, lo := 0, 0
	for hi := range qs {
		for qs[hi].Time.Sub(qs[lo].Time) >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}
