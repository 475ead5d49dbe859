package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned/fake"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// fakeNeighborCache is ovs-vswitchd's tunnel-neighbour cache in memory.
type fakeNeighborCache struct {
	mu      sync.Mutex
	entries map[string]ovs.TunnelNeighbor // by bridge + IP
	sets    int                           // entries written
	flushes int
	fail    error
}

func newFakeNeighborCache() *fakeNeighborCache {
	return &fakeNeighborCache{entries: map[string]ovs.TunnelNeighbor{}}
}

func (c *fakeNeighborCache) Show(context.Context) ([]ovs.TunnelNeighbor, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return nil, c.fail
	}
	var out []ovs.TunnelNeighbor
	for _, e := range c.entries {
		out = append(out, e)
	}
	return out, nil
}

func (c *fakeNeighborCache) Set(_ context.Context, es []ovs.TunnelNeighbor) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	for _, e := range es {
		e.Stale = false
		c.entries[e.Bridge+" "+e.IP.String()] = e
		c.sets++
	}
	return nil
}

func (c *fakeNeighborCache) Replace(ctx context.Context, es []ovs.TunnelNeighbor) error {
	c.mu.Lock()
	c.entries = map[string]ovs.TunnelNeighbor{}
	c.flushes++
	c.mu.Unlock()
	return c.Set(ctx, es)
}

// dump is the cache as sorted "bridge ip mac" lines.
func (c *fakeNeighborCache) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lines []string
	for _, e := range c.entries {
		l := e.Bridge + " " + e.IP.String() + " " + e.MAC.String()
		if e.Stale {
			l += " STALE"
		}
		lines = append(lines, l)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func (c *fakeNeighborCache) counts() (sets, flushes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sets, c.flushes
}

// fakeUnderlay is the host's routes and neighbour table.
type fakeUnderlay struct {
	mu       sync.Mutex
	routes   map[netip.Addr]nextHop // by destination; missing: "network unreachable"
	neigh    map[string]map[netip.Addr]net.HardwareAddr
	resolves []string // "dev hop" per Resolve call
}

func newFakeUnderlay() *fakeUnderlay {
	return &fakeUnderlay{routes: map[netip.Addr]nextHop{}, neigh: map[string]map[netip.Addr]net.HardwareAddr{}}
}

func (u *fakeUnderlay) Route(dst netip.Addr) (string, netip.Addr, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	r, ok := u.routes[dst]
	if !ok {
		return "", netip.Addr{}, errors.New("network is unreachable")
	}
	return r.dev, r.hop, nil
}

func (u *fakeUnderlay) Neighbors(dev string) (map[netip.Addr]net.HardwareAddr, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[netip.Addr]net.HardwareAddr{}
	for ip, mac := range u.neigh[dev] {
		out[ip] = mac
	}
	return out, nil
}

func (u *fakeUnderlay) Resolve(dev string, hop netip.Addr) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.resolves = append(u.resolves, dev+" "+hop.String())
	return nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func (u *fakeUnderlay) learn(dev, ip, mac string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.neigh[dev] == nil {
		u.neigh[dev] = map[netip.Addr]net.HardwareAddr{}
	}
	m, _ := net.ParseMAC(mac)
	u.neigh[dev][netip.MustParseAddr(ip)] = m
}

func (u *fakeUnderlay) forget(dev, ip string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.neigh[dev], netip.MustParseAddr(ip))
}

func (u *fakeUnderlay) route(dst, dev, hop string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.routes[netip.MustParseAddr(dst)] = nextHop{dev: dev, hop: netip.MustParseAddr(hop)}
}

func (u *fakeUnderlay) resolveCalls() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.resolves)
}

// neighEnv is a tunnelNeighbors on fakes with a fake clock.
type neighEnv struct {
	t     *testing.T
	tn    *tunnelNeighbors
	cache *fakeNeighborCache
	under *fakeUnderlay
	now   time.Time
}

func newNeighEnv(t *testing.T, bridge string) *neighEnv {
	e := &neighEnv{t: t, cache: newFakeNeighborCache(), under: newFakeUnderlay(), now: time.Unix(1000, 0)}
	e.tn = newTunnelNeighbors(e.cache, e.under, bridge)
	e.tn.now = func() time.Time { return e.now }
	return e
}

func (e *neighEnv) peers(ips ...string) {
	var as []netip.Addr
	for _, ip := range ips {
		as = append(as, netip.MustParseAddr(ip))
	}
	e.tn.setPeers(as)
}

