package ovs

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// TunnelNeighbor is one entry of ovs-vswitchd's tunnel-neighbour cache
// (userspace datapath): the MAC that VXLAN packets towards IP get when they
// leave through Bridge. `ovs-appctl tnl/neigh/set BRIDGE IP MAC` writes
// one; OVS also learns them by snooping ARP replies through the bridge.
// OVS 3.1 ages every entry, written or learnt, after 15 minutes in which no
// packet used it (Stale: expired, not yet removed), and has no command to
// delete one entry (only tnl/neigh/flush, all of them).
type TunnelNeighbor struct {
	IP     netip.Addr
	MAC    net.HardwareAddr
	Bridge string
	Stale  bool
}

// SetArgs returns the arguments of the tnl/neigh/set command writing n.
func (n TunnelNeighbor) SetArgs() []string {
	return []string{n.Bridge, n.IP.String(), n.MAC.String()}
}

// ParseTunnelNeighbors parses the output of `ovs-appctl tnl/neigh/show`:
//
//	IP                                            MAC                 Bridge
//	==========================================================================
//	198.18.0.12                                   ae:1f:60:6c:1b:4e   br-phy
//	198.18.0.13                                   6a:f5:1a:1c:ab:40   br-phy STALE
func ParseTunnelNeighbors(out string) ([]TunnelNeighbor, error) {
	var ns []TunnelNeighbor
	for i, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "IP" || strings.HasPrefix(f[0], "====") {
			continue
		}
		if len(f) < 3 || len(f) > 4 || (len(f) == 4 && f[3] != "STALE") {
			return nil, fmt.Errorf("tnl/neigh/show line %d: unexpected %q", i+1, line)
		}
		ip, err := netip.ParseAddr(f[0])
		if err != nil {
			return nil, fmt.Errorf("tnl/neigh/show line %d: %w", i+1, err)
		}
		mac, err := net.ParseMAC(f[1])
		if err != nil {
			return nil, fmt.Errorf("tnl/neigh/show line %d: %w", i+1, err)
		}
		ns = append(ns, TunnelNeighbor{IP: ip.Unmap(), MAC: mac, Bridge: f[2], Stale: len(f) == 4})
	}
	return ns, nil
}
