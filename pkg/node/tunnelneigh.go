package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// Tunnel neighbours (userspace datapath only).
//
// On the netdev datapath ovs-vswitchd builds the Ethernet header of every
// VXLAN packet itself, from its own neighbour cache (`ovs-appctl
// tnl/neigh/show`): the MAC of the next hop towards the remote node on the
// bridge that carries the node IP (br-phy, SPEC §9). A packet towards a
// node whose MAC is not cached is dropped while vswitchd sends an ARP
// request. The cache starts empty, empties on every vswitchd restart, and
// ages out an entry after 15 minutes in which no packet used it. Without
// help, the first packet to a peer is lost after each start, restart and
// idle period (for a pod, its first ARP request: one second of delay).
// The kernel datapath resolves neighbours in the kernel: nothing to do.
//
// So the agent keeps the cache filled with an entry per remote node:
//
//   - Which peers: the hostIPs of the remote nodes the nodes feature renders
//     (valid, not conflict losers), published after each of its renders.
//   - Which bridge and next hop: the host's route to the peer (netlink, in
//     the host network namespace): its device is the bridge — vswitchd
//     tunnels through the bridge whose internal port has the route's device
//     name — and its next hop is the peer itself on a shared link, or the
//     gateway on a routed underlay. Config.UnderlayBridge overrides the
//     device name.
//   - Which MAC: the kernel's neighbour table of that device, which the
//     agent asks to resolve each next hop (RTM_NEWNEIGH with NTF_USE: an ARP
//     request now if the entry is not valid, a re-confirmation if it is
//     stale) as a managed entry (NTF_EXT_MANAGED, Linux 5.16+: the kernel
//     keeps it resolved and re-probes it, unicast, so it notices a MAC that
//     changes). No ARP code in the agent, and the kernel's view is also the
//     one an operator inspects with `ip neigh`.
//   - When: every HealthCheckPeriod (2 s) the agent compares the cache with
//     what it wants and writes what is missing, different or stale (which
//     also repairs a vswitchd restart, a flush, or an entry aged out); a
//     change of peers wakes it at once; every refresh (1 min, well below
//     OVS's 15 min) it writes every entry again, which restarts their
//     aging; after a vswitchd restart the rebuild writes the MACs it knows
//     before it restores the flows; at start-up the agent waits up to a
//     second for the kernel to resolve its peers before its first full
//     sync. Writes go through one unixctl connection (pkg/ovs.Unixctl),
//     not one ovs-appctl process per entry.
//   - Removal: OVS 3.1 cannot delete one entry, so when a peer the agent
//     wrote is gone it flushes the cache and writes the remaining entries
//     back on the same connection (a gap of well under a millisecond).
//     Entries of peers removed while the agent was not running age out.
type tunnelNeighbors struct {
	cache   neighborCache
	under   underlay
	bridge  string        // Config.UnderlayBridge; "" = the route's device
	refresh time.Duration // every entry is written at least this often
	now     func() time.Time

	mu        sync.Mutex
	peers     []netip.Addr
	routes    map[netip.Addr]nextHop          // peer → route last found
	macs      map[netip.Addr]net.HardwareAddr // next hop → MAC last resolved
	resolving map[netip.Addr]resolveState     // next hop → asked the kernel when
	written   map[netip.Addr]string           // next hop → bridge, last written
	refreshed time.Time                       // last write of every entry
	kick      chan struct{}                   // size 1: the peers changed
}

// neighborCache is ovs-vswitchd's tunnel-neighbour cache.
type neighborCache interface {
	// Show returns every entry.
	Show(ctx context.Context) ([]ovs.TunnelNeighbor, error)
	// Set writes entries in order (new, a changed MAC, or the same MAC:
	// its age restarts), stopping at the first error.
	Set(ctx context.Context, entries []ovs.TunnelNeighbor) error
	// Replace empties the cache and writes entries.
	Replace(ctx context.Context, entries []ovs.TunnelNeighbor) error
}

