package egressip

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// world is a random cluster from a small address space, so that CIDR
// overlaps, manual/automatic collisions, shared and duplicate requests and
// unreachable nodes are frequent.
type world struct {
	nodes      []Node
	namespaces []Namespace
}

func egressAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }

var worldCIDRs = []netip.Prefix{cidr("192.0.2.0/28"), cidr("192.0.2.0/29"), cidr("192.0.2.8/29"), cidr("192.0.2.16/28")}

func randomWorld(r *rand.Rand) world {
	var w world
	for i := range 1 + r.IntN(5) {
		n := Node{Name: fmt.Sprintf("n%d", i), HostIP: netip.AddrFrom4([4]byte{192, 168, 0, byte(i + 1)}), Unreachable: r.IntN(5) == 0}
		if r.IntN(4) == 0 { // manual
			for range r.IntN(3) {
				n.EgressIPs = append(n.EgressIPs, egressAddr(r.IntN(32)))
			}
		} else {
			for range 1 + r.IntN(2) {
				n.EgressCIDRs = append(n.EgressCIDRs, worldCIDRs[r.IntN(len(worldCIDRs))])
			}
			for range r.IntN(4) { // leftovers of earlier allocations, valid or not
				n.EgressIPs = append(n.EgressIPs, egressAddr(r.IntN(32)))
			}
		}
		n.EgressIPs = sortedAddrs(n.EgressIPs)
		w.nodes = append(w.nodes, n)
	}
	for i := range r.IntN(10) {
		ns := Namespace{Name: fmt.Sprintf("ns%d", i), VNID: uint32(10 + r.IntN(8))}
		for range 1 + r.IntN(2) {
			if a := egressAddr(r.IntN(32)); !slices.Contains(ns.EgressIPs, a) {
				ns.EgressIPs = append(ns.EgressIPs, a)
			}
		}
		w.namespaces = append(w.namespaces, ns)
	}
	return w
}

func (w world) shuffled(r *rand.Rand) world {
	out := world{nodes: slices.Clone(w.nodes), namespaces: slices.Clone(w.namespaces)}
	r.Shuffle(len(out.nodes), func(i, j int) { out.nodes[i], out.nodes[j] = out.nodes[j], out.nodes[i] })
	r.Shuffle(len(out.namespaces), func(i, j int) { out.namespaces[i], out.namespaces[j] = out.namespaces[j], out.namespaces[i] })
	for i := range out.nodes {
		ips := slices.Clone(out.nodes[i].EgressIPs)
		r.Shuffle(len(ips), func(a, b int) { ips[a], ips[b] = ips[b], ips[a] })
		out.nodes[i].EgressIPs = ips
	}
	return out
}

// checkAllocation asserts the invariants of one Allocate result.
func checkAllocation(t *testing.T, w world, a Allocation) {
	t.Helper()
	req := newRequests(w.namespaces)
	manualIPs := map[netip.Addr]bool{}
	byName := map[string]Node{}
	for _, n := range w.nodes {
		byName[n.Name] = n
		if !n.Automatic() {
			for _, ip := range n.EgressIPs {
				manualIPs[ip] = true
			}
		}
	}
	where := map[netip.Addr]string{}
	for name, ips := range a.EgressIPs {
		n := byName[name]
		vnids := map[uint32]bool{}
		for _, ip := range ips {
			vnid, owned := req.owner(ip)
			switch {
			case !n.Automatic() || n.Unreachable:
				t.Fatalf("%s (automatic %v, unreachable %v) got %s", name, n.Automatic(), n.Unreachable, ip)
			case where[ip] != "":
				t.Fatalf("%s on two nodes: %s and %s", ip, where[ip], name)
			case !owned || manualIPs[ip]:
				t.Fatalf("%s on %s is not allocatable (requesters %v, manual %v)", ip, name, req.vnidsOf[ip], manualIPs[ip])
			case !n.holds(ip):
				t.Fatalf("%s on %s is outside its egressCIDRs %v", ip, name, n.EgressCIDRs)
			case vnids[vnid]:
				t.Fatalf("%s: two IPs of VNID %d", name, vnid)
			}
			where[ip], vnids[vnid] = name, true
		}
	}
	for ip := range a.Unassigned {
		if where[ip] != "" {
			t.Fatalf("%s both placed on %s and unassigned", ip, where[ip])
		}
	}
}

// TestAllocateProperties: invariants, independence from input order, and
// the fixed point (allocating again on the result changes nothing).
func TestAllocateProperties(t *testing.T) {
	for seed := range 2000 {
		r := rand.New(rand.NewPCG(uint64(seed), 3))
		w := randomWorld(r)
		a := Allocate(w.nodes, w.namespaces)
		checkAllocation(t, w, a)
		if again := Allocate(w.shuffled(r).nodes, w.shuffled(r).namespaces); !reflect.DeepEqual(a, again) {
			t.Fatalf("seed %d: result depends on input order:\n%+v\n%+v", seed, a, again)
		}
		applied := a.Apply(w.nodes)
		next := Allocate(applied, w.namespaces)
		if !reflect.DeepEqual(next.EgressIPs, a.EgressIPs) || len(next.Moved) != 0 {
			t.Fatalf("seed %d: not a fixed point:\nfirst  %v\nsecond %v moved %v", seed, a.EgressIPs, next.EgressIPs, next.Moved)
		}
		checkEvaluate(t, seed, w, applied)
	}
}

