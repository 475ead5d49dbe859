package subnet

import (
	"errors"
	"net/netip"
)

// refAllocator is a slow, obviously correct model of Allocator used as a
// test oracle. It lists every subnet of every range in allocation order up
// front and scans those lists linearly.
type refAllocator struct {
	ranges []*refRange
}

type refRange struct {
	subnets []netip.Prefix // in allocation order
	used    map[netip.Prefix]bool
	next    int
}

func newRefAllocator(networks []ClusterNetwork) *refAllocator {
	ref := &refAllocator{}
	for _, n := range networks {
		ref.ranges = append(ref.ranges, &refRange{subnets: refOrder(n), used: map[netip.Prefix]bool{}})
	}
	return ref
}

// refOrder lists the node subnets of n in allocation order, computed
// directly from the rule: subnet number k is split into the index bits that
// live in a higher octet than the host bits ("hi", which vary fastest) and
// those that share the octet of the host bits ("lo").
func refOrder(n ClusterNetwork) []netip.Prefix {
	h := n.HostBits
	w := 32 - n.CIDR.Bits() - h
	if w > 24 {
		w = 24
	}
	sameOctet := 8 - h%8 // index bits sharing an octet with the host bits
	split := h%8 != 0 && w > sameOctet
	base := addrToUint32(n.CIDR.Addr())
	var out []netip.Prefix
	for k := uint32(0); k < 1<<w; k++ {
		addr := base + k<<h
		if split {
			hiCount := uint32(1) << (w - sameOctet)
			hi, lo := k%hiCount, k/hiCount
			addr = base + lo<<h + hi<<(h+sameOctet)
		}
		out = append(out, netip.PrefixFrom(uint32ToAddr(addr), 32-h))
	}
	return out
}

func (ref *refAllocator) allocate() (netip.Prefix, error) {
	for _, r := range ref.ranges {
		for k := range r.subnets {
			i := (r.next + k) % len(r.subnets)
			if !r.used[r.subnets[i]] {
				r.used[r.subnets[i]] = true
				r.next = (i + 1) % len(r.subnets)
				return r.subnets[i], nil
			}
		}
	}
	return netip.Prefix{}, ErrExhausted
}

func (ref *refAllocator) find(p netip.Prefix) *refRange {
	for _, r := range ref.ranges {
		for _, s := range r.subnets {
			if s == p {
				return r
			}
		}
	}
	return nil
}

func (ref *refAllocator) mark(p netip.Prefix) error {
	r := ref.find(p)
	switch {
	case r == nil:
		return ErrNotInRange
	case r.used[p]:
		return ErrAlreadyAllocated
	}
	r.used[p] = true
	return nil
}

func (ref *refAllocator) release(p netip.Prefix) error {
	r := ref.find(p)
	if r == nil {
		return ErrNotInRange
	}
	delete(r.used, p)
	return nil
}

func (ref *refAllocator) isAllocated(p netip.Prefix) bool {
	r := ref.find(p)
	return r != nil && r.used[p]
}

func (ref *refAllocator) allocated() int {
	n := 0
	for _, r := range ref.ranges {
		n += len(r.used)
	}
	return n
}

// sameError reports whether got and want (a sentinel or nil) agree.
func sameError(got, want error) bool {
	if want == nil {
		return got == nil
	}
	return errors.Is(got, want)
}
