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
const PipelineVersion = 0x13

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
}

// Gateway returns the node gateway: the first address after the network
// address of LocalSubnet (10.128.0.1 for 10.128.0.0/23).
func (c FlowConfig) Gateway() netip.Addr { return c.LocalSubnet.Masked().Addr().Next() }

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
