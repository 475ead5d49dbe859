package pipeline

import (
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// Isolation is the isolation mode (ClusterNetwork.pluginName) as the
// pipeline and the agent see it, in the way openshift/sdn's osdnPolicy is:
// every difference between the modes is a method here, so no other code
// branches on clusternetwork.Mode. Implementations are pure, immutable and
// safe for concurrent use; IsolationFor returns them.
type Isolation interface {
	// Mode is the mode this strategy implements.
	Mode() clusternetwork.Mode
	// PluginID is the plugin byte of the version note (reference §1):
	// 0 subnet, 1 multitenant, 2 networkpolicy.
	PluginID() byte
	// UsesVNIDs reports whether namespaces have their own VNIDs
	// (NetNamespaces); without, every pod carries VNID 0.
	UsesVNIDs() bool
	// PodVNID is the VNID a pod carries in reg0/reg1, given its
	// namespace's VNID.
	PodVNID(namespaceVNID uint32) uint32
	// EnforcesNetworkPolicy reports whether NetworkPolicy is compiled into
	// tables 27 and 80.
	EnforcesNetworkPolicy() bool
	// StaticFlows are the mode's flows that depend on the configuration
	// only (owner OwnerIsolation).
	StaticFlows(c FlowConfig) []ovs.Flow
	// TenantFlows are the flows of one VNID used by a local pod (owner
	// TenantOwner(vnid)); nil when the mode has none.
	TenantFlows(vnid uint32) []ovs.Flow
	// Stage is the bands of StaticFlows and TenantFlows.
	Stage() Stage
}

// IsolationFor returns the strategy of m. An unknown mode gets a strategy
// with no flows and plugin byte 0xff: tables 27 and 80 then drop all pod
// traffic except from the gateway (fail closed), and an agent
// misconfigured so never matches a bridge's version note.
func IsolationFor(m clusternetwork.Mode) Isolation {
	switch m {
	case clusternetwork.ModeSubnet:
		return subnetIsolation{}
	case clusternetwork.ModeMultitenant:
		return multitenantIsolation{}
	case clusternetwork.ModeNetworkPolicy:
		return networkPolicyIsolation{}
	}
	return unknownIsolation{mode: m}
}

var (
	egressTable  = ovs.TablePolicyEgress
	ingressTable = ovs.TablePolicyIngress
	toPod        = ovs.OutPortField.Output()
	toCommit     = ovs.Goto(ovs.TableConntrackCommit)
)

// subnetIsolation is the flat network (reference §5.1): VNID 0 everywhere,
// everything allowed.
type subnetIsolation struct{}

func (subnetIsolation) Mode() clusternetwork.Mode   { return clusternetwork.ModeSubnet }
func (subnetIsolation) PluginID() byte              { return 0 }
func (subnetIsolation) UsesVNIDs() bool             { return false }
func (subnetIsolation) PodVNID(uint32) uint32       { return 0 }
func (subnetIsolation) EnforcesNetworkPolicy() bool { return false }
func (subnetIsolation) TenantFlows(uint32) []ovs.Flow {
	return nil
}

func (subnetIsolation) StaticFlows(FlowConfig) []ovs.Flow {
	return OwnerIsolation.Stamp([]ovs.Flow{
		ovs.NewFlow(egressTable, 500).Action(toCommit),
		ovs.NewFlow(ingressTable, 200).Action(toPod),
	})
}

func (subnetIsolation) Stage() Stage {
	return Stage{Name: "isolation (subnet)", Bands: []Band{
		band(egressTable, 500, 500, "allow all"),
		band(ingressTable, 200, 200, "allow all"),
	}}
}

// multitenantIsolation isolates VNIDs (reference §5.2): VNID 0 ("global")
// reaches and is reached by every VNID; pods of one VNID (one project, or
// joined projects) reach each other through their VNID's tenant rule.
type multitenantIsolation struct{}

func (multitenantIsolation) Mode() clusternetwork.Mode   { return clusternetwork.ModeMultitenant }
func (multitenantIsolation) PluginID() byte              { return 1 }
func (multitenantIsolation) UsesVNIDs() bool             { return true }
func (multitenantIsolation) PodVNID(v uint32) uint32     { return v }
func (multitenantIsolation) EnforcesNetworkPolicy() bool { return false }

// StaticFlows: on the userspace datapath br0's conntrack is its own (the host's entries
// are not shared with it), and the egress firewall (table 100) passes only
// replies it knows (ct_state=+rpl). So there connections are committed in
// zone 0 as in networkpolicy mode, but only those that cross the cluster
// network's edge: traffic from VNID 0 (tun0: the host and everything
// outside) is committed on delivery in IngressCommit (81), and traffic a
// pod sends out of the cluster network is committed in 30, in its own
// direction, so its replies are replies. Pod-to-pod traffic stays
// uncommitted, as on the kernel datapath.
func (multitenantIsolation) StaticFlows(c FlowConfig) []ovs.Flow {
	fromGlobal := toPod
	if c.Userspace {
		fromGlobal = IngressAllow
	}
	flows := []ovs.Flow{
		ovs.NewFlow(egressTable, 500).Action(toCommit),
		ovs.NewFlow(ingressTable, 200).MatchReg(ovs.SrcVNIDField, 0).Action(fromGlobal),
		ovs.NewFlow(ingressTable, 200).MatchReg(ovs.DstVNIDField, 0).Action(toPod),
	}
	if c.Userspace {
		flows = append(flows, edgeCommitFlows(c)...)
	}
	return OwnerIsolation.Stamp(flows)
}

// edgeCommitFlows commit, on the userspace datapath in multitenant mode,
// the connections that cross the cluster network's edge (see
// multitenantIsolation.StaticFlows).
func edgeCommitFlows(c FlowConfig) []ovs.Flow {
	var flows []ovs.Flow
	for _, cn := range c.ClusterNetworks {
		flows = append(flows, ovs.NewFlow(ovs.TableConntrackCommit, 103).MatchIPv4().MatchNwDst(cn).Action(ovs.Goto(ovs.TableRouting)))
	}
	return append(append(flows, commitLeavingFlows(c)...), ingressCommitFlows()...)
}

// ingressCommitFlows commit a packet ingress let in (IngressCommit, 81).
func ingressCommitFlows() []ovs.Flow {
	return []ovs.Flow{
		ovs.NewFlow(ovs.TableIngressCommit, 100).MatchIPv4().MatchCtState(ovs.CtTrk, ovs.CtRpl).Action(ovs.CTCommit(), toPod),
		// A Service connection SNATed to the gateway was committed with its
		// DNAT in ServiceLB; a commit here, in zone 0 after the SNAT zone,
		// would look the translated packet up afresh and create a second
		// entry that steals its replies (as ServicePost avoids for 30).
		ovs.NewFlow(ovs.TableIngressCommit, 105).MatchIPv4().MatchMark(ovs.ServiceSNAT).Action(toPod),
	}
}

// commitLeavingFlows commit, in 30, what a pod sends out of the cluster
// network (userspace datapath only, see networkPolicyIsolation).
func commitLeavingFlows(c FlowConfig) []ovs.Flow {
	var flows []ovs.Flow
	for _, src := range c.ClusterNetworks {
		flows = append(flows, ovs.NewFlow(ovs.TableConntrackCommit, 102).
			MatchIPv4().MatchNwSrc(src).MatchCtState(0, ovs.CtRpl).Action(ovs.CTThen(ovs.TableRouting, true, false)))
	}
	return flows
}

// TenantFlows is table 80, priority 100, reg0=V, reg1=V → output to reg2.
// VNID 0 has none: the reg0=0/reg1=0 rules cover it.
func (multitenantIsolation) TenantFlows(vnid uint32) []ovs.Flow {
	if vnid == 0 {
		return nil
	}
	return TenantOwner(vnid).Stamp([]ovs.Flow{
		ovs.NewFlow(ingressTable, 100).MatchReg(ovs.SrcVNIDField, vnid).MatchReg(ovs.DstVNIDField, vnid).Action(toPod),
	})
}

func (multitenantIsolation) Stage() Stage {
	return Stage{Name: "isolation (multitenant)", Bands: []Band{
		band(egressTable, 500, 500, "allow all"),
		band(ingressTable, 200, 200, "global VNID 0"),
		band(ingressTable, 100, 100, "tenant"),
		band(ovs.TableConntrackCommit, 102, 103, "userspace: commit at the cluster's edge"),
		band(ovs.TableIngressCommit, 100, 105, "userspace: commit at the cluster's edge"),
	}}
}

// networkPolicyIsolation enforces Kubernetes NetworkPolicy (reference §6.2):
// egress is checked after DNAT (service traffic passes 27 and is checked
// when it comes back through 25), replies of allowed connections always
// pass, and pod-network-internal connections are committed in 30 so that
// replies are recognised. Only traffic between cluster CIDRs is committed:
// traffic leaving the pod network must still meet host iptables untracked
// by us. Everything else of tables 27 and 80 is the compiler's
// (StageNetworkPolicy).
type networkPolicyIsolation struct{}

func (networkPolicyIsolation) Mode() clusternetwork.Mode     { return clusternetwork.ModeNetworkPolicy }
func (networkPolicyIsolation) PluginID() byte                { return 2 }
func (networkPolicyIsolation) UsesVNIDs() bool               { return true }
func (networkPolicyIsolation) PodVNID(v uint32) uint32       { return v }
func (networkPolicyIsolation) EnforcesNetworkPolicy() bool   { return true }
func (networkPolicyIsolation) TenantFlows(uint32) []ovs.Flow { return nil }

// Commit after the decision. A connection is committed on each node only
// after the policy of that node decided: on the sending node in 30, after
// egress (27); on the receiving node in IngressCommit (81), after ingress
// (80), which is why 30 passes traffic to a local pod uncommitted (p110)
// and every ingress allow goes through 81 (IngressAllow). Committing in 30
// for local delivery, as OpenShift SDN does, left an entry for a packet
// ingress then dropped, and the reverse direction passed as its "reply".
//
// SCTP on the userspace datapath. OVS 3.1's own conntrack tracks SCTP
// without ports, so any SCTP B → A would pass as a reply of an allowed
// A → B. There SCTP is never committed; instead every SCTP packet leaving
// a pod (30, p105) learns its reverse 5-tuple into PolicyIngressReplies
// (82), every one delivered (81, p110) into PolicyEgressReplies (28) and
// 82, and 27/80 (p205) look an SCTP packet up there first: found, it
// passes as a reply (p206); not found, it meets the policies like a new
// association. A learned flow lives while packets use it (idle timeout
// sctpReplyIdle).
func (networkPolicyIsolation) StaticFlows(c FlowConfig) []ovs.Flow {
	flows := []ovs.Flow{
		ovs.NewFlow(egressTable, 300).MatchIPv4().MatchNwDst(c.ServiceNetwork).Action(toCommit),
		ovs.NewFlow(egressTable, 200).MatchIPv4().MatchCtState(ovs.CtRpl, 0).Action(toCommit),
		ovs.NewFlow(ingressTable, 200).MatchIPv4().MatchCtState(ovs.CtRpl, 0).Action(toPod),
		ovs.NewFlow(ovs.TableConntrackCommit, 110).MatchIPv4().MatchNwDst(c.LocalSubnet).Action(ovs.Goto(ovs.TableRouting)),
	}
	flows = append(flows, ingressCommitFlows()...)
	for _, src := range c.ClusterNetworks {
		for _, dst := range c.ClusterNetworks {
			flows = append(flows, ovs.NewFlow(ovs.TableConntrackCommit, 100).
				MatchIPv4().MatchNwSrc(src).MatchNwDst(dst).MatchCtState(0, ovs.CtRpl).
				Action(ovs.CTThen(ovs.TableRouting, true, false)))
		}
	}
	if c.Userspace {
		// br0's conntrack is its own: connections leaving the cluster are
		// committed too, or their replies (un-masqueraded by the host) would
		// meet ingress policy as new connections. (On the kernel datapath
		// the host's conntrack entry, shared with OVS, makes them replies;
		// committing before the host's MASQUERADE would break it.)
		flows = append(flows, commitLeavingFlows(c)...)
		flows = append(flows, sctpReplyFlows()...)
	}
	return OwnerIsolation.Stamp(flows)
}

// sctpReplyIdle is how long a learned SCTP reply flow outlives its last
// use: above SCTP's default heartbeat interval (30 s), so an idle
// association keeps it.
const sctpReplyIdle = 300

// sctpReplyFlows are the userspace datapath's SCTP reply flows (see
// networkPolicyIsolation).
func sctpReplyFlows() []ovs.Flow {
	sctp := func(t ovs.Table, p uint16) ovs.Flow { return ovs.NewFlow(t, p).MatchProto(ovs.ProtoSCTP) }
	reverseInto := func(t ovs.Table, ok ovs.Mark) ovs.Learn {
		return ovs.NewLearn(t, 100).WithIdleTimeout(sctpReplyIdle).WithCookie(ovs.CookieFor(ovs.CookieLearned, "sctp-replies")).
			MatchProto(ovs.ProtoSCTP).MatchFrom(ovs.FieldIPSrc, ovs.FieldIPDst).MatchFrom(ovs.FieldIPDst, ovs.FieldIPSrc).
			MatchFrom(ovs.FieldSCTPSrc, ovs.FieldSCTPDst).MatchFrom(ovs.FieldSCTPDst, ovs.FieldSCTPSrc).LoadMark(ok)
	}
	return []ovs.Flow{
		sctp(ovs.TableConntrackCommit, 105).
			Action(reverseInto(ovs.TablePolicyIngressReplies, ovs.IngressReplyOK), ovs.Goto(ovs.TableRouting)),
		sctp(ovs.TableIngressCommit, 110).
			Action(reverseInto(ovs.TablePolicyEgressReplies, ovs.EgressReplyOK),
				reverseInto(ovs.TablePolicyIngressReplies, ovs.IngressReplyOK), toPod),
		sctp(egressTable, 205).MatchMark(ovs.EgressRepliesChecked.Field.Value(0)).
			Action(ovs.EgressRepliesChecked.Load(), ovs.ResubmitTo(ovs.TablePolicyEgressReplies), ovs.ResubmitTo(egressTable)),
		sctp(egressTable, 206).MatchMark(ovs.EgressReplyOK).Action(toCommit),
		sctp(ingressTable, 205).MatchMark(ovs.IngressRepliesChecked.Field.Value(0)).
			Action(ovs.IngressRepliesChecked.Load(), ovs.ResubmitTo(ovs.TablePolicyIngressReplies), ovs.ResubmitTo(ingressTable)),
		sctp(ingressTable, 206).MatchMark(ovs.IngressReplyOK).Action(toPod),
	}
}

func (networkPolicyIsolation) Stage() Stage {
	return Stage{Name: "isolation (networkpolicy)", Bands: []Band{
		band(egressTable, 300, 300, "services"),
		band(egressTable, 205, 206, "SCTP replies"),
		band(egressTable, 200, 200, "replies"),
		band(ingressTable, 205, 206, "SCTP replies"),
		band(ingressTable, 200, 200, "replies"),
		band(ovs.TableConntrackCommit, 100, 110, "commit"),
		band(ovs.TableIngressCommit, 100, 110, "commit"),
	}}
}

// IngressAllow is the action of every flow of table 80 that lets a packet
// in, in networkpolicy mode: commit it, then deliver it (81).
var IngressAllow = ovs.Goto(ovs.TableIngressCommit)

// ingressAllow is the delivery action of table 80 for c's mode.
func (c FlowConfig) ingressAllow() ovs.Action {
	if c.Isolation().EnforcesNetworkPolicy() {
		return IngressAllow
	}
	return toPod
}

// unknownIsolation renders nothing (see IsolationFor).
type unknownIsolation struct{ mode clusternetwork.Mode }

func (u unknownIsolation) Mode() clusternetwork.Mode       { return u.mode }
func (unknownIsolation) PluginID() byte                    { return 0xff }
func (unknownIsolation) UsesVNIDs() bool                   { return true }
func (unknownIsolation) PodVNID(v uint32) uint32           { return v }
func (unknownIsolation) EnforcesNetworkPolicy() bool       { return false }
func (unknownIsolation) StaticFlows(FlowConfig) []ovs.Flow { return nil }
func (unknownIsolation) TenantFlows(uint32) []ovs.Flow     { return nil }
func (unknownIsolation) Stage() Stage                      { return Stage{Name: "isolation (unknown mode)"} }

// PolicyAllowAllFlows is what OpenShift's p50 per-namespace allows
// collapse to when NetworkPolicy is not enforced: table 27 and 80 p50 "ip
// → pass", owned by OwnerPolicyAllowAll. The agent installs it only in
// networkpolicy mode without a Kubernetes client (labs and tests that have
// no Pods/Namespaces/NetworkPolicies), and logs that policies are not
// enforced. The compiled flows (p60 and up) would still win over it for
// every namespace with local pods.
func PolicyAllowAllFlows() []ovs.Flow {
	return OwnerPolicyAllowAll.Stamp([]ovs.Flow{
		ovs.NewFlow(egressTable, 50).MatchIPv4().Action(toCommit),
		ovs.NewFlow(ingressTable, 50).MatchIPv4().Action(IngressAllow),
	})
}
