package subnet

import (
	"fmt"
	"net/netip"
)

// opKind is one operation of a random operation sequence.
type opKind uint8

const (
	opAllocate opKind = iota
	opRelease
	opMark
	opIsAllocated
	numOps
)

// harness drives an Allocator and a refAllocator with the same operations
// and checks after each one that they agree and that the invariants hold.
type harness struct {
	a          *Allocator
	ref        *refAllocator
	networks   []ClusterNetwork
	candidates []netip.Prefix // every node subnet plus some foreign prefixes
	live       map[netip.Prefix]bool
	total      int
}

func newHarness(networks []ClusterNetwork) (*harness, error) {
	a, err := NewAllocator(networks)
	if err != nil {
		return nil, err
	}
	h := &harness{a: a, ref: newRefAllocator(networks), networks: networks, live: map[netip.Prefix]bool{}}
	for _, r := range h.ref.ranges {
		h.candidates = append(h.candidates, r.subnets...)
	}
	h.total = len(h.candidates)
	h.candidates = append(h.candidates, foreignPrefixes(networks)...)
	return h, nil
}

// foreignPrefixes returns prefixes near the networks that are not node
// subnets: misaligned, too big, too small, and just outside.
func foreignPrefixes(networks []ClusterNetwork) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range networks {
		first := netip.PrefixFrom(n.CIDR.Addr(), 32-n.HostBits)
		out = append(out,
			netip.PrefixFrom(n.CIDR.Addr().Next(), 32-n.HostBits), // misaligned
			netip.PrefixFrom(n.CIDR.Addr(), 33-n.HostBits),        // too small
			n.CIDR, // the whole network (too big unless one subnet)
			netip.PrefixFrom(lastAddr(n.CIDR).Next(), 32-n.HostBits).Masked(),
			netip.PrefixFrom(netip.AddrFrom16(first.Addr().As16()), first.Bits()+96), // IPv4-mapped
			netip.Prefix{},
		)
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	v := addrToUint32(p.Addr()) | (1<<(32-p.Bits()) - 1)
	return uint32ToAddr(v)
}

// step applies operation op to candidate number arg (modulo the candidate
// count) and returns an error describing the first disagreement with the
// reference or broken invariant.
func (h *harness) step(op opKind, arg int) error {
	p := h.candidates[arg%len(h.candidates)]
	var err error
	switch op % numOps {
	case opAllocate:
		err = h.checkAllocate()
	case opRelease:
		err = h.checkErr("Release", p, h.a.Release(p), h.ref.release(p))
		delete(h.live, p)
	case opMark:
		err = h.checkErr("MarkAllocated", p, h.a.MarkAllocated(p), h.ref.mark(p))
		if h.a.IsAllocated(p) {
			h.live[p] = true
		}
	case opIsAllocated:
		if got, want := h.a.IsAllocated(p), h.ref.isAllocated(p); got != want {
			err = fmt.Errorf("IsAllocated(%s) = %v, reference %v", p, got, want)
		}
	}
	if err != nil {
		return err
	}
	return h.checkCounts()
}

func (h *harness) checkAllocate() error {
	got, err := h.a.Allocate()
	want, wantErr := h.ref.allocate()
	if !sameError(err, wantErr) || got != want {
		return fmt.Errorf("Allocate() = %s, %v; reference %s, %v", got, err, want, wantErr)
	}
	if err != nil {
		return nil
	}
	if h.live[got] {
		return fmt.Errorf("Allocate() returned %s, which is already allocated", got)
	}
	h.live[got] = true
	return h.checkInside(got)
}

// checkInside verifies p is aligned, of the node subnet size, and inside
// one of the networks.
func (h *harness) checkInside(p netip.Prefix) error {
	for _, n := range h.networks {
		if n.CIDR.Contains(p.Addr()) && p.Bits() == 32-n.HostBits && p.Masked() == p {
			return nil
		}
	}
	return fmt.Errorf("allocated %s is not an aligned node subnet of %v", p, h.networks)
}

func (h *harness) checkErr(op string, p netip.Prefix, got, want error) error {
	if !sameError(got, want) {
		return fmt.Errorf("%s(%s) = %v, reference %v", op, p, got, want)
	}
	return nil
}

func (h *harness) checkCounts() error {
	allocated, free := h.a.Allocated(), h.a.Free()
	switch {
	case allocated+free != h.total:
		return fmt.Errorf("Allocated()+Free() = %d+%d, want %d", allocated, free, h.total)
	case allocated != h.ref.allocated():
		return fmt.Errorf("Allocated() = %d, reference %d", allocated, h.ref.allocated())
	case allocated != len(h.live):
		return fmt.Errorf("Allocated() = %d, but %d subnets live", allocated, len(h.live))
	}
	return nil
}