// underlay is the host's view of the underlay, in its network namespace.
type underlay interface {
	// Route returns the device the host routes dst through and the next
	// hop of packets to dst: dst itself on a shared link, else the gateway.
	Route(dst netip.Addr) (dev string, hop netip.Addr, err error)
	// Neighbors returns the resolved neighbours of dev (a MAC, and state
	// REACHABLE, STALE, DELAY, PROBE or PERMANENT).
	Neighbors(dev string) (map[netip.Addr]net.HardwareAddr, error)
	// Resolve asks the kernel to resolve hop on dev, or to re-confirm its
	// entry, and to keep it resolved (managed); it does not wait.
	Resolve(dev string, hop netip.Addr) error
}

type nextHop struct {
	dev string
	hop netip.Addr
}

// resolveState paces the kernel resolution of one next hop that has no
// MAC: at once, then after 1 s, doubling up to the refresh period.
type resolveState struct {
	next  time.Time
	delay time.Duration
}

// Defaults of the tunnel-neighbour upkeep.
const (
	tunnelNeighborRefresh = time.Minute
	// tunnelNeighborPrime bounds the start-up wait for peers' MACs.
	tunnelNeighborPrime = time.Second
)

func newTunnelNeighbors(cache neighborCache, under underlay, bridge string) *tunnelNeighbors {
	return &tunnelNeighbors{cache: cache, under: under, bridge: bridge, refresh: tunnelNeighborRefresh, now: time.Now,
		routes: map[netip.Addr]nextHop{}, macs: map[netip.Addr]net.HardwareAddr{},
		resolving: map[netip.Addr]resolveState{}, written: map[netip.Addr]string{}, kick: make(chan struct{}, 1)}
}

// setPeers sets the remote node IPs to keep entries for, and wakes the
// upkeep if they changed. Nil-safe (kernel datapath: nothing to do).
func (t *tunnelNeighbors) setPeers(ips []netip.Addr) {
	if t == nil {
		return
	}
	ips = slices.Clone(ips)
	slices.SortFunc(ips, netip.Addr.Compare)
	ips = slices.Compact(ips)
	t.mu.Lock()
	changed := !slices.Equal(ips, t.peers)
	t.peers = ips
	t.mu.Unlock()
	if changed {
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
}

// run keeps the cache up to date until ctx ends: every period, when the
// peers change, and soon again while some next hop has no MAC yet.
func (t *tunnelNeighbors) run(ctx context.Context, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	delay := 50 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-t.kick:
			delay = 50 * time.Millisecond
		case <-retry.C:
		}
		unresolved, err := t.sync(ctx)
		if err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Updating ovs-vswitchd's tunnel neighbours")
		}
		if unresolved > 0 {
			retry.Reset(delay)
			delay = min(2*delay, period)
		} else {
			delay = 50 * time.Millisecond
		}
	}
}

