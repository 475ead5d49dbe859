// Package subnet allocates per-node pod subnets out of the cluster networks
// listed in ClusterNetwork "default".
//
// The Allocator is a pure, in-memory, mutex-guarded type. It holds no
// persistent state: the HostSubnet objects in the API server are the record
// of what is allocated, and the sdn-controller rebuilds an Allocator at start
// by calling MarkAllocated for the subnet of every existing HostSubnet before
// it allocates anything new.
//
// # Allocation order
//
// Each cluster network is a range of node subnets. A node subnet has
// HostBits host bits, so its prefix length is 32-HostBits, and the bits of
// the address between the cluster prefix and the host bits are the subnet
// index. Ranges are tried in the order they were given; within a range the
// allocator is next-fit with wrap-around: it remembers where the previous
// allocation ended and continues from there, so a released subnet is handed
// out again only after the range has wrapped around. This keeps a subnet
// that was just freed (and whose old routes and flows may still linger on
// other nodes) out of use for as long as possible.
//
// The index is not placed into the address verbatim. When HostBits is not a
// multiple of 8 and the index bits straddle an octet boundary, the index is
// rotated left by the number of index bits that share an octet with the host
// bits (8 - HostBits%8). The effect is that consecutive allocations first
// vary the higher octet, which keeps subnets easy to tell apart when read as
// dotted quads. For 10.128.0.0/14 with 9 host bits the order is
//
//	10.128.0.0/23, 10.129.0.0/23, 10.130.0.0/23, 10.131.0.0/23,
//	10.128.2.0/23, 10.129.2.0/23, ...
//
// instead of 10.128.0.0/23, 10.128.2.0/23, 10.128.4.0/23, .... When HostBits
// is a multiple of 8, or all index bits fit in the octet of the host bits,
// the index is used unchanged (10.0.0.0/16 with 8 host bits gives
// 10.0.0.0/24, 10.0.1.0/24, ...). This matches OpenShift SDN, so clusters
// allocate subnets in the order their operators are used to.
//
// A range holds at most 2^24 subnets: when a cluster network has more than
// 24 index bits, only the 2^24 subnets with the lowest addresses (the low 24
// index bits) are used.
package subnet
