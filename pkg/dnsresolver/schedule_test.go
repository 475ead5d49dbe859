package dnsresolver

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var defaultTiming = timing{minTTL: DefaultMinTTL, maxTTL: DefaultMaxTTL,
	retryMin: DefaultRetryMin, retryMax: DefaultRetryMax}

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// world answers a query for name at a simulated time.
type world func(name string, at time.Duration) (Answer, error)

// event is an OnChange call in a simulation.
type event struct {
	at    time.Duration
	name  string
	addrs string
}

// simulation drives a schedule through simulated time with instant lookups, as the
// Resolver's loop does with a clock: at each due time, hand out the due names (up to
// limit), answer them from the world and apply the results.
type simulation struct {
	s       *schedule
	w       world
	limit   int
	queries map[string][]time.Duration
	events  []event
}

func newSimulation(w world, names ...string) *simulation {
	sim := &simulation{s: newSchedule(defaultTiming), w: w, limit: 100, queries: map[string][]time.Duration{}}
	for _, n := range names {
		sim.s.track(n, t0)
	}
	return sim
}

// run advances to end, processing every due time on the way.
func (sim *simulation) run(end time.Duration) {
	for {
		next, ok := sim.s.nextWake()
		if !ok || next.Sub(t0) > end {
			return
		}
		sim.step(next.Sub(t0))
	}
}

func (sim *simulation) step(at time.Duration) {
	now := t0.Add(at)
	for _, tk := range sim.s.due(now, sim.limit) {
		sim.queries[tk.name] = append(sim.queries[tk.name], at)
		ans, err := sim.w(tk.name, at)
		if changed, addrs := sim.s.finish(tk, now, result{ans: ans, err: err}); changed {
			sim.events = append(sim.events, event{at: at, name: tk.name, addrs: fmtAddrs(addrs)})
		}
	}
}

func fmtAddrs(as []netip.Addr) string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return strings.Join(s, ",")
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func secs(ss ...float64) []time.Duration {
	var out []time.Duration
	for _, s := range ss {
		out = append(out, time.Duration(s*float64(time.Second)))
	}
	return out
}

var errDown = errors.New("server down")

func fixed(ttl time.Duration, a ...string) world {
	return func(string, time.Duration) (Answer, error) { return Answer{Addrs: addrs(a...), TTL: ttl}, nil }
}

func TestRefreshAtClampedTTL(t *testing.T) {
	for _, c := range []struct {
		ttl  time.Duration
		want []time.Duration
	}{
		{0, secs(0, 5, 10, 15, 20)},
		{time.Second, secs(0, 5, 10, 15, 20)},
		{5 * time.Second, secs(0, 5, 10, 15, 20)},
		{7 * time.Second, secs(0, 7, 14)},
		{time.Hour, secs(0, 1800, 3600)},
		{30 * time.Minute, secs(0, 1800, 3600)},
	} {
		sim := newSimulation(fixed(c.ttl, "203.0.113.9"), "a.example")
		sim.run(c.want[len(c.want)-1])
		if got := sim.queries["a.example"]; !slices.Equal(got, c.want) {
			t.Errorf("TTL %v: queries at %v, want %v", c.ttl, got, c.want)
		}
		if len(sim.events) != 1 || sim.events[0] != (event{0, "a.example", "203.0.113.9"}) {
			t.Errorf("TTL %v: events %v, want one at 0", c.ttl, sim.events)
		}
	}
}

// At most one query per second per name, whatever the world does: TTL 0/1, failures, empty
// answers, flapping between them, many names.
func TestAtMostOneQueryPerSecondPerName(t *testing.T) {
	worlds := map[string]world{
		"ttl0": fixed(0, "203.0.113.9"),
		"ttl1": fixed(time.Second, "203.0.113.9"),
		"down": func(string, time.Duration) (Answer, error) { return Answer{}, errDown },
		"nx":   func(string, time.Duration) (Answer, error) { return Answer{}, nil },
		"flap": func(_ string, at time.Duration) (Answer, error) {
			switch int(at/time.Second) % 3 {
			case 0:
				return Answer{}, errDown
			case 1:
				return Answer{}, nil
			}
			return Answer{Addrs: addrs("203.0.113.9"), TTL: 0}, nil
		},
	}
	for name, w := range worlds {
		var names []string
		for i := range 20 {
			names = append(names, fmt.Sprintf("n%d.example", i))
		}
		sim := newSimulation(w, names...)
		sim.run(10 * time.Minute)
		for _, n := range names {
			if peak := peakPerWindow(sim.queries[n], time.Second); peak > 1 {
				t.Errorf("%s: %s got %d queries within one second", name, n, peak)
			}
		}
	}
}

