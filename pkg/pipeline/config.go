package pipeline

import (
	"net/netip"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// PipelineVersion is the version of the flows rendered by this package. It
// is written into the table-253 note (VersionFlow) as the second byte; an
// agent that finds a different note on br0 rebuilds the bridge. Bump it
// whenever BaseFlows or a per-object renderer changes what is installed
// (the golden tests say so when they fail).
//
// It is our own sequence, not OpenShift SDN's rule version (13 = 0x0d, the
// layout we follow). It starts at 0x10, above every rule version OpenShift
// SDN ever wrote (7..14), so a bridge left behind by OpenShift SDN never
// looks current and is always rebuilt.
const PipelineVersion = 0x18

// Bridge and port names of the node's OVS (SPEC §4.1).
const (
	BridgeName = "br0"
	VXLANPort  = "vxlan0"
	Tun0       = "tun0"
)

// Well-known OpenFlow ports of br0 (SPEC §4.1). Pod ports start at 3.
const (
	OFPortVXLAN uint32 = 1 // vxlan0, remote_ip=flow, key=flow
	OFPortTun0  uint32 = 2 // tun0, the node gateway
	// FirstPodOFPort is the lowest ofport a pod port can have.
	FirstPodOFPort uint32 = 3
)

// ProxyMode is how Services are load-balanced (--proxy-mode).
type ProxyMode string

// Proxy modes. The zero value means ProxyOVS.
const (
	// ProxyOVS load-balances Services in br0 (tables 21–24, select groups,
	// conntrack NAT); required on the userspace datapath.
	ProxyOVS ProxyMode = "ovs"
	// ProxyKubeProxy sends service traffic to the host through tun0 for
	// kube-proxy and takes it back DNATed (OpenShift SDN's path; kernel
	// datapath only, where OVS shares the host's conntrack).
	ProxyKubeProxy ProxyMode = "kube-proxy"
)

// Addresses the ovs proxy mode reserves on the host side of tun0 (link-local,
// never on the wire). The host routes the service network and NodePortVIP
// via ServiceGatewayIP, a permanent neighbour with ServiceGatewayMAC on
// tun0, so that its own traffic to Services enters br0 without ARP; and it
// DNATs traffic to a node port on any of its addresses to NodePortVIP
// (keeping the port), which br0 load-balances like a ClusterIP.
var (
	NodePortVIP       = netip.MustParseAddr("169.254.169.3")
	ServiceGatewayIP  = netip.MustParseAddr("169.254.169.4")
	ServiceGatewayMAC = ovs.MAC{0x0a, 0x58, 0xa9, 0xfe, 0xa9, 0x04}
)

// FlowConfig is everything the static pipeline depends on. It is a value;
// the renderers never modify it. All prefixes and addresses are IPv4.
type FlowConfig struct {
	// Mode selects the isolation strategy (Isolation): the flows of tables
	// 27, 30 and 80 and the plugin byte of the version note.
	Mode clusternetwork.Mode
	// ClusterNetworks are the pod CIDRs; non-empty and non-overlapping
	// (clusternetwork.Parse guarantees it).
	ClusterNetworks []netip.Prefix
	// ServiceNetwork is the service CIDR.
	ServiceNetwork netip.Prefix
	// LocalSubnet is this node's HostSubnet; its first address is the
	// gateway on tun0.
	LocalSubnet netip.Prefix
	// NodeIP is the node's primary address (DNS exception in table 99).
	NodeIP netip.Addr
	// VXLANPort is the UDP port of the overlay; pods may not send to it.
	// Zero means the default, 4789.
	VXLANPort uint16
	// ProxyMode selects how Services are load-balanced ("" = ProxyOVS).
	ProxyMode ProxyMode
	// Userspace is set for br0 on the userspace (netdev) datapath, whose
	// conntrack is OVS's own: SCTP replies are then recognised by learned
	// flows (tables 28, 82), not by conntrack, which tracks SCTP there
	// without ports.
	Userspace bool
}

// OVSProxy reports whether Services are load-balanced in br0.
func (c FlowConfig) OVSProxy() bool { return c.ProxyMode != ProxyKubeProxy }

// Gateway returns the node gateway: the first address after the network
// address of LocalSubnet (10.128.0.1 for 10.128.0.0/23).
func (c FlowConfig) Gateway() netip.Addr { return c.LocalSubnet.Masked().Addr().Next() }

// GatewayMAC is tun0's MAC address, derived from the gateway address as a
// pod's is from its IP (the agent sets it): flows that send a packet to the
// host set it as the destination.
func (c FlowConfig) GatewayMAC() ovs.MAC { return PodMAC(c.Gateway()) }

// VXLANPortOrDefault returns VXLANPort, or the default 4789 when it is zero.
func (c FlowConfig) VXLANPortOrDefault() uint16 {
	if c.VXLANPort == 0 {
		return uint16(networkv1.DefaultVXLANPort)
	}
	return c.VXLANPort
}

// Isolation returns the isolation strategy of c.Mode.
func (c FlowConfig) Isolation() Isolation { return IsolationFor(c.Mode) }

// host returns the /32 of a.
func host(a netip.Addr) netip.Prefix { return ovs.HostPrefix(a) }

// withCookie stamps cookie on every flow.
func withCookie(cookie uint64, flows []ovs.Flow) []ovs.Flow {
	for i := range flows {
		flows[i].Cookie = cookie
	}
	return flows
}

// at returns template f at priority p.
func at(f ovs.Flow, p uint16) ovs.Flow { f.Priority = p; return f }
