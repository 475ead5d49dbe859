package egressip

import (
	"cmp"
	"net/netip"
	"slices"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

// Node is one HostSubnet as egress IP assignment sees it.
type Node struct {
	// Name is the HostSubnet's name (the node's name).
	Name string
	// HostIP is the node's underlay address, where its egress IPs live and
	// where other nodes tunnel a namespace's external traffic.
	HostIP netip.Addr
	// EgressIPs are the HostSubnet's egressIPs as stored, sorted.
	EgressIPs []netip.Addr
	// EgressCIDRs, when not empty, make the node automatic: the controller
	// owns EgressIPs and assigns from these ranges.
	EgressCIDRs []netip.Prefix
	// Unreachable is true when the controller's health check found the
	// node down (the egress-unreachable annotation).
	Unreachable bool
}

// Automatic reports whether the controller assigns the node's egress IPs.
func (n Node) Automatic() bool { return len(n.EgressCIDRs) > 0 }

// holds reports whether one of n's egressCIDRs contains ip.
func (n Node) holds(ip netip.Addr) bool {
	for _, p := range n.EgressCIDRs {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Namespace is one NetNamespace's request.
type Namespace struct {
	Name string
	VNID uint32
	// EgressIPs are the requested IPs in the order given.
	EgressIPs []netip.Addr
}

// FromAPI converts HostSubnets and NetNamespaces, skipping what cannot be
// parsed (the CRDs refuse non-IPv4 egress IPs and CIDRs; an invalid hostIP
// makes a node unusable for egress, so it is left out). Both results are
// sorted by name and every address list is deduplicated.
func FromAPI(hss []*networkv1.HostSubnet, netnss []*networkv1.NetNamespace) ([]Node, []Namespace) {
	nodes := make([]Node, 0, len(hss))
	for _, hs := range hss {
		ip, err := netip.ParseAddr(hs.HostIP)
		if err != nil || !ip.Is4() {
			continue
		}
		n := Node{Name: hs.Name, HostIP: ip, EgressIPs: sortedAddrs(parseAddrs(hs.EgressIPs))}
		for _, s := range hs.EgressCIDRs {
			if p, err := netip.ParsePrefix(string(s)); err == nil && p.Addr().Is4() {
				n.EgressCIDRs = append(n.EgressCIDRs, p.Masked())
			}
		}
		_, n.Unreachable = hs.Annotations[networkv1.EgressUnreachableAnnotation]
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	namespaces := make([]Namespace, 0, len(netnss))
	for _, nn := range netnss {
		if ips := parseAddrs(nn.EgressIPs); len(ips) > 0 {
			namespaces = append(namespaces, Namespace{Name: nn.Name, VNID: nn.NetID, EgressIPs: ips})
		}
	}
	slices.SortFunc(namespaces, func(a, b Namespace) int { return cmp.Compare(a.Name, b.Name) })
	return nodes, namespaces
}

// parseAddrs parses IPv4 addresses, keeping the first of duplicates, in order.
func parseAddrs[S ~string](in []S) []netip.Addr {
	var out []netip.Addr
	for _, s := range in {
		if a, err := netip.ParseAddr(string(s)); err == nil && a.Is4() && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func sortedAddrs(in []netip.Addr) []netip.Addr {
	out := slices.Clone(in)
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// requests is what the namespaces ask for, merged per VNID.
type requests struct {
	byVNID  map[uint32][]netip.Addr // in namespace-name order, then request order
	names   map[uint32][]string     // namespaces of each VNID, sorted
	vnidsOf map[netip.Addr][]uint32 // requesting VNIDs of each IP, sorted
	nsOf    map[netip.Addr][]string // requesting namespaces of each IP, sorted
}

func newRequests(namespaces []Namespace) requests {
	sorted := slices.Clone(namespaces)
	slices.SortFunc(sorted, func(a, b Namespace) int { return cmp.Compare(a.Name, b.Name) })
	r := requests{byVNID: map[uint32][]netip.Addr{}, names: map[uint32][]string{},
		vnidsOf: map[netip.Addr][]uint32{}, nsOf: map[netip.Addr][]string{}}
	for _, ns := range sorted {
		r.names[ns.VNID] = append(r.names[ns.VNID], ns.Name)
		for _, ip := range ns.EgressIPs {
			if !slices.Contains(r.byVNID[ns.VNID], ip) {
				r.byVNID[ns.VNID] = append(r.byVNID[ns.VNID], ip)
			}
			if !slices.Contains(r.vnidsOf[ip], ns.VNID) {
				r.vnidsOf[ip] = append(r.vnidsOf[ip], ns.VNID)
				slices.Sort(r.vnidsOf[ip])
			}
			r.nsOf[ip] = append(r.nsOf[ip], ns.Name)
		}
	}
	return r
}

// owner returns the one VNID requesting ip, or false when none or several do.
func (r requests) owner(ip netip.Addr) (uint32, bool) {
	v := r.vnidsOf[ip]
	if len(v) != 1 {
		return 0, false
	}
	return v[0], true
}
