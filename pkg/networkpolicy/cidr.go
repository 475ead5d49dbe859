package networkpolicy

import (
	"fmt"
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
)

// ipBlockPrefixes returns the IPv4 prefixes of cidr minus every except, as
// disjoint prefixes in address order. An IPv6 block matches no IPv4 packet
// and yields none (the pod network is IPv4-only); IPv6 excepts are ignored.
func ipBlockPrefixes(b *networkingv1.IPBlock) ([]netip.Prefix, error) {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return nil, fmt.Errorf("ipBlock cidr: %w", err)
	}
	var excepts []netip.Prefix
	for _, e := range b.Except {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("ipBlock except: %w", err)
		}
		if p.Addr().Is4() {
			excepts = append(excepts, p.Masked())
		}
	}
	if !cidr.Addr().Is4() {
		return nil, nil
	}
	return subtract(cidr.Masked(), excepts, nil), nil
}

// subtract appends p minus excepts to out: p is kept whole when no except
// overlaps it, dropped when one contains it, and otherwise split in halves.
// The result has at most 32 prefixes per except.
func subtract(p netip.Prefix, excepts []netip.Prefix, out []netip.Prefix) []netip.Prefix {
	overlapping := false
	for _, e := range excepts {
		if e.Bits() <= p.Bits() && e.Contains(p.Addr()) {
			return out
		}
		overlapping = overlapping || p.Overlaps(e)
	}
	if !overlapping {
		return append(out, p)
	}
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	hiAddr := prefixSpan(p).lo | 1<<(31-p.Bits())
	hi := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(hiAddr >> 24), byte(hiAddr >> 16), byte(hiAddr >> 8), byte(hiAddr)}), p.Bits()+1)
	return subtract(hi, excepts, subtract(lo, excepts, out))
}
