package subnet

import (
	"net/netip"
	"testing"
)

// fuzzNetworks derives one or two small, valid, non-overlapping cluster
// networks from the first three bytes of data, so that random operation
// sequences fill ranges and wrap around often.
func fuzzNetworks(b0, b1, b2 byte) []ClusterNetwork {
	network := func(base string, sel, hb byte) ClusterNetwork {
		bits := 22 + int(sel%9) // /22 .. /30
		hostBits := MinHostBits + int(hb)%(32-bits-MinHostBits+1)
		return ClusterNetwork{CIDR: netip.PrefixFrom(netip.MustParseAddr(base), bits), HostBits: hostBits}
	}
	networks := []ClusterNetwork{network("10.128.0.0", b0, b1)}
	if b2&1 != 0 {
		networks = append(networks, network("10.0.0.0", b2>>1, b2>>4))
	}
	return networks
}

// FuzzAllocator runs the operation sequence encoded in data (after three
// bytes selecting the networks) against Allocator and refAllocator: each
// pair of bytes is an operation and a candidate prefix. It checks agreement
// with the reference, no duplicate live allocation, allocations aligned
// inside a range, and Allocated()+Free() constant.
func FuzzAllocator(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{8, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 7, 0x21, 2, 3, 0, 0, 1, 3, 0, 0, 0, 9, 3, 9, 0, 0, 0, 0})
	f.Add([]byte{0, 5, 3, 0, 1, 0, 2, 0, 3, 1, 4, 2, 5, 3, 6, 0, 7, 0, 8, 0, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 3 {
			return
		}
		h, err := newHarness(fuzzNetworks(data[0], data[1], data[2]))
		if err != nil {
			t.Fatalf("fuzzNetworks built invalid networks: %v", err)
		}
		ops := data[3:]
		for i := 0; i+1 < len(ops); i += 2 {
			if err := h.step(opKind(ops[i]), int(ops[i+1])); err != nil {
				t.Fatalf("op %d: %v", i/2, err)
			}
		}
	})
}
