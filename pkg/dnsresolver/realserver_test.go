package dnsresolver

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/dnsserver"
)

// Real-time tests: the Resolver with its default rules and the real DNS client, against the
// lab DNS server on loopback. They take ~12 s (the subtests run in parallel), so -short skips
// them. The netns variant is TestThroughNodeNetNS.

// timedChanges records OnChange calls with their wall-clock time.
type timedChanges struct {
	mu  sync.Mutex
	got []timedEvent
	c   chan struct{}
}

type timedEvent struct {
	at    time.Time
	name  string
	addrs string
}

func (c *timedChanges) record(name string, as []netip.Addr) {
	c.mu.Lock()
	c.got = append(c.got, timedEvent{time.Now(), name, fmtAddrs(as)})
	c.mu.Unlock()
	select {
	case c.c <- struct{}{}:
	default:
	}
}

// waitFor waits until name's addresses are want and returns when that was reported.
func (c *timedChanges) waitFor(t *testing.T, name, want string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		for i := len(c.got) - 1; i >= 0; i-- {
			if e := c.got[i]; e.name == name {
				if e.addrs == want {
					c.mu.Unlock()
					return e.at
				}
				break
			}
		}
		c.mu.Unlock()
		select {
		case <-c.c:
		case <-deadline:
			t.Fatalf("%s did not become %q within %v; changes: %+v", name, want, timeout, c.events())
		}
	}
}

func (c *timedChanges) events() []timedEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]timedEvent(nil), c.got...)
}

// realResolver runs a Resolver with the default rules against the servers.
func realResolver(t *testing.T, servers ...netip.AddrPort) (*Resolver, *timedChanges) {
	t.Helper()
	ch := &timedChanges{c: make(chan struct{}, 1)}
	r, err := New(Config{Servers: servers, OnChange: ch.record})
	if err != nil {
		t.Fatal(err)
	}
	runResolver(t, r)
	return r, ch
}

// runResolver runs r until the returned stop is called or the test ends.
func runResolver(t *testing.T, r *Resolver) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func track(t *testing.T, r *Resolver, name string) {
	t.Helper()
	if _, err := r.Track(name); err != nil {
		t.Fatal(err)
	}
}

func TestRealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("waits ~12 s of real time; skipped with -short")
	}
	t.Run("record change seen within TTL + 2 s", func(t *testing.T) {
		t.Parallel()
		s := labServer(t)
		setA(t, s, "www.lab.example", 5, "203.0.113.9")
		r, ch := realResolver(t, s.Addrs()[0])
		track(t, r, "www.lab.example")
		ch.waitFor(t, "www.lab.example", "203.0.113.9", 2*time.Second)
		time.Sleep(time.Second)
		changed := time.Now()
		setA(t, s, "www.lab.example", 5, "203.0.113.10")
		seen := ch.waitFor(t, "www.lab.example", "203.0.113.10", 7*time.Second)
		t.Logf("change seen after %v (TTL 5 s)", seen.Sub(changed).Round(time.Millisecond))
	})
	t.Run("TTL 0 and 1 give at most one query per second per name", func(t *testing.T) {
		t.Parallel()
		s := labServer(t)
		setA(t, s, "ttl0.lab.example", 0, "203.0.113.9")
		setA(t, s, "ttl1.lab.example", 1, "203.0.113.10")
		r, ch := realResolver(t, s.Addrs()[0])
		track(t, r, "ttl0.lab.example")
		track(t, r, "ttl1.lab.example")
		ch.waitFor(t, "ttl1.lab.example", "203.0.113.10", 2*time.Second)
		time.Sleep(11 * time.Second)
		for _, n := range []string{"ttl0.lab.example", "ttl1.lab.example"} {
			qs := s.QueriesFor(n)
			if peak := dnsserver.MaxQueriesPerWindow(qs, time.Second); peak > 1 || len(qs) < 3 || len(qs) > 4 {
				t.Errorf("%s: %d queries in ~11 s, peak %d per second; want 3 (every 5 s), at most 1 per second", n, len(qs), peak)
			}
		}
	})
	t.Run("name missing at first resolved within the retry interval", func(t *testing.T) {
		t.Parallel()
		s := labServer(t)
		r, ch := realResolver(t, s.Addrs()[0])
		track(t, r, "late.lab.example")
		waitQueries(t, s, "late.lab.example", 1) // answered NXDOMAIN
		appeared := time.Now()
		setA(t, s, "late.lab.example", 30, "203.0.113.11")
		seen := ch.waitFor(t, "late.lab.example", "203.0.113.11", DefaultRetryMin+time.Second)
		t.Logf("record seen %v after it appeared", seen.Sub(appeared).Round(time.Millisecond))
	})
	t.Run("server down at first, then up", func(t *testing.T) {
		t.Parallel()
		s := labServer(t)
		addr := s.Addrs()[0]
		s.Stop()
		r, ch := realResolver(t, addr)
		track(t, r, "www.lab.example")
		time.Sleep(500 * time.Millisecond)
		setA(t, s, "www.lab.example", 30, "203.0.113.12")
		if err := s.Start(); err != nil || s.Addrs()[0] != addr {
			t.Fatalf("restart on %v: %v", s.Addrs(), err)
		}
		ch.waitFor(t, "www.lab.example", "203.0.113.12", DefaultRetryMin+time.Second)
	})
	t.Run("CNAME chain refreshed at its minimum TTL", func(t *testing.T) {
		t.Parallel()
		s := labServer(t)
		setCNAME(t, s, "alias.lab.example", "www.lab.example", 300)
		setA(t, s, "www.lab.example", 5, "203.0.113.9")
		r, ch := realResolver(t, s.Addrs()[0])
		track(t, r, "alias.lab.example")
		ch.waitFor(t, "alias.lab.example", "203.0.113.9", 2*time.Second)
		setA(t, s, "www.lab.example", 5, "203.0.113.13")
		ch.waitFor(t, "alias.lab.example", "203.0.113.13", 7*time.Second)
	})
	t.Run("server down keeps the last good addresses", func(t *testing.T) {
		t.Parallel()
		s := labServer(t)
		setA(t, s, "www.lab.example", 5, "203.0.113.9")
		r, ch := realResolver(t, s.Addrs()[0])
		track(t, r, "www.lab.example")
		ch.waitFor(t, "www.lab.example", "203.0.113.9", 2*time.Second)
		s.Stop()
		time.Sleep(8 * time.Second) // past the TTL: the refresh and a retry fail
		if got, ok := r.Addrs("www.lab.example"); !ok || fmtAddrs(got) != "203.0.113.9" {
			t.Errorf("addresses with the server down: %v %v", got, ok)
		}
		if n := len(ch.events()); n != 1 {
			t.Errorf("%d changes with the server down, want none after the first: %+v", n, ch.events())
		}
		if f := testutil.ToFloat64(r.metrics.failures); f < 2 {
			t.Errorf("%v failures counted, want ≥ 2 (refresh at 5 s, retry at 7 s)", f)
		}
	})
}

func waitQueries(t *testing.T, s *dnsserver.Server, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for len(s.QueriesFor(name)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d queries, want %d", name, len(s.QueriesFor(name)), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