func peakPerWindow(at []time.Duration, w time.Duration) int {
	best, lo := 0, 0
	for hi := range at {
		for at[hi]-at[lo] >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

func TestRetryBackoff(t *testing.T) {
	want := secs(2, 4, 8, 16, 30, 30, 30)
	for i, w := range want {
		if got := defaultTiming.retryAfter(i + 1); got != w {
			t.Errorf("retry after failure %d: %v, want %v", i+1, got, w)
		}
	}
}

// A name whose first resolutions fail is retried on the backoff and resolved at the first
// retry after the record appears (OpenShift SDN dropped it for good).
func TestFirstFailureRetried(t *testing.T) {
	for _, failure := range []struct {
		name string
		ans  Answer
		err  error
	}{{"server down", Answer{}, errDown}, {"NXDOMAIN", Answer{}, nil}} {
		appears := 20 * time.Second
		w := func(_ string, at time.Duration) (Answer, error) {
			if at < appears {
				return failure.ans, failure.err
			}
			return Answer{Addrs: addrs("203.0.113.9"), TTL: 60 * time.Second}, nil
		}
		sim := newSimulation(w, "late.example")
		sim.run(200 * time.Second)
		want := secs(0, 2, 6, 14, 30, 90, 150)
		if got := sim.queries["late.example"]; !slices.Equal(got, want) {
			t.Errorf("%s: queries at %v, want %v", failure.name, got, want)
		}
		if len(sim.events) != 1 || sim.events[0].at != 30*time.Second {
			t.Errorf("%s: events %v, want the addresses at 30 s", failure.name, sim.events)
		}
	}
}

// When the record changes, the new addresses arrive at the first refresh after the change:
// within the (clamped) TTL.
func TestChangeSeenWithinTTL(t *testing.T) {
	for _, ttl := range []time.Duration{0, 5 * time.Second, 10 * time.Second, 45 * time.Second} {
		change := 23 * time.Second
		w := func(_ string, at time.Duration) (Answer, error) {
			if at < change {
				return Answer{Addrs: addrs("203.0.113.9"), TTL: ttl}, nil
			}
			return Answer{Addrs: addrs("203.0.113.10", "203.0.113.11"), TTL: ttl}, nil
		}
		sim := newSimulation(w, "www.example")
		sim.run(3 * time.Minute)
		if len(sim.events) != 2 || sim.events[1].addrs != "203.0.113.10,203.0.113.11" {
			t.Fatalf("TTL %v: events %v", ttl, sim.events)
		}
		if late := sim.events[1].at - change; late < 0 || late > max(ttl, DefaultMinTTL) {
			t.Errorf("TTL %v: change at %v seen at %v", ttl, change, sim.events[1].at)
		}
	}
}

// While the server is down the last good addresses stay (no event); refreshes retry on the
// backoff; once it is back the TTL schedule resumes.
func TestServerDownKeepsLastGood(t *testing.T) {
	w := func(_ string, at time.Duration) (Answer, error) {
		if at >= 10*time.Second && at < 60*time.Second {
			return Answer{}, errDown
		}
		return Answer{Addrs: addrs("203.0.113.9"), TTL: 10 * time.Second}, nil
	}
	sim := newSimulation(w, "www.example")
	sim.run(90 * time.Second)
	if want := secs(0, 10, 12, 16, 24, 40, 70, 80, 90); !slices.Equal(sim.queries["www.example"], want) {
		t.Errorf("queries at %v, want %v", sim.queries["www.example"], want)
	}
	if len(sim.events) != 1 {
		t.Errorf("events %v, want only the first resolution", sim.events)
	}
	if got, ok := sim.s.addrs("www.example"); !ok || fmtAddrs(got) != "203.0.113.9" {
		t.Errorf("addresses after the outage: %v %v", got, ok)
	}
}

// An authoritative empty answer after addresses is an answer: the addresses go.
func TestEmptyAnswerClearsAddresses(t *testing.T) {
	w := func(_ string, at time.Duration) (Answer, error) {
		if at >= 10*time.Second && at < 20*time.Second {
			return Answer{}, nil
		}
		return Answer{Addrs: addrs("203.0.113.9"), TTL: 10 * time.Second}, nil
	}
	sim := newSimulation(w, "www.example")
	sim.run(30 * time.Second)
	want := []event{{0, "www.example", "203.0.113.9"}, {10 * time.Second, "www.example", ""},
		{24 * time.Second, "www.example", "203.0.113.9"}} // retries 12 s, 16 s, 24 s
	if !slices.Equal(sim.events, want) {
		t.Errorf("events %v, want %v", sim.events, want)
	}
}

func TestTrackUntrack(t *testing.T) {
	s := newSchedule(defaultTiming)
	if !s.track("a", t0) || s.track("a", t0) {
		t.Fatal("track: first must be new, second not")
	}
	tk := s.due(t0, 10)
	if len(tk) != 1 || len(s.due(t0, 10)) != 0 {
		t.Fatalf("due: %v, then the in-flight name again", tk)
	}
	if s.untrack("a") {
		t.Error("untrack with a reference left forgot the name")
	}
	if !s.untrack("a") || s.untrack("a") {
		t.Error("last untrack must forget, a further one is a no-op")
	}
	if changed, _ := s.finish(tk[0], t0, result{ans: Answer{Addrs: addrs("203.0.113.9")}}); changed {
		t.Error("result of an untracked name applied")
	}
	s.track("a", t0) // tracked again while the old query would still be in flight
	if changed, _ := s.finish(tk[0], t0, result{ans: Answer{Addrs: addrs("203.0.113.9")}}); changed {
		t.Error("stale result applied to the name tracked again")
	}
	if _, ok := s.addrs("a"); ok {
		t.Error("name tracked again reports a resolution")
	}
	if n, _ := s.counts(); n != 1 {
		t.Errorf("%d names tracked, want 1", n)
	}
}

func TestDueOrderAndLimit(t *testing.T) {
	s := newSchedule(defaultTiming)
	s.track("c", t0.Add(-time.Second))
	s.track("b", t0)
	s.track("a", t0)
	s.track("later", t0.Add(time.Second))
	if tk := s.due(t0, 0); tk != nil {
		t.Errorf("due with no free slot: %v", tk)
	}
	var got []string
	for _, tk := range s.due(t0, 2) {
		got = append(got, tk.name)
	}
	for _, tk := range s.due(t0, 2) {
		got = append(got, tk.name)
	}
	if want := []string{"c", "a", "b"}; !slices.Equal(got, want) {
		t.Errorf("due order %v, want %v", got, want)
	}
	if next, ok := s.nextWake(); !ok || !next.Equal(t0.Add(time.Second)) {
		t.Errorf("next wake %v %v", next, ok)
	}
}

// TestSettled: a name is settled once a resolution finished, whatever its outcome, and not
// while its first query is due or in flight.
func TestSettled(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    result
	}{{"answer", result{ans: Answer{Addrs: addrs("203.0.113.9"), TTL: time.Minute}}},
		{"empty", result{}}, {"failure", result{err: errDown}}} {
		s := newSchedule(defaultTiming)
		s.track("a.example", t0)
		if s.settled("a.example") || s.settled("unknown.example") {
			t.Errorf("%s: settled before any query", tc.name)
		}
		tk := s.due(t0, 1)
		if s.settled("a.example") {
			t.Errorf("%s: settled while in flight", tc.name)
		}
		s.finish(tk[0], t0, tc.r)
		if !s.settled("a.example") {
			t.Errorf("%s: not settled after the first resolution", tc.name)
		}
	}
}
