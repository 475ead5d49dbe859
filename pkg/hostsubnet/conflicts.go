// Package hostsubnet decides, deterministically, which HostSubnets are in
// conflict and which one of each conflicting pair the network uses. The
// sdn-controller marks the losers (annotation
// network.ovs-sdn.io/conflict, networkv1.HostSubnetConflictAnnotation, and a
// Warning Event); every node agent ignores them. Both call Resolve on their
// own cache, so they agree without waiting for each other's writes.
//
// # Rule
//
// Two HostSubnets conflict when their subnets overlap or they have the same
// hostIP: a node routes a subnet to exactly one tunnel endpoint and accepts
// VXLAN from a hostIP for exactly one node. HostSubnets are taken in a total
// order — older first (creationTimestamp), then by name — and each one is
// kept unless it conflicts with one already kept; a HostSubnet that does is a
// loser and is then treated as absent. So the result does not depend on the
// order objects were listed or arrived in, an agent restart changes nothing,
// and the oldest owner of a subnet or hostIP keeps it. A loser never blocks a
// younger object: with A ⊂ B overlapping, B younger, and C overlapping only B,
// A and C are kept.
//
// Only HostSubnets with a valid IPv4 hostIP and a valid IPv4 subnet that the
// eligible predicate accepts take part (agents route nothing else): a pending
// assign-subnet HostSubnet with an empty subnet, or one whose subnet is not
// a node subnet of the cluster networks, can make no other object lose.
package hostsubnet

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

// Reason says why a HostSubnet lost.
type Reason string

// Reasons, in the order they are checked: a HostSubnet that conflicts both
// ways is reported with SubnetOverlap.
const (
	// SubnetOverlap: the subnet overlaps the subnet of an older HostSubnet.
	SubnetOverlap Reason = "SubnetOverlap"
	// DuplicateHostIP: an older HostSubnet has the same hostIP.
	DuplicateHostIP Reason = "DuplicateHostIP"
)

// Conflict describes one losing HostSubnet.
type Conflict struct {
	// Name is the losing HostSubnet; Winner the older one it conflicts
	// with (the oldest kept one when it conflicts with several).
	Name, Winner string
	Reason       Reason
	// Subnet and WinnerSubnet are the two overlapping subnets
	// (SubnetOverlap); HostIP is the shared hostIP (DuplicateHostIP).
	Subnet, WinnerSubnet netip.Prefix
	HostIP               netip.Addr
}

// Message explains the conflict to an operator, naming both objects, e.g.
// "subnet 10.128.0.0/23 overlaps subnet 10.128.0.0/23 of the older
// HostSubnet node-1; every node ignores this HostSubnet until the conflict
// is removed".
func (c Conflict) Message() string {
	var what string
	switch c.Reason {
	case SubnetOverlap:
		what = fmt.Sprintf("subnet %s overlaps subnet %s of the older HostSubnet %s", c.Subnet, c.WinnerSubnet, c.Winner)
	default:
		what = fmt.Sprintf("hostIP %s is also the hostIP of the older HostSubnet %s", c.HostIP, c.Winner)
	}
	return what + "; every node ignores this HostSubnet until the conflict is removed"
}

// Older reports whether a comes before b in the total order of Resolve:
// an earlier creationTimestamp, or the same one and a smaller name.
func Older(a, b *networkv1.HostSubnet) bool { return compare(a, b) < 0 }

