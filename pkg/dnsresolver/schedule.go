package dnsresolver

import (
	"net/netip"
	"slices"
	"sort"
	"time"
)

// timing holds the scheduling rules (see the package doc).
type timing struct {
	minTTL, maxTTL     time.Duration // refresh interval bounds
	retryMin, retryMax time.Duration // backoff after a failure or an empty answer
}

// refreshAfter is when a name whose answer had ttl is queried again: ttl within
// [minTTL, maxTTL].
func (t timing) refreshAfter(ttl time.Duration) time.Duration {
	return min(max(ttl, t.minTTL), t.maxTTL)
}

// retryAfter is the delay after the n-th consecutive failure (n ≥ 1): retryMin doubled
// n-1 times, at most retryMax.
func (t timing) retryAfter(n int) time.Duration {
	d := t.retryMin
	for i := 1; i < n && d < t.retryMax; i++ {
		d *= 2
	}
	return min(d, t.retryMax)
}

// nameState is what the schedule knows about one tracked name.
type nameState struct {
	refs     int
	addrs    []netip.Addr // last good addresses (sorted); nil until an answer had some
	resolved bool         // at least one answer (possibly empty) was applied
	failures int          // consecutive failed or empty resolutions, for the backoff
	next     time.Time    // when the next query is due
	inFlight bool
	gen      uint64 // identifies this tracking of the name; stale results are ignored
}

// ticket is a query handed out by due; finish takes it back with the result.
type ticket struct {
	name string
	gen  uint64
}

// result is the outcome of one resolution.
type result struct {
	ans Answer
	err error
}

// schedule decides when each tracked name is queried and what a result does to its
// addresses. It is pure — no clock, no I/O, no goroutines — and not safe for concurrent use
// (the Resolver holds a mutex).
type schedule struct {
	timing
	names map[string]*nameState
	gen   uint64
}

func newSchedule(t timing) *schedule {
	return &schedule{timing: t, names: map[string]*nameState{}}
}

// track adds a reference to name; the first one makes it due at now. It reports whether
// the name is new.
func (s *schedule) track(name string, now time.Time) bool {
	if st := s.names[name]; st != nil {
		st.refs++
		return false
	}
	s.gen++
	s.names[name] = &nameState{refs: 1, next: now, gen: s.gen}
	return true
}

// untrack drops a reference; at zero the name is forgotten (a query in flight for it is
// ignored when it finishes). It reports whether the name was forgotten. Untracking an
// unknown name is a no-op.
func (s *schedule) untrack(name string) bool {
	st := s.names[name]
	if st == nil {
		return false
	}
	if st.refs--; st.refs > 0 {
		return false
	}
	delete(s.names, name)
	return true
}

// due hands out up to limit names whose query is due at now and not in flight, earliest
// first (then by name), and marks them in flight.
func (s *schedule) due(now time.Time, limit int) []ticket {
	if limit <= 0 {
		return nil
	}
	var names []string
	for n, st := range s.names {
		if !st.inFlight && !st.next.After(now) {
			names = append(names, n)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := s.names[names[i]], s.names[names[j]]
		if !a.next.Equal(b.next) {
			return a.next.Before(b.next)
		}
		return names[i] < names[j]
	})
	var out []ticket
	for _, n := range names[:min(limit, len(names))] {
		st := s.names[n]
		st.inFlight = true
		out = append(out, ticket{name: n, gen: st.gen})
	}
	return out
}

// finish applies the result of a ticket's query at now and schedules the next one:
//   - addresses: they replace the old ones; next query after the answer's TTL clamped to
//     [minTTL, maxTTL]; the failure count resets;
//   - an empty answer (NXDOMAIN, or no A record): the name has no addresses; next query on
//     the retry backoff;
//   - an error: the last good addresses stay; next query on the retry backoff.
//
// It reports whether the name's addresses changed, and the new ones. A stale ticket (the
// name was untracked since) changes nothing.
func (s *schedule) finish(t ticket, now time.Time, r result) (bool, []netip.Addr) {
	st := s.names[t.name]
	if st == nil || st.gen != t.gen {
		return false, nil
	}
	st.inFlight = false
	if r.err != nil {
		st.failures++
		st.next = now.Add(s.retryAfter(st.failures))
		return false, st.addrs
	}
	st.resolved = true
	if len(r.ans.Addrs) == 0 {
		st.failures++
		st.next = now.Add(s.retryAfter(st.failures))
	} else {
		st.failures = 0
		st.next = now.Add(s.refreshAfter(r.ans.TTL))
	}
	changed := !slices.Equal(st.addrs, r.ans.Addrs)
	if changed {
		st.addrs = slices.Clone(r.ans.Addrs)
	}
	return changed, st.addrs
}

// nextWake is the earliest due time of a name not in flight.
func (s *schedule) nextWake() (time.Time, bool) {
	var next time.Time
	ok := false
	for _, st := range s.names {
		if !st.inFlight && (!ok || st.next.Before(next)) {
			next, ok = st.next, true
		}
	}
	return next, ok
}

// addrs returns the name's last good addresses and whether the name is tracked and has
// been answered at least once.
func (s *schedule) addrs(name string) ([]netip.Addr, bool) {
	st := s.names[name]
	if st == nil {
		return nil, false
	}
	return slices.Clone(st.addrs), st.resolved
}

// settled reports whether name is tracked and at least one resolution of it finished
// (answered, empty or failed).
func (s *schedule) settled(name string) bool {
	st := s.names[name]
	return st != nil && (st.resolved || st.failures > 0)
}

// counts returns the number of tracked names and of those without addresses.
func (s *schedule) counts() (tracked, unresolved int) {
	for _, st := range s.names {
		if len(st.addrs) == 0 {
			unresolved++
		}
	}
	return len(s.names), unresolved
}
