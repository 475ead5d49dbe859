package pipeline

import (
	"net/netip"
	"strconv"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// Egress IPs (SPEC §4.7): a namespace's traffic leaving the cluster gets a
// fixed source address, held by one node per address.
//
// Every node, per VNID that requests egress IPs (owner EgressIPOwner(V)):
//
//	101 p100 ip,reg0=V → drop                (no active egress IP: the
//	                     traffic never leaks out with the node's address)
//	101 p100 ip,reg0=V → ct(commit),group:G  (G = V|EgressGroupBit)
//	group G, one bucket per active egress node:
//	    remote: move reg0→tun_id, tun_dst=<egress node>, output vxlan0
//	    local (this node holds one of the VNID's IPs; then it is the only
//	    bucket): ct(commit,zone=Egress,nat(src=<egress IP>),table=101)
//
// The node that holds egress IPs (owner OwnerEgressIPHost):
//
//	0   p1110 ip,nw_dst=<egress IP>,-trk → ct(zone=Egress,nat,table=0)
//	          (a reply from outside, routed by the host into br0: un-SNAT)
//	    p1040 ct_zone=Egress,+trk → ct(table=0) (then track in zone 0)
//	101 p200  ct_zone=Egress,+trk → eth_dst=tun0's MAC, output tun0
//
// Where OpenShift SDN marks the packet (pkt_mark) and lets the host's
// iptables SNAT it, the SNAT happens here, in br0: the userspace datapath
// hands packets to tun0 through a tap device, which carries no skb mark,
// so a mark set in br0 never reaches iptables there. The host then only
// forwards (the source is not in the cluster network, so nothing
// masquerades it), answers ARP for the egress IP on the node's underlay
// interface (a proxy neighbour entry, gratuitous ARP when claimed), routes
// the address into br0 for the replies, and rejects new inbound
// connections to it (pkg/node host plumbing). ct(commit) in zone 0 before
// the group makes the replies +rpl for the pod's policies, wherever the
// traffic left.
//
// Table 101's p150 (replies → tun0, BaseFlows) stays above all of this:
// replies of connections where the pod is the server leave normally.

// EgressGroupBit marks the group IDs of egress IPs: VNID|EgressGroupBit
// (Service groups stay below it: pkg/proxy MaxID).
const EgressGroupBit uint32 = 1 << 30

// EgressGroupID is the group of vnid's egress IPs.
func EgressGroupID(vnid uint32) uint32 { return vnid | EgressGroupBit }

// EgressNode is one active egress IP of a VNID and where it lives.
type EgressNode struct {
	IP     netip.Addr // the egress IP
	HostIP netip.Addr // the node holding it
	Local  bool       // this node
}

// EgressIPOwner owns the flows and group of one VNID's egress IPs.
func EgressIPOwner(vnid uint32) Owner {
	return Owner{kind: KindEgressIP, key: "egress-ip/" + strconv.FormatUint(uint64(vnid), 10)}
}

// OwnerEgressIPHost owns the flows of the egress IPs this node holds.
var OwnerEgressIPHost = Owner{kind: KindEgressIPHost, key: "egress-ip-host"}

// StageEgressIP is the bands of the egress IP flows.
var StageEgressIP = Stage{Name: "egress IPs", Bands: []Band{
	band(ovs.TableClassifier, 1040, 1040, "egress IP zone"),
	band(ovs.TableClassifier, 1110, 1110, "egress IP un-SNAT"),
	band(ovs.TableEgressRouting, 100, 100, "egress IP per VNID"),
	band(ovs.TableEgressRouting, 200, 200, "egress IP SNATed"),
}}

// EgressIPFlows returns the flows and group of vnid's egress IPs: active
// lists the VNID's active egress IPs (empty: drop its external traffic).
// When one of them is local, the group holds only it. It is pure.
func EgressIPFlows(c FlowConfig, vnid uint32, active []EgressNode) ([]ovs.Flow, []ovs.GroupEntry) {
	owner := EgressIPOwner(vnid)
	match := ovs.NewFlow(ovs.TableEgressRouting, 100).MatchIPv4().MatchReg(ovs.SrcVNIDField, vnid)
	if len(active) == 0 {
		return owner.Stamp([]ovs.Flow{match.Action(ovs.DropAction())}), nil
	}
	var buckets []ovs.Bucket
	for _, n := range active {
		if n.Local {
			buckets = []ovs.Bucket{ovs.NewBucket(1, ovs.CTCommit().WithZone(ovs.EgressZone).WithSNAT(n.IP, 0).
				WithTable(ovs.TableEgressRouting))}
			break
		}
		buckets = append(buckets, ovs.NewBucket(1, ovs.SrcVNIDField.MoveTo(ovs.TunnelKeyField), ovs.SetTunnelDst(n.HostIP),
			ovs.Output(OFPortVXLAN)))
	}
	g := ovs.SelectGroup(EgressGroupID(vnid), buckets...)
	flow := match.Action(ovs.CTCommit(), ovs.GroupAction(g.ID))
	return owner.Stamp([]ovs.Flow{flow}), []ovs.GroupEntry{g}
}

// EgressIPHostFlows returns the flows of the egress IPs this node holds
// (none: no flows). It is pure.
func EgressIPHostFlows(c FlowConfig, hosted []netip.Addr) []ovs.Flow {
	if len(hosted) == 0 {
		return nil
	}
	zone := ovs.EgressZone
	flows := []ovs.Flow{
		ovs.NewFlow(ovs.TableClassifier, 1040).MatchIPv4().MatchCtZone(zone).MatchCtState(ovs.CtTrk, 0).
			Action(ovs.CTThen(ovs.TableClassifier, false, false)),
		ovs.NewFlow(ovs.TableEgressRouting, 200).MatchIPv4().MatchCtZone(zone).MatchCtState(ovs.CtTrk, 0).
			Action(ovs.SetEthernetDst(c.GatewayMAC()), ovs.Output(OFPortTun0)),
	}
	for _, ip := range hosted {
		flows = append(flows, ovs.NewFlow(ovs.TableClassifier, 1110).MatchIPv4().MatchNwDst(host(ip)).MatchCtState(0, ovs.CtTrk).
			Action(ovs.ConnTrack{}.WithZone(zone).WithNAT().WithTable(ovs.TableClassifier)))
	}
	return OwnerEgressIPHost.Stamp(flows)
}
