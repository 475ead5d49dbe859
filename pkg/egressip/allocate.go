package egressip

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Move is an egress IP taken off an unreachable automatic node.
type Move struct {
	IP   netip.Addr
	From string
	To   string // "" when no other node can take it now
}

// Allocation is what Allocate decided.
type Allocation struct {
	// EgressIPs holds the egressIPs every automatic node should have, sorted
	// (empty for a node that should have none).
	EgressIPs map[string][]netip.Addr
	// Unassigned are allocatable IPs no automatic node can take now, with
	// the reason (naming the nodes considered).
	Unassigned map[netip.Addr]string
	// Moved are the IPs taken off unreachable nodes, by IP.
	Moved []Move
}

// Apply returns a copy of nodes in which every automatic node's EgressIPs
// are the allocation's: the HostSubnets as the controller will write them.
func (a Allocation) Apply(nodes []Node) []Node {
	out := slices.Clone(nodes)
	for i, n := range out {
		if ips, ok := a.EgressIPs[n.Name]; ok {
			out[i].EgressIPs = slices.Clone(ips)
		}
	}
	return out
}

// allocator is the working state of one Allocate call.
type allocator struct {
	req      requests
	autos    []Node                     // automatic nodes, by name
	manual   map[netip.Addr]bool        // IPs listed by manual nodes
	assigned map[string][]netip.Addr    // automatic node -> IPs
	vnidsOn  map[string]map[uint32]bool // automatic node -> VNIDs it hosts an IP of
	placed   map[netip.Addr]string      // IP -> automatic node
}

// Allocate assigns allocatable egress IPs to automatic nodes (see the
// package comment). The result depends only on the content of nodes and
// namespaces, not on their order, and is a fixed point: allocating again on
// Allocation.Apply(nodes) yields the same EgressIPs and no Moved.
func Allocate(nodes []Node, namespaces []Namespace) Allocation {
	a := &allocator{req: newRequests(namespaces), manual: map[netip.Addr]bool{},
		assigned: map[string][]netip.Addr{}, vnidsOn: map[string]map[uint32]bool{}, placed: map[netip.Addr]string{}}
	for _, n := range sortedNodes(nodes) {
		if !n.Automatic() {
			for _, ip := range n.EgressIPs {
				a.manual[ip] = true
			}
			continue
		}
		a.autos = append(a.autos, n)
		a.assigned[n.Name], a.vnidsOn[n.Name] = nil, map[uint32]bool{}
	}
	a.keepValid()
	out := Allocation{EgressIPs: a.assigned, Unassigned: map[netip.Addr]string{}}
	for _, ip := range a.pending() {
		if reason := a.place(ip); reason != "" {
			out.Unassigned[ip] = reason
		}
	}
	for name, ips := range out.EgressIPs {
		out.EgressIPs[name] = sortedAddrs(ips)
	}
	out.Moved = a.moves()
	return out
}

// allocatable returns the VNID owning ip when ip may be assigned
// automatically: exactly one VNID requests it and no manual node lists it.
func (a *allocator) allocatable(ip netip.Addr) (uint32, bool) {
	vnid, ok := a.req.owner(ip)
	return vnid, ok && !a.manual[ip]
}

func (a *allocator) assign(ip netip.Addr, node string, vnid uint32) {
	a.assigned[node] = append(a.assigned[node], ip)
	a.vnidsOn[node][vnid] = true
	a.placed[ip] = node
}

// keepValid keeps every current assignment that is still valid, visiting
// nodes by name and their IPs in address order (so a duplicate is kept on
// the first node, and of two IPs of one VNID on a node the lower).
func (a *allocator) keepValid() {
	for _, n := range a.autos {
		if n.Unreachable {
			continue
		}
		for _, ip := range sortedAddrs(n.EgressIPs) {
			vnid, ok := a.allocatable(ip)
			if !ok || !n.holds(ip) || a.placed[ip] != "" || a.vnidsOn[n.Name][vnid] {
				continue
			}
			a.assign(ip, n.Name, vnid)
		}
	}
}

// pending returns the allocatable IPs not placed yet, those with the fewest
// candidate nodes first, then by address.
func (a *allocator) pending() []netip.Addr {
	var out []netip.Addr
	count := map[netip.Addr]int{}
	for ip := range a.req.vnidsOf {
		if _, ok := a.allocatable(ip); !ok || a.placed[ip] != "" {
			continue
		}
		out = append(out, ip)
		for _, n := range a.autos {
			if !n.Unreachable && n.holds(ip) {
				count[ip]++
			}
		}
	}
	slices.SortFunc(out, func(x, y netip.Addr) int {
		if c := cmp.Compare(count[x], count[y]); c != 0 {
			return c
		}
		return x.Compare(y)
	})
	return out
}

// place puts ip on the least loaded candidate node (ties: name) and returns
// "", or says why no node can take it.
func (a *allocator) place(ip netip.Addr) string {
	vnid, _ := a.allocatable(ip)
	var holding, unreachable, taken []string
	best := ""
	for _, n := range a.autos {
		if !n.holds(ip) {
			continue
		}
		holding = append(holding, n.Name)
		switch {
		case n.Unreachable:
			unreachable = append(unreachable, n.Name)
		case a.vnidsOn[n.Name][vnid]:
			taken = append(taken, n.Name)
		case best == "" || len(a.assigned[n.Name]) < len(a.assigned[best]):
			best = n.Name
		}
	}
	if best != "" {
		a.assign(ip, best, vnid)
		return ""
	}
	return unassignedReason(holding, unreachable, taken)
}

func unassignedReason(holding, unreachable, taken []string) string {
	if len(holding) == 0 {
		return "no node's egressCIDRs hold it"
	}
	var why []string
	if len(unreachable) > 0 {
		why = append(why, fmt.Sprintf("%s unreachable", strings.Join(unreachable, ", ")))
	}
	if len(taken) > 0 {
		why = append(why, fmt.Sprintf("%s already hosting another egress IP of the namespace", strings.Join(taken, ", ")))
	}
	return fmt.Sprintf("every node whose egressCIDRs hold it is excluded (%s)", strings.Join(why, "; "))
}

// moves lists the allocatable IPs that an unreachable node lists, with
// where they went.
func (a *allocator) moves() []Move {
	var out []Move
	for _, n := range a.autos {
		if !n.Unreachable {
			continue
		}
		for _, ip := range n.EgressIPs {
			if _, ok := a.allocatable(ip); ok && a.placed[ip] != n.Name {
				out = append(out, Move{IP: ip, From: n.Name, To: a.placed[ip]})
			}
		}
	}
	slices.SortFunc(out, func(x, y Move) int {
		if c := x.IP.Compare(y.IP); c != 0 {
			return c
		}
		return cmp.Compare(x.From, y.From)
	})
	return out
}
