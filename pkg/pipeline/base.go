package pipeline

import (
	"net/netip"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// BaseFlows returns every static flow of c that does not depend on the
// isolation mode: the flows of tables 0..120 that depend only on the node's
// configuration, and the final priority-0 flow of every table. The mode's
// flows (Isolation.StaticFlows), the table-253 version note (VersionFlow:
// the agent writes it last) and the table-111 replication flow
// (MulticastRemoteFlow) are not included. All flows carry OwnerPipeline's
// cookie. With VersionFlow added the result passes ovs.ValidatePipeline.
func BaseFlows(c FlowConfig) []ovs.Flow {
	var flows []ovs.Flow
	for _, part := range [][]ovs.Flow{
		classifierFlows(c),
		podAntiSpoofFlows(c),
		routingFlows(c),
		serviceFlows(),
		ingressBaseFlows(c),
		egressFlows(c),
		finalFlows(),
	} {
		flows = append(flows, part...)
	}
	return OwnerPipeline.Stamp(flows)
}

// VersionFlow returns the table-253 note "<plugin id>.<PipelineVersion>"
// (e.g. 02.10 for networkpolicy). The agent writes it after everything
// else: its presence with the current value means br0 is complete.
func VersionFlow(c FlowConfig) ovs.Flow {
	return ovs.NewFlow(ovs.TableVersion, 0).
		WithCookie(OwnerVersion.Cookie()).
		Action(ovs.NoteBytes(c.Isolation().PluginID(), PipelineVersion))
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
// VNID 0. Host multicast is dropped first, whatever its source.
// Pod→service traffic DNATed by host iptables comes back with the pod's
// source address and goes to 25 to reload the pod's VNID.
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
		// OpenShift: priority 250, below the gateway's 400, so the host's
		// multicast sent from the gateway address (IGMP reports, mDNS, …)
		// entered VNID 0's group. Above it here: no host multicast at all.
		at(tun0, 460).MatchIPv4().MatchNwDst(multicastNet).Action(ovs.DropAction()),
		at(tun0, 200).MatchIPv4().Action(ovs.Goto(ovs.TableConntrackCommit)),
		at(tun0, 150).Action(ovs.DropAction()),
	)
}

// podAntiSpoofFlows renders the static part of table 20: pods may not send
// VXLAN, which would let them inject traffic with any VNID.
func podAntiSpoofFlows(c FlowConfig) []ovs.Flow {
	return []ovs.Flow{
		ovs.NewFlow(ovs.TablePodAntiSpoof, 300).MatchProto(ovs.ProtoUDP).MatchTpDst(c.VXLANPortOrDefault()).Action(ovs.DropAction()),
	}
}

// routingFlows renders table 31. With --proxy-mode=kube-proxy, replies to
// local pods are un-NATed here (p250) for the host's DNAT: OVS shares the
// kernel's conntrack zone on the kernel datapath. The ovs proxy un-DNATs
// its own connections' replies instead (ServiceProxyFlows).
func routingFlows(c FlowConfig) []ovs.Flow {
	t, gw := ovs.TableRouting, host(c.Gateway())
	flows := []ovs.Flow{
		ovs.NewFlow(t, 300).MatchARP().MatchArpTpa(gw).Action(ovs.Output(OFPortTun0)),
		ovs.NewFlow(t, 300).MatchIPv4().MatchNwDst(gw).Action(ovs.Output(OFPortTun0)),
	}
	if !c.OVSProxy() {
		flows = append(flows, ovs.NewFlow(t, 250).MatchIPv4().MatchNwDst(c.LocalSubnet).MatchCtState(ovs.CtRpl, 0).
			Action(ovs.CTThen(ovs.TableLocalPod, false, true)))
	}
	flows = append(flows,
		ovs.NewFlow(t, 200).MatchARP().MatchArpTpa(c.LocalSubnet).Action(ovs.Goto(ovs.TableARPLocal)),
		ovs.NewFlow(t, 200).MatchIPv4().MatchNwDst(c.LocalSubnet).Action(ovs.Goto(ovs.TableLocalPod)),
		ovs.NewFlow(t, 100).MatchIPv4().MatchNwDst(c.ServiceNetwork).Action(ovs.Goto(ovs.TableServices)),
	)
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

// serviceFlows renders table 60: service traffic goes to the host through
// tun0: kube-proxy's in kube-proxy mode; in ovs mode only traffic to a
// Service without a usable endpoint gets here, and the host rejects it
// (iptables SDN-SERVICES-REJECT), so clients see "connection refused".
func serviceFlows() []ovs.Flow {
	return []ovs.Flow{ovs.NewFlow(ovs.TableServices, 200).Action(ovs.Output(OFPortTun0))}
}

// ingressBaseFlows renders the mode-independent part of table 80: traffic
// from the node itself (kubelet probes) always reaches pods.
func ingressBaseFlows(c FlowConfig) []ovs.Flow {
	return []ovs.Flow{
		ovs.NewFlow(ovs.TablePolicyIngress, 300).MatchIPv4().MatchNwSrc(host(c.Gateway())).Action(c.ingressAllow()),
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
		case ovs.TableServiceLB:
			f = f.Action(ovs.Goto(ovs.TableServiceSNAT))
		case ovs.TableServiceSNAT:
			f = f.Action(ovs.Goto(ovs.TableServicePost))
		case ovs.TableServicePost:
			f = f.Action(ovs.Goto(ovs.TablePolicyEgress))
		case ovs.TableServiceAffinity:
			f = f.Action(ovs.LBStateToSelect.Load())
		case ovs.TableEgressPrelim:
			f = f.Action(ovs.Goto(ovs.TableEgressFirewall))
		case ovs.TableEgressFirewall:
			f = f.Action(ovs.Goto(ovs.TableEgressRouting))
		case ovs.TableEgressRouting:
			f = f.Action(ovs.Output(OFPortTun0))
		case ovs.TableIngressCommit:
			f = f.Action(ovs.OutPortField.Output())
		default:
			f = f.Action(ovs.DropAction())
		}
		flows = append(flows, f)
	}
	return flows
}