func compare(a, b *networkv1.HostSubnet) int {
	if c := a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

// Resolve returns the losing HostSubnets of hss, by name. eligible, when
// not nil, limits which subnets take part (agents and the controller pass
// clusternetwork.Config.ContainsNodeSubnet); nil accepts every valid IPv4
// subnet. hss is not modified; names are assumed unique (HostSubnets are
// cluster-scoped). The result is the same for any order of hss. Cost
// O(n log n).
func Resolve(hss []*networkv1.HostSubnet, eligible func(netip.Prefix) bool) map[string]Conflict {
	cands := candidates(hss, eligible)
	slices.SortFunc(cands, func(a, b candidate) int { return compare(a.hs, b.hs) })
	losers := map[string]Conflict{}
	var kept keptSubnets
	byHostIP := map[netip.Addr]candidate{}
	for _, c := range cands {
		if w, ok := kept.overlapping(c.subnet); ok {
			losers[c.hs.Name] = Conflict{Name: c.hs.Name, Winner: w.hs.Name, Reason: SubnetOverlap, Subnet: c.subnet, WinnerSubnet: w.subnet}
			continue
		}
		if w, ok := byHostIP[c.hostIP]; ok {
			losers[c.hs.Name] = Conflict{Name: c.hs.Name, Winner: w.hs.Name, Reason: DuplicateHostIP, HostIP: c.hostIP}
			continue
		}
		kept.insert(c)
		byHostIP[c.hostIP] = c
	}
	return losers
}

// candidate is a HostSubnet that takes part, with its parsed fields.
type candidate struct {
	hs     *networkv1.HostSubnet
	subnet netip.Prefix
	hostIP netip.Addr
}

func candidates(hss []*networkv1.HostSubnet, eligible func(netip.Prefix) bool) []candidate {
	out := make([]candidate, 0, len(hss))
	for _, hs := range hss {
		p, err := netip.ParsePrefix(hs.Subnet)
		if err != nil || !p.Addr().Is4() || (eligible != nil && !eligible(p)) {
			continue
		}
		ip, err := netip.ParseAddr(hs.HostIP)
		if err != nil || !ip.Is4() {
			continue
		}
		out = append(out, candidate{hs: hs, subnet: p.Masked(), hostIP: ip})
	}
	return out
}

// keptSubnets indexes the kept subnets for overlap queries. Two IPv4
// prefixes overlap iff one contains the other, so a prefix p overlaps a kept
// subnet iff a kept subnet is p or one of p's ancestors (exact lookups, one
// per prefix length), or a kept subnet lies strictly inside p (below holds,
// for every ancestor of a kept subnet, the oldest kept subnet under it).
// Query and insertion cost at most 33 map operations each.
type keptSubnets struct {
	list  []candidate
	exact map[uint64]int // prefix key -> index in list
	below map[uint64]int // prefix key -> smallest index of a kept subnet strictly inside
}

// overlapping returns the oldest kept candidate whose subnet overlaps p.
func (k *keptSubnets) overlapping(p netip.Prefix) (candidate, bool) {
	best := -1
	consider := func(i int, ok bool) {
		if ok && (best < 0 || i < best) {
			best = i
		}
	}
	for bits := 0; bits <= p.Bits(); bits++ {
		i, ok := k.exact[prefixKey(p, bits)]
		consider(i, ok)
	}
	i, ok := k.below[prefixKey(p, p.Bits())]
	consider(i, ok)
	if best < 0 {
		return candidate{}, false
	}
	return k.list[best], true
}

// insert records c; candidates are inserted oldest first, so an index
// already recorded in below is always the older one.
func (k *keptSubnets) insert(c candidate) {
	if k.exact == nil {
		k.exact, k.below = map[uint64]int{}, map[uint64]int{}
	}
	i := len(k.list)
	k.list = append(k.list, c)
	k.exact[prefixKey(c.subnet, c.subnet.Bits())] = i
	for bits := 0; bits < c.subnet.Bits(); bits++ {
		key := prefixKey(c.subnet, bits)
		if _, ok := k.below[key]; !ok {
			k.below[key] = i
		}
	}
}

// prefixKey identifies the IPv4 prefix of length bits containing p.
func prefixKey(p netip.Prefix, bits int) uint64 {
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	if bits < 32 {
		v &^= uint32(1)<<(32-bits) - 1
	}
	return uint64(v)<<8 | uint64(bits)
}
