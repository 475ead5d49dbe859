package pipeline

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// Multicast (SPEC §4.8, reference §7.3). A namespace enables multicast with
// the NetNamespace annotation netnamespace.network.openshift.io/
// multicast-enabled: "true"; a VNID is multicast-enabled when every
// namespace holding it has the annotation (joined projects share a VNID and
// so a group; VNID 0 is no exception). Table 31 sends multicast from local
// pods to 110 and multicast from vxlan0 to 120 (BaseFlows); the host's
// multicast is dropped in table 0. Packets of VNIDs that are not enabled
// end in 110's final drop (sender side) or 120's (receiver side).
//
//	110 MulticastFromLocal  MulticastVNIDFlows: reg0=V → 111, for every
//	                        enabled VNID (on every node, pods or not).
//	111 MulticastToRemote   MulticastRemoteFlow: head-end replication to
//	                        every remote node, VNID in the VXLAN key, → 120.
//	120 MulticastToLocal    MulticastVNIDFlows: reg0=V → each local pod of
//	                        V through PolicyIngress (resubmit), with reg1 =
//	                        V, reg2 = its port, reg3 = its address.
//
// Delivery goes through PolicyIngress rather than straight to the ports, so
// that multicast meets the same ingress decision as unicast: multitenant
// isolation and, in networkpolicy mode, the pod's compiled NetworkPolicy
// ingress (the sender's address, VNID and the UDP port against the
// receiver's policies; reg3 names the receiver, as nw_dst is the group).
// A resubmit per receiver keeps one receiver's drop from ending the
// others' delivery; ovs.ValidatePipeline checks that PolicyIngress never
// continues, so the backward resubmit cannot loop. The sender is skipped
// without a rule of ours: OVS never outputs a packet to its input port, so
// "every local pod of V" is every pod but the sender on the sender's node,
// and every pod on the others (the packet comes in on vxlan0).

// MulticastVNIDFlows returns the flows of one multicast-enabled VNID (owner
// MulticastVNIDOwner(vnid)): the table-110 admission and, when the node has
// local pods of the VNID (receivers, every one with VNID vnid), the
// table-120 delivery to them in ofport order. The caller renders it only
// for enabled VNIDs and only in modes with VNIDs (Isolation.UsesVNIDs).
func MulticastVNIDFlows(c FlowConfig, vnid uint32, receivers []PodInfo) []ovs.Flow {
	flows := []ovs.Flow{
		ovs.NewFlow(ovs.TableMulticastFromLocal, 100).MatchReg(ovs.SrcVNIDField, vnid).
			Action(ovs.Goto(ovs.TableMulticastToRemote)),
	}
	if len(receivers) > 0 {
		pods := slices.SortedFunc(slices.Values(receivers), func(a, b PodInfo) int { return cmp.Compare(a.OFPort, b.OFPort) })
		actions := []ovs.Action{ovs.DstVNIDField.Load(vnid)}
		for _, p := range pods {
			actions = append(actions, ovs.OutPortField.Load(p.OFPort), ovs.DstPodIPField.Load(ovs.IPv4Value(p.IP)),
				ovs.ResubmitTo(ovs.TablePolicyIngress))
		}
		flows = append(flows, ovs.NewFlow(ovs.TableMulticastToLocal, 100).MatchReg(ovs.SrcVNIDField, vnid).Action(actions...))
	}
	return MulticastVNIDOwner(vnid).Stamp(flows)
}

// MulticastRemoteFlow returns the single table-111 flow (owner
// "multicast/remote"): copy the packet to every remote node over VXLAN,
// with the source VNID in the key, then deliver locally in 120. Addresses
// are sorted and deduplicated, so the flow is a pure function of the set.
// With no remote nodes it only continues to 120; the agent installs it
// even then, or local multicast would stop at 111's final drop.
func MulticastRemoteFlow(c FlowConfig, remoteIPs []netip.Addr) ovs.Flow {
	ips := slices.Clone(remoteIPs)
	slices.SortFunc(ips, netip.Addr.Compare)
	ips = slices.Compact(ips)
	var actions []ovs.Action
	if len(ips) > 0 {
		actions = append(actions, ovs.SrcVNIDField.MoveTo(ovs.TunnelKeyField))
	}
	for _, ip := range ips {
		actions = append(actions, ovs.SetTunnelDst(ip), ovs.Output(OFPortVXLAN))
	}
	return ovs.NewFlow(ovs.TableMulticastToRemote, 100).
		WithCookie(OwnerMulticastRemote.Cookie()).
		Action(append(actions, ovs.Goto(ovs.TableMulticastToLocal))...)
}
