package dnsresolver

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	testingclock "k8s.io/utils/clock/testing"
)

// fakeLookuper answers from a table that tests change, and records every call.
type fakeLookuper struct {
	clock *testingclock.FakeClock
	mu    sync.Mutex
	table map[string]result
	calls map[string][]time.Time
	gate  chan struct{} // non-nil: each lookup waits for one receive
	busy  int
	peak  int
}

func newFakeLookuper(c *testingclock.FakeClock) *fakeLookuper {
	return &fakeLookuper{clock: c, table: map[string]result{}, calls: map[string][]time.Time{}}
}

func (f *fakeLookuper) set(name string, r result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.table[name] = r
}

func (f *fakeLookuper) LookupA(ctx context.Context, name string) (Answer, error) {
	f.mu.Lock()
	f.calls[name] = append(f.calls[name], f.clock.Now())
	f.busy++
	f.peak = max(f.peak, f.busy)
	r, gate := f.table[name], f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	f.mu.Lock()
	f.busy--
	f.mu.Unlock()
	return r.ans, r.err
}

func (f *fakeLookuper) callCount(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls[name])
}

// changes collects OnChange calls.
type changes struct {
	mu  sync.Mutex
	got []event
}

func (c *changes) record(name string, as []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, event{name: name, addrs: fmtAddrs(as)})
}

func (c *changes) list() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startResolver runs a Resolver on a fake clock until the test ends.
func startResolver(t *testing.T, cfg Config) (*Resolver, *fakeLookuper, *testingclock.FakeClock, *changes) {
	t.Helper()
	fc := testingclock.NewFakeClock(t0)
	fl := newFakeLookuper(fc)
	ch := &changes{}
	cfg.Clock, cfg.Lookuper, cfg.OnChange = fc, fl, ch.record
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, fl, fc, ch
}

func ok(ttl time.Duration, a ...string) result {
	return result{ans: Answer{Addrs: addrs(a...), TTL: ttl, Queries: 1}}
}

// The loop wires the schedule to a clock: first query at once, the next at the TTL, a
// change reported through OnChange and Addrs, no queries after Untrack.
func TestResolverLoop(t *testing.T) {
	r, fl, fc, ch := startResolver(t, Config{})
	fl.set("www.example.com", ok(10*time.Second, "203.0.113.9"))
	name, err := r.Track("WWW.Example.COM.")
	if err != nil || name != "www.example.com" {
		t.Fatalf("Track: %q, %v", name, err)
	}
	eventually(t, "first resolution", func() bool { return len(ch.list()) == 1 })
	if got := ch.list()[0]; got != (event{name: "www.example.com", addrs: "203.0.113.9"}) {
		t.Errorf("OnChange: %+v", got)
	}
	if as, ok := r.Addrs("www.example.com."); !ok || fmtAddrs(as) != "203.0.113.9" {
		t.Errorf("Addrs: %v %v", as, ok)
	}
	eventually(t, "the refresh timer", fc.HasWaiters)
	fc.Step(9 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if n := fl.callCount("www.example.com"); n != 1 {
		t.Fatalf("%d queries before the TTL ran out, want 1", n)
	}
	fl.set("www.example.com", ok(10*time.Second, "203.0.113.10"))
	fc.Step(time.Second)
	eventually(t, "the refresh at the TTL", func() bool { return len(ch.list()) == 2 })
	if got := ch.list()[1]; got.addrs != "203.0.113.10" {
		t.Errorf("second OnChange: %+v", got)
	}
	r.Untrack("www.example.com")
	if _, ok := r.Addrs("www.example.com"); ok {
		t.Error("untracked name still has addresses")
	}
	fc.Step(time.Minute)
	time.Sleep(50 * time.Millisecond)
	if n := fl.callCount("www.example.com"); n != 2 {
		t.Errorf("%d queries, want none after Untrack", n)
	}
}

func TestResolverConcurrencyBound(t *testing.T) {
	fcfg := Config{Concurrency: 3}
	r, fl, _, ch := startResolver(t, fcfg)
	fl.gate = make(chan struct{})
	var names []string
	for i := range 20 {
		n := string(rune('a'+i)) + ".example"
		names = append(names, n)
		fl.set(n, ok(time.Minute, "203.0.113.9"))
		if _, err := r.Track(n); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "3 lookups in flight", func() bool { fl.mu.Lock(); defer fl.mu.Unlock(); return fl.busy == 3 })
	time.Sleep(50 * time.Millisecond)
	for range names {
		fl.gate <- struct{}{}
	}
	eventually(t, "every name resolved", func() bool { return len(ch.list()) == len(names) })
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.peak != 3 {
		t.Errorf("peak concurrency %d, want 3", fl.peak)
	}
}

func TestResolverMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, fl, _, _ := startResolver(t, Config{Registerer: reg})
	fl.set("good.example", result{ans: Answer{Addrs: addrs("203.0.113.9"), TTL: time.Minute, Queries: 2}})
	fl.set("bad.example", result{ans: Answer{Queries: 3}, err: errDown})
	for _, n := range []string{"good.example", "bad.example", "good.example"} {
		if _, err := r.Track(n); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both lookups", func() bool {
		return testutil.ToFloat64(r.metrics.queries) == 5 && testutil.ToFloat64(r.metrics.failures) == 1
	})
	for name, want := range map[string]float64{"ovs_sdn_egress_dns_names_tracked": 2, "ovs_sdn_egress_dns_names_unresolved": 1,
		"ovs_sdn_egress_dns_queries_total": 5, "ovs_sdn_egress_dns_failures_total": 1} {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, mf := range mfs {
			if mf.GetName() == name {
				found = true
				m := mf.GetMetric()[0]
				if got := m.GetGauge().GetValue() + m.GetCounter().GetValue(); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
		}
		if !found {
			t.Errorf("metric %s not registered", name)
		}
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{"Example.COM.": "example.com", "a.b.c": "a.b.c", "x": "x"} {
		if got, err := Normalize(in); err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ".", "a..b", "example.com..", "a b"} {
		if got, err := Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", bad, got)
		}
	}
	r, _, _, _ := startResolver(t, Config{})
	if _, err := r.Track("a..b"); err == nil {
		t.Error("Track of a bad name accepted")
	}
}

func TestServersFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	text := "# comment\nsearch cluster.local\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:5 timeout:1\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ServersFromResolvConf(path)
	want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53"), netip.MustParseAddrPort("[2001:db8::53]:53")}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("servers %v, %v; want %v", got, err, want)
	}
	// New reads the file when no server is given; nothing is sent before Run.
	r, err := New(Config{ResolvConf: path})
	if err != nil || !slices.Equal(r.cfg.Servers, want) {
		t.Errorf("New from resolv.conf: %v, %v", r, err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("search x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ServersFromResolvConf(empty); err == nil {
		t.Error("resolv.conf without nameserver accepted")
	}
	if _, err := New(Config{ResolvConf: filepath.Join(dir, "missing")}); err == nil {
		t.Error("New with a missing resolv.conf accepted")
	}
}
