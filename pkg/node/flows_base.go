package node

import (
	"net/netip"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// The node pipeline, as rendered by the flows_*.go files
// ====================================================
//
// br0 runs the OpenShift SDN rule-version-13 table layout (reference §3.1);
// the tables are declared and described once in pkg/ovs/tables.go, the
// registers in pkg/ovs/fields.go (reg0 source VNID, reg1 destination VNID,
// reg2 output port; tun_id[0..31] carries reg0 between nodes). This comment
// says which renderer fills which table and where we differ from OpenShift.
// Every renderer here is pure: config and objects in, []ovs.Flow out, each
// flow stamped with its owner's cookie (owner keys: flows_config.go).
//
//	0   Classifier     BaseFlows. ct(table=0) for untracked IP in every mode
//	                   (OpenShift did it in every mode too; our userspace
//	                   datapath has its own conntrack, which is what we want:
//	                   the state stays in OVS). vxlan0 (port 1): cluster
//	                   sources/destinations load reg0 from tun_id → 10;
//	                   tun0 (port 2): gateway → 30, DNATed pod→service
//	                   traffic → 25, multicast dropped, other IP and
//	                   gateway ARP → 30; anything else IP/ARP → 20.
//	10  VXLANIngress   RemoteNodeFlows: tun_src of each known node → 30.
//	                   OpenShift's p210/p200 eth_dst rewrites exist only for
//	                   an SDN→OVN live migration; we never migrate, so they
//	                   are omitted (FlowConfig.TunMAC is unused for now).
//	20  PodAntiSpoof   BaseFlows: pods may not emit VXLAN (udp to the VXLAN
//	                   port, p300). PodFlows: in_port+IP (and ARP spa+sha)
//	                   load reg0 = pod VNID; IP → 27, ARP → 30.
//	25  ServiceReturn  PodFlows: reload reg0 by pod source IP → 27.
//	27  PolicyEgress   modeFlows (below): subnet/multitenant p500 allow.
//	                   networkpolicy p300 services, p200 replies; compiled
//	                   policy p60..p195 (policy.go, pkg/networkpolicy).
//	30  ConntrackCommit networkpolicy: ct(commit,table=31) for every
//	                   (cluster CIDR, cluster CIDR) pair, -rpl.
//	31  Routing        BaseFlows: gateway, local (40/70), replies ct(nat)
//	                   → 70, remote (50/90), services (60), multicast
//	                   (110/120), other IP → 99.
//	40  ARPLocal       PodFlows: ARP for a pod IP → its port.
//	50  ARPRemote      RemoteNodeFlows: ARP for a node subnet → VXLAN.
//	60  Services       BaseFlows: everything → tun0 (SPEC §4.5).
//	70  LocalPod       PodFlows: reg1 = VNID, reg2 = ofport → 80.
//	80  PolicyIngress  BaseFlows p300: the gateway always passes (kubelet
//	                   probes). modeFlows: subnet p200 all; multitenant
//	                   p200 reg0=0 / reg1=0, TenantFlows p100 reg0=reg1=V;
//	                   networkpolicy p200 replies; compiled policy
//	                   p60..p195 (policy.go, pkg/networkpolicy).
//	90  RemotePod      RemoteNodeFlows: IP for a node subnet → VXLAN.
//	99  EgressPrelim   BaseFlows: DNS to the node IP → tun0.
//	100 EgressFirewall nothing yet (EgressNetworkPolicy is a later issue).
//	101 EgressRouting  BaseFlows: replies → tun0; egress IP is a later issue.
//	110 MulticastFromLocal  nothing yet (multicast VNIDs: later issue).
//	111 MulticastToRemote   MulticastRemoteFlow: head-end replication.
//	120 MulticastToLocal    nothing yet.
//	253 Version        VersionFlow: note <plugin>.<PipelineVersion>,
//	                   written last by the agent.
//
// Final flows. SPEC §4.1 demands an explicit priority-0 drop at the end of
// every table; pkg/ovs.ValidatePipeline checks that every table has a
// priority-0 flow with an empty match. Where OpenShift's priority-0 flow is
// a continuation rather than a drop — 30 → goto 31, 99 → goto 100,
// 100 → goto 101, 101 → output:tun0 — we keep it: it IS the table's final
// catch-all, explicit and counted in n_packets, and adding a drop below it
// would be unreachable (OVS forbids two flows with the same empty match at
// one priority anyway). Where OpenShift had no final flow (60, 111) or a
// split one, we add or normalize an explicit drop:
//   - 60: OpenShift's p200 catch-all output:2 stays; we add p0 drop (never
//     hit, but the table now ends like every other one).
//   - 31: OpenShift's p0 "ip → 99" and p0 "arp → drop" become p1 "ip → 99"
//     and p0 drop (same behaviour, one empty-match final flow).
//   - 111: the p100 flow is owned by MulticastRemoteFlow ("multicast/remote"
//     owner, rewritten when nodes come and go); BaseFlows adds the p0 drop.
//
// Other intended differences from reference §3.1 / seeds 003:
//   - The fixed-VNID tunnel load (HostSubnet annotation fixed-vnid-host) is
//     rendered as load:<n>->reg0, move:reg0->tun_id instead of
//     load:<n>->NXM_NX_TUN_ID[0..31]: pkg/ovs has no load into the tunnel
//     key. reg0 is dead after that flow's output, so behaviour is the same.
//   - udp_dst=<port> is printed tp_dst=<port> (what OVS dumps back too).
//   - The table-253 note flow has priority 0 (OpenShift used the default);
//     the note bytes are <plugin id>.<PipelineVersion>, padded by OVS.
//   - TenantFlows renders nothing for VNID 0, which the p200 reg0=0/reg1=0
//     rules already cover.
//
// NetworkPolicy (networkpolicy mode): OpenShift installs per-namespace p50
// allows (reg0=V / reg1=V) from its policy plugin. Here the compiler
// (pkg/networkpolicy, realized by policy.go) owns tables 27 and 80 below
// the static p300/p200 flows: per namespace with local pods, p60 default
// (allow, or drop when isolated) up to p195 allows. BaseFlows has no
// allow-all (it had a p50 placeholder up to pipeline version 0x10);
// PolicyAllowAllFlows exists only for agents run without a Kubernetes
// client.

// BaseFlows returns every static flow of c: the flows of tables 0..120
// that depend only on the node's configuration, the mode's isolation flows,
// and the final priority-0 flow of every table. The table-253 version note
// is not included (VersionFlow: the agent writes it last) and neither is
// the table-111 replication flow (MulticastRemoteFlow). All flows carry the
// "pipeline" owner's cookie. The result passes ovs.ValidatePipeline once
// VersionFlow is added.
func BaseFlows(c FlowConfig) []ovs.Flow {
	var flows []ovs.Flow
	for _, part := range [][]ovs.Flow{
		classifierFlows(c),
		podAntiSpoofFlows(c),
		routingFlows(c),
		serviceFlows(),
		ingressBaseFlows(c),
		egressFlows(c),
		modeFlows(c),
		finalFlows(),
	} {
		flows = append(flows, part...)
	}
	return withCookie(ovs.CookieFor(ovs.CookiePipeline, OwnerPipeline), flows)
}

// VersionFlow returns the table-253 note "<plugin id>.<PipelineVersion>"
// (e.g. 02.10 for networkpolicy). The agent writes it after everything
// else: its presence with the current value means br0 is complete.
func VersionFlow(c FlowConfig) ovs.Flow {
	return ovs.NewFlow(ovs.TableVersion, 0).
		WithCookie(ovs.CookieFor(ovs.CookiePipeline, OwnerVersion)).
		Action(ovs.NoteBytes(c.PluginID(), PipelineVersion))
}

// multicastNet is 224.0.0.0/4.
var multicastNet = netip.MustParsePrefix("224.0.0.0/4")

// classifierFlows renders table 0: conntrack first, then by in_port.
func classifierFlows(c FlowConfig) []ovs.Flow {
	t := ovs.TableClassifier
	flows := []ovs.Flow{
		ovs.NewFlow(t, 1000).MatchIPv4().MatchCtState(0, ovs.CtTrk).Action(ovs.CTThen(t, false, false)),
	}
	flows = append(flows, fromVXLANFlows(c)...)
	flows = append(flows, fromTun0Flows(c)...)
	return append(flows,
		ovs.NewFlow(t, 100).MatchARP().Action(ovs.Goto(ovs.TablePodAntiSpoof)),
		ovs.NewFlow(t, 100).MatchIPv4().Action(ovs.Goto(ovs.TablePodAntiSpoof)),
	)
}

// fromVXLANFlows admits overlay traffic of the cluster networks and loads
// the source VNID from the VXLAN key; other VXLAN traffic is dropped.
func fromVXLANFlows(c FlowConfig) []ovs.Flow {
	vxlan := ovs.NewFlow(ovs.TableClassifier, 200).MatchInPort(OFPortVXLAN)
	admit := []ovs.Action{ovs.TunnelKeyField.MoveTo(ovs.SrcVNIDField), ovs.Goto(ovs.TableVXLANIngress)}
	var flows []ovs.Flow
	for _, cn := range c.ClusterNetworks {
		flows = append(flows,
			vxlan.MatchARP().MatchArpSpa(cn).MatchArpTpa(c.LocalSubnet).Action(admit...),
			vxlan.MatchIPv4().MatchNwSrc(cn).Action(admit...),
			vxlan.MatchIPv4().MatchNwDst(cn).Action(admit...),
		)
	}
	return append(flows, at(vxlan, 150).Action(ovs.DropAction()))
}

// fromTun0Flows classifies host traffic. It keeps reg0 = 0: the host is
// VNID 0. Pod→service traffic DNATed by host iptables comes back with the
// pod's source address and goes to 25 to reload the pod's VNID.
func fromTun0Flows(c FlowConfig) []ovs.Flow {
	tun0, gw := ovs.NewFlow(ovs.TableClassifier, 0).MatchInPort(OFPortTun0), host(c.Gateway())
	flows := []ovs.Flow{
		at(tun0, 400).MatchIPv4().MatchNwSrc(gw).Action(ovs.Goto(ovs.TableConntrackCommit)),
	}
	for _, cn := range c.ClusterNetworks {
		flows = append(flows,
			at(tun0, 300).MatchIPv4().MatchNwSrc(c.LocalSubnet).MatchNwDst(cn).Action(ovs.Goto(ovs.TableServiceReturn)),
			at(tun0, 200).MatchARP().MatchArpSpa(gw).MatchArpTpa(cn).Action(ovs.Goto(ovs.TableConntrackCommit)),
		)
	}
	return append(flows,
		at(tun0, 250).MatchIPv4().MatchNwDst(multicastNet).Action(ovs.DropAction()),
		at(tun0, 200).MatchIPv4().Action(ovs.Goto(ovs.TableConntrackCommit)),
		at(tun0, 150).Action(ovs.DropAction()),
	)
}

// at returns template f at priority p.
func at(f ovs.Flow, p uint16) ovs.Flow { f.Priority = p; return f }

// podAntiSpoofFlows renders the static part of table 20: pods may not send
// VXLAN, which would let them inject traffic with any VNID.
func podAntiSpoofFlows(c FlowConfig) []ovs.Flow {
	return []ovs.Flow{
		ovs.NewFlow(ovs.TablePodAntiSpoof, 300).MatchProto(ovs.ProtoUDP).MatchTpDst(c.vxlanPort()).Action(ovs.DropAction()),
	}
}

// routingFlows renders table 31.
func routingFlows(c FlowConfig) []ovs.Flow {
	t, gw := ovs.TableRouting, host(c.Gateway())
	flows := []ovs.Flow{
		ovs.NewFlow(t, 300).MatchARP().MatchArpTpa(gw).Action(ovs.Output(OFPortTun0)),
		ovs.NewFlow(t, 300).MatchIPv4().MatchNwDst(gw).Action(ovs.Output(OFPortTun0)),
		ovs.NewFlow(t, 250).MatchIPv4().MatchNwDst(c.LocalSubnet).MatchCtState(ovs.CtRpl, 0).
			Action(ovs.CTThen(ovs.TableLocalPod, false, true)),
		ovs.NewFlow(t, 200).MatchARP().MatchArpTpa(c.LocalSubnet).Action(ovs.Goto(ovs.TableARPLocal)),
		ovs.NewFlow(t, 200).MatchIPv4().MatchNwDst(c.LocalSubnet).Action(ovs.Goto(ovs.TableLocalPod)),
		ovs.NewFlow(t, 100).MatchIPv4().MatchNwDst(c.ServiceNetwork).Action(ovs.Goto(ovs.TableServices)),
	}
	for _, cn := range c.ClusterNetworks {
		flows = append(flows,
			ovs.NewFlow(t, 100).MatchARP().MatchArpTpa(cn).Action(ovs.Goto(ovs.TableARPRemote)),
			ovs.NewFlow(t, 100).MatchIPv4().MatchNwDst(cn).Action(ovs.Goto(ovs.TableRemotePod)),
		)
	}
	return append(flows,
		ovs.NewFlow(t, 50).MatchInPort(OFPortVXLAN).MatchIPv4().MatchNwDst(multicastNet).Action(ovs.Goto(ovs.TableMulticastToLocal)),
		ovs.NewFlow(t, 25).MatchIPv4().MatchNwDst(multicastNet).Action(ovs.Goto(ovs.TableMulticastFromLocal)),
		// OpenShift: priority 0 "ip → 99" next to priority 0 "arp → drop";
		// here priority 1, so that priority 0 is the table's single final drop.
		ovs.NewFlow(t, 1).MatchIPv4().Action(ovs.Goto(ovs.TableEgressPrelim)),
	)
}

// serviceFlows renders table 60: service traffic goes to the host's
// kube-proxy through tun0 (SPEC §4.5).
func serviceFlows() []ovs.Flow {
	return []ovs.Flow{ovs.NewFlow(ovs.TableServices, 200).Action(ovs.Output(OFPortTun0))}
}

// ingressBaseFlows renders the mode-independent part of table 80: traffic
// from the node itself (kubelet probes) always reaches pods.
func ingressBaseFlows(c FlowConfig) []ovs.Flow {
	return []ovs.Flow{
		ovs.NewFlow(ovs.TablePolicyIngress, 300).MatchIPv4().MatchNwSrc(host(c.Gateway())).Action(ovs.OutPortField.Output()),
	}
}

// egressFlows renders the static parts of tables 99 and 101.
func egressFlows(c FlowConfig) []ovs.Flow {
	node := host(c.NodeIP)
	return []ovs.Flow{
		ovs.NewFlow(ovs.TableEgressPrelim, 200).MatchProto(ovs.ProtoTCP).MatchNwDst(node).MatchTpDst(53).Action(ovs.Output(OFPortTun0)),
		ovs.NewFlow(ovs.TableEgressPrelim, 200).MatchProto(ovs.ProtoUDP).MatchNwDst(node).MatchTpDst(53).Action(ovs.Output(OFPortTun0)),
		ovs.NewFlow(ovs.TableEgressRouting, 150).MatchCtState(ovs.CtRpl, 0).Action(ovs.Output(OFPortTun0)),
	}
}

// finalFlows returns the priority-0 flow of every table except Version:
// an explicit drop, or the documented continuation (see the essay above).
func finalFlows() []ovs.Flow {
	var flows []ovs.Flow
	for _, t := range ovs.Tables {
		f := ovs.NewFlow(t, 0)
		switch t {
		case ovs.TableVersion:
			continue
		case ovs.TableConntrackCommit:
			f = f.Action(ovs.Goto(ovs.TableRouting))
		case ovs.TableEgressPrelim:
			f = f.Action(ovs.Goto(ovs.TableEgressFirewall))
		case ovs.TableEgressFirewall:
			f = f.Action(ovs.Goto(ovs.TableEgressRouting))
		case ovs.TableEgressRouting:
			f = f.Action(ovs.Output(OFPortTun0))
		default:
			f = f.Action(ovs.DropAction())
		}
		flows = append(flows, f)
	}
	return flows
}