// checkEvaluate: Evaluate on an applied allocation finds every allocatable
// placed IP active and reports every requested inactive IP as a problem.
func checkEvaluate(t *testing.T, seed int, w world, applied []Node) {
	t.Helper()
	st := Evaluate(applied, w.namespaces)
	active := map[netip.Addr]bool{}
	for _, e := range st.Egress {
		for _, as := range e.Active {
			active[as.IP] = true
		}
	}
	explained := map[netip.Addr]bool{}
	for _, p := range st.Problems {
		for _, ip := range p.IPs {
			explained[ip] = true
		}
	}
	req := newRequests(w.namespaces)
	for ip := range req.vnidsOf {
		if active[ip] == explained[ip] {
			t.Fatalf("seed %d: %s active=%v and explained=%v (exactly one must hold)", seed, ip, active[ip], explained[ip])
		}
	}
	r := rand.New(rand.NewPCG(uint64(seed), 9))
	shuffled := world{nodes: applied, namespaces: w.namespaces}.shuffled(r)
	if !reflect.DeepEqual(st, Evaluate(shuffled.nodes, shuffled.namespaces)) {
		t.Fatalf("seed %d: Evaluate depends on input order", seed)
	}
}

// TestAllocateStable: after an allocation is applied, an unrelated change
// (a new namespace with a new IP, another node becoming unreachable) keeps
// every assignment on a node that is still reachable.
func TestAllocateStable(t *testing.T) {
	for seed := range 1000 {
		r := rand.New(rand.NewPCG(uint64(seed), 4))
		w := randomWorld(r)
		applied := Allocate(w.nodes, w.namespaces).Apply(w.nodes)
		changed := world{nodes: slices.Clone(applied), namespaces: slices.Clone(w.namespaces)}
		if r.IntN(2) == 0 && len(changed.nodes) > 0 {
			changed.nodes[r.IntN(len(changed.nodes))].Unreachable = true
		} else {
			changed.namespaces = append(changed.namespaces, Namespace{Name: "zz-new", VNID: 999, EgressIPs: []netip.Addr{egressAddr(40 + r.IntN(10))}})
		}
		next := Allocate(changed.nodes, changed.namespaces)
		for _, n := range changed.nodes {
			if !n.Automatic() || n.Unreachable {
				continue
			}
			for _, ip := range n.EgressIPs {
				if !slices.Contains(next.EgressIPs[n.Name], ip) {
					t.Fatalf("seed %d: %s moved off the healthy %s after an unrelated change", seed, ip, n.Name)
				}
			}
		}
	}
}

// TestAllocateBalanced: nodes with the same egressCIDRs, one IP per
// namespace, allocated from scratch: loads differ by at most one.
func TestAllocateBalanced(t *testing.T) {
	for seed := range 300 {
		r := rand.New(rand.NewPCG(uint64(seed), 6))
		var nodes []Node
		for i := range 1 + r.IntN(6) {
			nodes = append(nodes, auto(fmt.Sprintf("n%d", i), fmt.Sprintf("192.168.0.%d", i+1), "192.0.2.0/24"))
		}
		var nss []Namespace
		for i, host := range r.Perm(200)[:r.IntN(60)] {
			nss = append(nss, ns(fmt.Sprintf("ns%d", i), uint32(10+i), egressAddr(host+1).String()))
		}
		l := loads(Allocate(nodes, nss))
		lo, hi := len(nss), 0
		for _, n := range nodes {
			lo, hi = min(lo, l[n.Name]), max(hi, l[n.Name])
		}
		if hi-lo > 1 {
			t.Fatalf("seed %d: loads %v differ by more than one", seed, l)
		}
	}
}

// FuzzAllocate builds a world from the fuzzer's seed and checks the same
// properties as TestAllocateProperties.
func FuzzAllocate(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(77), uint64(0))
	f.Fuzz(func(t *testing.T, s1, s2 uint64) {
		r := rand.New(rand.NewPCG(s1, s2))
		w := randomWorld(r)
		a := Allocate(w.nodes, w.namespaces)
		checkAllocation(t, w, a)
		applied := a.Apply(w.nodes)
		if next := Allocate(applied, w.namespaces); !reflect.DeepEqual(next.EgressIPs, a.EgressIPs) || len(next.Moved) != 0 {
			t.Fatalf("not a fixed point")
		}
		checkEvaluate(t, 0, w, applied)
	})
}
