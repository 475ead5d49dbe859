package pipeline

import (
	"net/netip"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// RemoteNode is another node's HostSubnet as the pipeline sees it.
type RemoteNode struct {
	// Name is the node (HostSubnet) name; UID the HostSubnet's UID, which
	// keys the cookie (NodeOwner). An empty UID falls back to the owner key
	// "node/<name>".
	Name, UID string
	HostIP    netip.Addr
	Subnet    netip.Prefix
	// FixedVNID, from the HostSubnet annotation
	// pod.network.openshift.io/fixed-vnid-host (F5 and other external
	// hosts), replaces the source VNID in the VXLAN key to that node.
	FixedVNID *uint32
}

// RemoteNodeFlows returns the three flows of one remote node (owner
// "node/<name>"): table 10 admits VXLAN from its HostIP; tables 50 and 90
// tunnel ARP and IP for its subnet to it, with the source VNID (or the
// node's fixed VNID) in the VXLAN key.
func RemoteNodeFlows(c FlowConfig, n RemoteNode) []ovs.Flow {
	tunnel := append(tunnelKeyActions(n.FixedVNID), ovs.SetTunnelDst(n.HostIP), ovs.Output(OFPortVXLAN))
	flows := []ovs.Flow{
		ovs.NewFlow(ovs.TableVXLANIngress, 100).MatchTunSrc(n.HostIP).Action(ovs.Goto(ovs.TableConntrackCommit)),
		ovs.NewFlow(ovs.TableARPRemote, 100).MatchARP().MatchArpTpa(n.Subnet).Action(tunnel...),
		ovs.NewFlow(ovs.TableRemotePod, 100).MatchIPv4().MatchNwDst(n.Subnet).Action(tunnel...),
	}
	return n.Owner().Stamp(flows)
}

// Owner is the owner of the node's flows; the cookie hashes the HostSubnet
// UID (reference §2, origin PR #19080).
func (n RemoteNode) Owner() Owner { return NodeOwner(n.Name, n.UID) }

// tunnelKeyActions puts the source VNID, or fixed, into the VXLAN key.
// pkg/ovs cannot load a constant into tun_id, so a fixed VNID goes through
// reg0; reg0 is not read again after the output that follows.
func tunnelKeyActions(fixed *uint32) []ovs.Action {
	if fixed == nil {
		return []ovs.Action{ovs.SrcVNIDField.MoveTo(ovs.TunnelKeyField)}
	}
	return []ovs.Action{ovs.SrcVNIDField.Load(*fixed), ovs.SrcVNIDField.MoveTo(ovs.TunnelKeyField)}
}
