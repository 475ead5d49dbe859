package subnet

import (
	"errors"
	"fmt"
	"net/netip"
)

// Errors returned by this package. Callers branch on them with errors.Is; the
// returned errors wrap them with the offending value.
var (
	// ErrInvalidNetwork reports a ClusterNetwork that cannot be used.
	ErrInvalidNetwork = errors.New("invalid cluster network")
	// ErrExhausted reports that every subnet of every range is allocated.
	ErrExhausted = errors.New("no free node subnet left")
	// ErrNotInRange reports a prefix that is not one of the node subnets of
	// any cluster network: outside every range, of the wrong size, not
	// aligned, or beyond the 2^24-subnet cap of its range.
	ErrNotInRange = errors.New("prefix is not a node subnet of any cluster network")
	// ErrAlreadyAllocated reports marking a subnet that is already
	// allocated. Callers rebuilding state may ignore it.
	ErrAlreadyAllocated = errors.New("node subnet already allocated")
)

// Limits on ClusterNetwork.HostBits (hostSubnetLength in the API).
const (
	MinHostBits = 2
	MaxHostBits = 30
)

// maxIndexBits caps the number of subnets in one range at 2^maxIndexBits.
const maxIndexBits = 24

// ClusterNetwork is one entry of ClusterNetwork.clusterNetworks: a pod CIDR
// and the number of host bits of each node subnet carved out of it. The node
// subnet prefix length is 32-HostBits. The zero value is invalid.
type ClusterNetwork struct {
	CIDR     netip.Prefix
	HostBits int
}

// String returns "CIDR/hostBits=N", e.g. "10.128.0.0/14 hostBits=9".
func (n ClusterNetwork) String() string {
	return fmt.Sprintf("%s hostBits=%d", n.CIDR, n.HostBits)
}

// Validate reports whether n can be used on its own: an IPv4 (not
// IPv4-mapped IPv6), masked prefix, MinHostBits <= HostBits <= MaxHostBits,
// and room for at least one node subnet (HostBits <= 32 - prefix length).
// The error wraps ErrInvalidNetwork.
func (n ClusterNetwork) Validate() error {
	switch {
	case !n.CIDR.IsValid():
		return fmt.Errorf("%w: CIDR is not a valid prefix", ErrInvalidNetwork)
	case !n.CIDR.Addr().Is4():
		return fmt.Errorf("%w: CIDR %s is not IPv4", ErrInvalidNetwork, n.CIDR)
	case n.CIDR.Masked() != n.CIDR:
		return fmt.Errorf("%w: CIDR %s has host bits set (want %s)", ErrInvalidNetwork, n.CIDR, n.CIDR.Masked())
	case n.HostBits < MinHostBits || n.HostBits > MaxHostBits:
		return fmt.Errorf("%w: hostBits %d not in [%d, %d]", ErrInvalidNetwork, n.HostBits, MinHostBits, MaxHostBits)
	case n.HostBits > 32-n.CIDR.Bits():
		return fmt.Errorf("%w: hostBits %d exceeds the %d bits of CIDR %s", ErrInvalidNetwork, n.HostBits, 32-n.CIDR.Bits(), n.CIDR)
	}
	return nil
}

// ValidateNetworks checks every entry with ClusterNetwork.Validate and that
// no two entries overlap. It requires at least one entry. Errors wrap
// ErrInvalidNetwork and name the offending entry by index and value, as
// "clusterNetworks[i] (...)".
func ValidateNetworks(networks []ClusterNetwork) error {
	if len(networks) == 0 {
		return fmt.Errorf("%w: no cluster networks", ErrInvalidNetwork)
	}
	for i, n := range networks {
		if err := n.Validate(); err != nil {
			return fmt.Errorf("clusterNetworks[%d] (%s): %w", i, n, err)
		}
	}
	for i, n := range networks {
		for j := range i {
			if n.CIDR.Overlaps(networks[j].CIDR) {
				return fmt.Errorf("clusterNetworks[%d] (%s) overlaps clusterNetworks[%d] (%s): %w",
					i, n, j, networks[j], ErrInvalidNetwork)
			}
		}
	}
	return nil
}
