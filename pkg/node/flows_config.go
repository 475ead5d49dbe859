package node

import (
	"fmt"
	"net/netip"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// PipelineVersion is the version of the flows rendered by the flows_*.go
// files. It is written into the table-253 note (VersionFlow) as the second
// byte; an agent that finds a different note on br0 rebuilds the bridge.
// Bump it whenever BaseFlows or a per-object renderer changes what is
// installed (the golden tests say so when they fail).
//
// It is our own sequence, not OpenShift SDN's rule version (13 = 0x0d, the
// layout we follow). It starts at 0x10, above every rule version OpenShift
// SDN ever wrote (7..14), so a bridge left behind by OpenShift SDN never
// looks current and is always rebuilt.
const PipelineVersion = 0x11

// Well-known OpenFlow ports of br0 (SPEC §4.1). Pod ports start at 3.
const (
	OFPortVXLAN uint32 = 1 // vxlan0, remote_ip=flow, key=flow
	OFPortTun0  uint32 = 2 // tun0, the node gateway
)

// Owner keys of the agent's flow store. Every flow rendered here carries the
// cookie of its owner (ovs.CookieFor(category, key)), so the store's keys
// and the cookies on br0 name the same owners:
//
//	"pipeline"          BaseFlows                    CookiePipeline
//	"version"           VersionFlow (written last)   CookiePipeline
//	"multicast/remote"  MulticastRemoteFlow          CookieMulticast
//	"pod/<ns>/<name>"   PodFlows                     CookiePod
//	"node/<name>"       RemoteNodeFlows              CookieNode, but keyed by the HostSubnet UID
//	"vnid/<id>"         TenantFlows (decimal id)     CookieNamespace
//
// Remote-node cookies hash the HostSubnet UID rather than the owner key, as
// OpenShift SDN did (origin PR #19080): when a node is deleted and
// re-created under the same name, the old object's flows can be deleted by
// cookie without touching the new one's.
const (
	OwnerPipeline        = "pipeline"
	OwnerVersion         = "version"
	OwnerMulticastRemote = "multicast/remote"
)

// PodOwner returns the owner key "pod/<ns>/<name>".
func PodOwner(namespace, name string) string { return "pod/" + namespace + "/" + name }

// NodeOwner returns the owner key "node/<name>" of a remote node.
func NodeOwner(name string) string { return "node/" + name }

// VNIDOwner returns the owner key "vnid/<id>" (decimal).
func VNIDOwner(vnid uint32) string { return fmt.Sprintf("vnid/%d", vnid) }

// FlowConfig is everything the static pipeline depends on. It is a value;
// the renderers never modify it. All prefixes and addresses are IPv4.
type FlowConfig struct {
	// Mode selects the isolation flows (tables 27, 30, 80) and the plugin
	// byte of the version note.
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
	// TunMAC is tun0's mac_in_use. It is not used yet: OpenShift SDN needed
	// it for the table-10 flows that rewrite eth_dst during an SDN→OVN
	// live migration (we never migrate, so those flows are omitted) and
	// for local egress-IP buckets (not implemented). The zero value is fine.
	TunMAC ovs.MAC
	// VXLANPort is the UDP port of the overlay; pods may not send to it.
	// Zero means the default, 4789.
	VXLANPort uint16
}

// Gateway returns the node gateway: the first address after the network
// address of LocalSubnet (10.128.0.1 for 10.128.0.0/23).
func (c FlowConfig) Gateway() netip.Addr { return c.LocalSubnet.Masked().Addr().Next() }

// vxlanPort returns VXLANPort or the default.
func (c FlowConfig) vxlanPort() uint16 {
	if c.VXLANPort == 0 {
		return uint16(networkv1.DefaultVXLANPort)
	}
	return c.VXLANPort
}

// PluginID returns the plugin byte of the version note (reference §1):
// 0 subnet, 1 multitenant, 2 networkpolicy; 0xff for an unknown mode, so
// that an agent misconfigured with an unknown mode never matches a bridge.
func (c FlowConfig) PluginID() byte {
	switch c.Mode {
	case clusternetwork.ModeSubnet:
		return 0
	case clusternetwork.ModeMultitenant:
		return 1
	case clusternetwork.ModeNetworkPolicy:
		return 2
	}
	return 0xff
}

// host returns the /32 of a.
func host(a netip.Addr) netip.Prefix { return ovs.HostPrefix(a) }

// withCookie stamps cookie on every flow.
func withCookie(cookie uint64, flows []ovs.Flow) []ovs.Flow {
	for i := range flows {
		flows[i].Cookie = cookie
	}
	return flows
}