// prime syncs at start-up, waiting up to budget for the kernel to resolve
// every next hop, so that the first packets to each peer find its MAC.
func (t *tunnelNeighbors) prime(ctx context.Context, budget time.Duration) {
	deadline := time.Now().Add(budget)
	for {
		unresolved, err := t.sync(ctx)
		if err != nil {
			klog.ErrorS(err, "Writing ovs-vswitchd's tunnel neighbours at start-up")
		}
		if unresolved == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			if unresolved > 0 {
				klog.InfoS("Some remote nodes' MACs are not resolved yet; first packets to them may be lost", "unresolved", unresolved)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restore writes every entry whose MAC the agent knows, without asking
// the kernel or reading the cache first: after a vswitchd restart, before
// the flows come back.
func (t *tunnelNeighbors) restore(ctx context.Context) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	want := t.entriesLocked(t.cachedHopsLocked())
	if err := t.cache.Set(ctx, want); err != nil {
		klog.ErrorS(err, "Restoring ovs-vswitchd's tunnel neighbours")
		return
	}
	klog.InfoS("Restored ovs-vswitchd's tunnel neighbours", "entries", len(want))
}

// sync makes the cache hold an entry for every next hop with a known MAC
// and returns how many next hops have none yet.
func (t *tunnelNeighbors) sync(ctx context.Context) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	full := t.now().Sub(t.refreshed) >= t.refresh
	hops := t.nextHopsLocked(full)
	unresolved := t.learnLocked(hops, full)
	want := t.entriesLocked(hops)
	gone := t.goneLocked(hops)
	var err error
	switch {
	case gone:
		err = t.cache.Replace(ctx, want)
	case full:
		err = t.cache.Set(ctx, want)
	default:
		var cur []ovs.TunnelNeighbor
		if cur, err = t.cache.Show(ctx); err == nil {
			err = t.cache.Set(ctx, missing(want, cur))
		}
	}
	if err != nil {
		return unresolved, err
	}
	t.written = map[netip.Addr]string{}
	for _, e := range want {
		t.written[e.IP] = e.Bridge
	}
	if full {
		t.refreshed = t.now()
	}
	return unresolved, nil
}

// nextHopsLocked returns the next hop (and its device) of every peer,
// from the host's routes: looked up for a new peer, and for all of them
// when lookup is set (every refresh period); the last route found stays in
// use while there is none (the bridge's device is recreated after a
// vswitchd restart).
func (t *tunnelNeighbors) nextHopsLocked(lookup bool) map[netip.Addr]string {
	hops := map[netip.Addr]string{}
	for _, p := range t.peers {
		if _, known := t.routes[p]; !known || lookup {
			if dev, hop, err := t.under.Route(p); err == nil {
				t.routes[p] = nextHop{dev: dev, hop: hop}
			} else if !known {
				klog.V(2).InfoS("No route to a remote node yet", "nodeIP", p, "err", err)
				continue
			}
		}
		r := t.routes[p]
		if t.bridge != "" {
			r.dev = t.bridge
		}
		hops[r.hop] = r.dev
	}
	for p := range t.routes {
		if !slices.Contains(t.peers, p) {
			delete(t.routes, p)
		}
	}
	return hops
}

// cachedHopsLocked is nextHopsLocked from the routes last found only.
func (t *tunnelNeighbors) cachedHopsLocked() map[netip.Addr]string {
	hops := map[netip.Addr]string{}
	for _, p := range t.peers {
		if r, ok := t.routes[p]; ok {
			hops[r.hop] = cmpOr(t.bridge, r.dev)
		}
	}
	return hops
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// learnLocked reads the kernel's neighbours of every device, records the
// MACs of hops, asks the kernel to resolve the hops it has none for (paced
// per hop) — and all of them when all is set (every refresh period: it
// makes entries learnt from other traffic managed, and re-confirms stale
// ones) — and returns how many hops have no MAC at all.
func (t *tunnelNeighbors) learnLocked(hops map[netip.Addr]string, all bool) int {
	kernel := map[string]map[netip.Addr]net.HardwareAddr{}
	for _, dev := range hops {
		if _, ok := kernel[dev]; ok {
			continue
		}
		ns, err := t.under.Neighbors(dev)
		if err != nil {
			klog.V(2).InfoS("Reading the kernel's neighbours", "device", dev, "err", err)
		}
		kernel[dev] = ns
	}
	unresolved := 0
	now := t.now()
	for hop, dev := range hops {
		if mac, ok := kernel[dev][hop]; ok {
			if old, had := t.macs[hop]; !had || old.String() != mac.String() {
				klog.InfoS("Tunnel neighbour resolved", "nextHop", hop, "mac", mac, "bridge", dev)
			}
			t.macs[hop] = mac
			delete(t.resolving, hop)
			if all {
				t.resolveLocked(dev, hop, time.Time{})
			}
			continue
		}
		if _, ok := t.macs[hop]; !ok {
			unresolved++
		}
		t.resolveLocked(dev, hop, now)
	}
	for hop := range t.macs {
		if _, ok := hops[hop]; !ok {
			delete(t.macs, hop)
			delete(t.resolving, hop)
		}
	}
	return unresolved
}

// resolveLocked asks the kernel to resolve hop unless it asked for it
// recently while it had no MAC; a zero now asks in any case and does not
// pace.
func (t *tunnelNeighbors) resolveLocked(dev string, hop netip.Addr, now time.Time) {
	st := t.resolving[hop]
	if now.Before(st.next) {
		return
	}
	if err := t.under.Resolve(dev, hop); err != nil {
		klog.V(2).InfoS("Asking the kernel to resolve a tunnel neighbour", "nextHop", hop, "device", dev, "err", err)
	}
	if now.IsZero() {
		return
	}
	st.delay = min(max(2*st.delay, time.Second), t.refresh)
	st.next = now.Add(st.delay)
	t.resolving[hop] = st
}

// entriesLocked returns the entries to have: every hop with a known MAC,
// sorted by IP.
func (t *tunnelNeighbors) entriesLocked(hops map[netip.Addr]string) []ovs.TunnelNeighbor {
	var want []ovs.TunnelNeighbor
	for hop, dev := range hops {
		if mac, ok := t.macs[hop]; ok {
			want = append(want, ovs.TunnelNeighbor{IP: hop, MAC: mac, Bridge: dev})
		}
	}
	slices.SortFunc(want, func(a, b ovs.TunnelNeighbor) int { return a.IP.Compare(b.IP) })
	return want
}

// goneLocked reports whether an entry written earlier is no longer wanted
// (its peer is gone, or now routed through another bridge).
func (t *tunnelNeighbors) goneLocked(hops map[netip.Addr]string) bool {
	for hop, br := range t.written {
		if dev, ok := hops[hop]; !ok || dev != br {
			return true
		}
	}
	return false
}

// missing returns the entries of want that cur lacks, has with another
// MAC, or has stale.
func missing(want, cur []ovs.TunnelNeighbor) []ovs.TunnelNeighbor {
	have := map[string]bool{}
	for _, c := range cur {
		if !c.Stale {
			have[neighborKey(c)] = true
		}
	}
	var out []ovs.TunnelNeighbor
	for _, w := range want {
		if !have[neighborKey(w)] {
			out = append(out, w)
		}
	}
	return out
}

func neighborKey(n ovs.TunnelNeighbor) string {
	return n.Bridge + " " + n.IP.String() + " " + n.MAC.String()
}

// vswitchdNeighbors is the neighbour cache of the ovs-vswitchd whose
// pidfile is in runDir, through its control socket (one connection per
// call: the pid changes when vswitchd restarts).
type vswitchdNeighbors struct{ runDir string }

func (v vswitchdNeighbors) dial(ctx context.Context) (*ovs.Unixctl, error) {
	path, err := ovs.VswitchdControlSocket(v.runDir)
	if err != nil {
		return nil, err
	}
	return ovs.DialUnixctl(ctx, path)
}

func (v vswitchdNeighbors) Show(ctx context.Context) ([]ovs.TunnelNeighbor, error) {
	u, err := v.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer u.Close()
	out, err := u.Call(ctx, "tnl/neigh/show")
	if err != nil {
		return nil, err
	}
	return ovs.ParseTunnelNeighbors(out)
}

func (v vswitchdNeighbors) Set(ctx context.Context, entries []ovs.TunnelNeighbor) error {
	if len(entries) == 0 {
		return nil
	}
	return v.calls(ctx, false, entries)
}

func (v vswitchdNeighbors) Replace(ctx context.Context, entries []ovs.TunnelNeighbor) error {
	return v.calls(ctx, true, entries)
}

func (v vswitchdNeighbors) calls(ctx context.Context, flush bool, entries []ovs.TunnelNeighbor) error {
	u, err := v.dial(ctx)
	if err != nil {
		return err
	}
	defer u.Close()
	if flush {
		if _, err := u.Call(ctx, "tnl/neigh/flush"); err != nil {
			return err
		}
	}
	var errs []error
	for _, e := range entries {
		if _, err := u.Call(ctx, "tnl/neigh/set", e.SetArgs()...); err != nil {
			errs = append(errs, fmt.Errorf("tunnel neighbour %s: %w", e.IP, err))
			break // the connection is unusable after a failed exchange
		}
	}
	return errors.Join(errs...)
}