// sync runs one pass and checks the number of next hops without a MAC.
func (e *neighEnv) sync(wantUnresolved int) {
	e.t.Helper()
	n, err := e.tn.sync(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if n != wantUnresolved {
		e.t.Errorf("sync: %d next hops unresolved, want %d", n, wantUnresolved)
	}
}

func (e *neighEnv) expect(what string, lines ...string) {
	e.t.Helper()
	if got, want := e.cache.dump(), strings.Join(lines, "\n"); got != want {
		e.t.Errorf("%s: cache\n%s\nwant\n%s", what, got, want)
	}
}

const (
	macB = "02:00:00:00:00:0b"
	macC = "02:00:00:00:00:0c"
	macG = "02:00:00:00:00:99"
)

// TestTunnelNeighborsFollowPeersAndKernel: entries are written for the
// peers whose next hop the kernel has resolved; the others are asked for
// (once, then paced) and written when the kernel has them; a peer gone is
// removed (flush and write the rest); a MAC that changes in the kernel
// changes in OVS.
func TestTunnelNeighborsFollowPeersAndKernel(t *testing.T) {
	e := newNeighEnv(t, "")
	e.under.route("198.18.0.12", "br-phy", "198.18.0.12")
	e.under.route("198.18.0.13", "br-phy", "198.18.0.13")
	e.under.learn("br-phy", "198.18.0.12", macB)
	e.peers("198.18.0.12", "198.18.0.13")
	e.sync(1)
	e.expect("b resolved, c not yet", "br-phy 198.18.0.12 "+macB)
	// The first pass refreshes everything: b is asked for too (to make it
	// a managed entry).
	if got := e.under.resolveCalls(); !slices.Equal(sorted(got), []string{"br-phy 198.18.0.12", "br-phy 198.18.0.13"}) {
		t.Errorf("Resolve calls %v, want one for b and one for c", got)
	}
	e.sync(1) // at once again: not asked again
	if got := len(e.under.resolveCalls()); got != 2 {
		t.Errorf("%d Resolve calls, want still 2 (paced)", got)
	}
	e.now = e.now.Add(time.Second)
	e.sync(1) // 1 s later: c asked again
	if got := e.under.resolveCalls(); len(got) != 3 || got[2] != "br-phy 198.18.0.13" {
		t.Errorf("Resolve calls after 1 s: %v, want c asked again", got)
	}
	e.under.learn("br-phy", "198.18.0.13", macC)
	e.sync(0)
	e.expect("both resolved", "br-phy 198.18.0.12 "+macB, "br-phy 198.18.0.13 "+macC)

	e.peers("198.18.0.13")
	e.sync(0)
	e.expect("b gone", "br-phy 198.18.0.13 "+macC)
	if _, flushes := e.cache.counts(); flushes != 1 {
		t.Errorf("%d flushes, want 1 to remove b", flushes)
	}

	e.under.learn("br-phy", "198.18.0.13", "02:00:00:00:01:0c")
	e.sync(0)
	e.expect("c's MAC changed", "br-phy 198.18.0.13 02:00:00:00:01:0c")
	// The kernel forgets c (entry garbage-collected): the last MAC stays
	// in OVS and the kernel is asked again.
	e.under.forget("br-phy", "198.18.0.13")
	before := len(e.under.resolveCalls())
	e.sync(0)
	e.expect("c forgotten by the kernel", "br-phy 198.18.0.13 02:00:00:00:01:0c")
	if len(e.under.resolveCalls()) != before+1 {
		t.Error("the kernel was not asked to resolve c again")
	}
}

// TestTunnelNeighborsRepairAndRefresh: an entry missing (vswitchd
// restarted, flushed, aged out), stale or with another MAC is written again
// at the next pass, and only it; every refresh period every entry is
// written again (OVS ages entries no packet uses).
func TestTunnelNeighborsRepairAndRefresh(t *testing.T) {
	e := newNeighEnv(t, "")
	for i, mac := range []string{macB, macC} {
		ip := fmt.Sprintf("198.18.0.%d", 12+i)
		e.under.route(ip, "br-phy", ip)
		e.under.learn("br-phy", ip, mac)
	}
	e.peers("198.18.0.12", "198.18.0.13")
	e.sync(0)
	want := []string{"br-phy 198.18.0.12 " + macB, "br-phy 198.18.0.13 " + macC}
	e.expect("start", want...)
	sets, _ := e.cache.counts()
	e.sync(0)
	if s, _ := e.cache.counts(); s != sets {
		t.Errorf("a pass with nothing to do wrote %d entries", s-sets)
	}

	e.cache.mu.Lock()
	delete(e.cache.entries, "br-phy 198.18.0.12")
	stale := e.cache.entries["br-phy 198.18.0.13"]
	stale.Stale = true
	e.cache.entries["br-phy 198.18.0.13"] = stale
	e.cache.mu.Unlock()
	e.sync(0)
	e.expect("repaired", want...)
	if s, _ := e.cache.counts(); s != sets+2 {
		t.Errorf("repair wrote %d entries, want 2", s-sets)
	}
	e.cache.mu.Lock()
	e.cache.entries["br-phy 198.18.0.12"] = ovs.TunnelNeighbor{IP: netip.MustParseAddr("198.18.0.12"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xee}, Bridge: "br-phy"}
	e.cache.mu.Unlock()
	e.sync(0)
	e.expect("wrong MAC (snooped from another device) corrected", want...)

	sets, _ = e.cache.counts()
	e.now = e.now.Add(tunnelNeighborRefresh)
	e.sync(0)
	if s, _ := e.cache.counts(); s != sets+2 {
		t.Errorf("refresh wrote %d entries, want every entry (2)", s-sets)
	}
}

// TestTunnelNeighborsRoutedUnderlayAndBridge: peers behind a gateway share
// its entry; Config.UnderlayBridge replaces the route's device name.
func TestTunnelNeighborsRoutedUnderlayAndBridge(t *testing.T) {
	e := newNeighEnv(t, "")
	e.under.route("192.0.2.12", "br-phy", "198.18.0.1")
	e.under.route("192.0.2.13", "br-phy", "198.18.0.1")
	e.under.learn("br-phy", "198.18.0.1", macG)
	e.peers("192.0.2.12", "192.0.2.13")
	e.sync(0)
	e.expect("gateway", "br-phy 198.18.0.1 "+macG)
	// The underlay's gateway changes: routes are looked up again at the
	// next refresh, and the old gateway's entry goes.
	e.under.route("192.0.2.12", "br-phy", "198.18.0.2")
	e.under.route("192.0.2.13", "br-phy", "198.18.0.2")
	e.under.learn("br-phy", "198.18.0.2", macB)
	e.sync(0)
	e.expect("before the refresh: the known route", "br-phy 198.18.0.1 "+macG)
	e.now = e.now.Add(tunnelNeighborRefresh)
	e.sync(0)
	e.expect("new gateway", "br-phy 198.18.0.2 "+macB)

	e = newNeighEnv(t, "br-ex")
	e.under.route("198.18.0.12", "br-ex-port", "198.18.0.12")
	e.under.learn("br-ex", "198.18.0.12", macB)
	e.peers("198.18.0.12")
	e.sync(0)
	e.expect("configured bridge", "br-ex 198.18.0.12 "+macB)
}

// TestTunnelNeighborsRestore: after a vswitchd restart (cache empty, the
// bridge's device and with it the host's route and neighbours gone), the
// known MACs are written at once; passes meanwhile keep them.
func TestTunnelNeighborsRestore(t *testing.T) {
	e := newNeighEnv(t, "")
	e.under.route("198.18.0.12", "br-phy", "198.18.0.12")
	e.under.learn("br-phy", "198.18.0.12", macB)
	e.peers("198.18.0.12")
	e.sync(0)
	// vswitchd restarts: cache empty; its tap device (and the route and
	// neighbours on it) not back yet.
	e.cache.mu.Lock()
	e.cache.entries = map[string]ovs.TunnelNeighbor{}
	e.cache.mu.Unlock()
	e.under.mu.Lock()
	e.under.routes = map[netip.Addr]nextHop{}
	e.under.neigh = map[string]map[netip.Addr]net.HardwareAddr{}
	e.under.mu.Unlock()
	e.tn.restore(context.Background())
	e.expect("restored", "br-phy 198.18.0.12 "+macB)
	e.cache.mu.Lock()
	e.cache.entries = map[string]ovs.TunnelNeighbor{}
	e.cache.mu.Unlock()
	e.sync(0)
	e.expect("a pass without the host's route or neighbours keeps the known MAC", "br-phy 198.18.0.12 "+macB)
}

// TestTunnelNeighborsOnlyOnNetdev: the kernel datapath has no upkeep (its
// calls are no-ops); the userspace one has.
func TestTunnelNeighborsOnlyOnNetdev(t *testing.T) {
	var tn *tunnelNeighbors
	tn.setPeers([]netip.Addr{netip.MustParseAddr("198.18.0.12")})
	tn.restore(context.Background())
	for _, dp := range []string{"system", "netdev"} {
		a, err := New(Config{NodeName: "n", NodeIP: netip.MustParseAddr("10.0.0.1"), Network: fake.NewSimpleClientset(),
			DatapathType: dp, Host: &fakeHost{}})
		if err != nil {
			t.Fatal(err)
		}
		if (a.env.tunnels != nil) != (dp == "netdev") {
			t.Errorf("datapath %s: tunnel-neighbour upkeep %v", dp, a.env.tunnels != nil)
		}
	}
}
