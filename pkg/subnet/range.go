package subnet

import (
	"encoding/binary"
	"net/netip"

	"github.com/ovs-sdn/ovs-sdn/pkg/bitmap"
)

// subnetRange is the set of node subnets of one cluster network. Subnets are
// numbered by index 0..size-1 in allocation order; see the package comment
// for how an index maps to an address. Not concurrency-safe.
type subnetRange struct {
	network   ClusterNetwork
	base      uint32        // network address of network.CIDR
	indexBits int           // width of the subnet index, at most maxIndexBits
	rotate    int           // left rotation applied to the index; 0 for none
	used      bitmap.Bitmap // indexes currently allocated
	allocated int           // number of bits set in used
	next      uint32        // index where the next-fit scan starts
}

// newRange builds the range of a network that passed Validate.
func newRange(n ClusterNetwork) *subnetRange {
	indexBits := min(32-n.CIDR.Bits()-n.HostBits, maxIndexBits)
	r := &subnetRange{
		network:   n,
		base:      addrToUint32(n.CIDR.Addr()),
		indexBits: indexBits,
		rotate:    rotation(n.HostBits, indexBits),
	}
	r.used = bitmap.New(r.size())
	return r
}

// rotation returns how far the subnet index is rotated left: by the number
// of index bits that share an octet with the host bits, but only when the
// index also has bits in a higher octet. Rotating makes those higher-octet
// bits the least significant ones of the index, so they vary first.
func rotation(hostBits, indexBits int) int {
	lowOctetBits := 8 - hostBits%8
	if lowOctetBits == 8 || indexBits <= lowOctetBits {
		return 0
	}
	return lowOctetBits
}

// size returns the number of subnets in the range.
func (r *subnetRange) size() uint32 { return 1 << r.indexBits }

// prefixLen returns the prefix length of each node subnet.
func (r *subnetRange) prefixLen() int { return 32 - r.network.HostBits }

// prefixAt returns the node subnet with index i < size().
func (r *subnetRange) prefixAt(i uint32) netip.Prefix {
	offset := rotateLeft(i, r.rotate, r.indexBits) << r.network.HostBits
	return netip.PrefixFrom(uint32ToAddr(r.base|offset), r.prefixLen())
}

// indexOf returns the index of node subnet p, or false if p is not exactly
// one of the subnets of this range.
func (r *subnetRange) indexOf(p netip.Prefix) (uint32, bool) {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() != r.prefixLen() || p.Masked() != p ||
		!r.network.CIDR.Contains(p.Addr()) {
		return 0, false
	}
	offset := (addrToUint32(p.Addr()) - r.base) >> r.network.HostBits
	if offset >= r.size() {
		return 0, false // beyond the 2^24-subnet cap
	}
	return rotateLeft(offset, r.indexBits-r.rotate, r.indexBits), true
}

// allocate takes the first free index at or after next, wrapping around
// once, and advances next past it. It returns false if the range is full.
func (r *subnetRange) allocate() (netip.Prefix, bool) {
	if r.allocated == int(r.size()) {
		return netip.Prefix{}, false
	}
	i, ok := r.used.NextClear(r.next, r.size())
	if !ok {
		i, _ = r.used.NextClear(0, r.next) // not full, so a free index exists
	}
	r.mark(i)
	r.next = (i + 1) % r.size()
	return r.prefixAt(i), true
}

// mark sets index i, which must be free.
func (r *subnetRange) mark(i uint32) {
	r.used.Set(i)
	r.allocated++
}

// release clears index i; it is a no-op if i is free.
func (r *subnetRange) release(i uint32) {
	if r.used.Get(i) {
		r.used.Clear(i)
		r.allocated--
	}
}

// rotateLeft rotates the low width bits of x left by k (0 <= k <= width).
// Bits of x at or above width must be zero.
func rotateLeft(x uint32, k, width int) uint32 {
	wide := uint64(x)
	mask := uint64(1)<<width - 1
	return uint32((wide<<k | wide>>(width-k)) & mask)
}

func addrToUint32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func uint32ToAddr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
