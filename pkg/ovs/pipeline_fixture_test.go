package ovs_test

import (
	"net/netip"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// A small hand-written rule-version-13 pipeline for one node, used by the
// tracer, fake, golden and round-trip tests. It uses every match and action
// kind the package supports.
var (
	clusterCIDR = netip.MustParsePrefix("10.128.0.0/14")
	localSubnet = netip.MustParsePrefix("10.128.0.0/23")
	serviceCIDR = netip.MustParsePrefix("172.30.0.0/16")
	multicast   = netip.MustParsePrefix("224.0.0.0/4")
	gateway     = netip.MustParseAddr("10.128.0.1")
	remoteNode  = netip.MustParseAddr("192.168.1.2")
	remoteNet   = netip.MustParsePrefix("10.129.0.0/23")
	nodeIP      = netip.MustParseAddr("192.168.1.1")
	tunMAC      = MAC{0x0a, 0x58, 0x0a, 0x80, 0x00, 0x01}
	nodeMAC     = MAC{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
)

const (
	vxlanPort = 1
	tun0Port  = 2
)

type testPod struct {
	ip   netip.Addr
	port uint32
	vnid uint32
}

var (
	podA = testPod{netip.MustParseAddr("10.128.0.5"), 3, 5}
	podB = testPod{netip.MustParseAddr("10.128.0.6"), 4, 6}
	podC = testPod{netip.MustParseAddr("10.128.0.7"), 5, 0}
)

func host(a netip.Addr) netip.Prefix { return HostPrefix(a) }

func finalDrops() []Flow {
	var flows []Flow
	for _, t := range Tables {
		switch t {
		case TableVersion:
		case TableConntrackCommit:
			flows = append(flows, NewFlow(t, 0).Action(Goto(TableRouting)))
		case TableEgressPrelim:
			flows = append(flows, NewFlow(t, 0).Action(Goto(TableEgressFirewall)))
		case TableEgressFirewall:
			flows = append(flows, NewFlow(t, 0).Action(Goto(TableEgressRouting)))
		case TableEgressRouting:
			flows = append(flows, NewFlow(t, 0).Action(Output(tun0Port)))
		default:
			flows = append(flows, NewFlow(t, 0).Action(DropAction()))
		}
	}
	return flows
}

func baseFlows() []Flow {
	c := CookieFor(CookiePipeline, "base")
	flows := []Flow{
		NewFlow(TableClassifier, 1000).MatchIPv4().MatchCtState(0, CtTrk).Action(CTThen(TableClassifier, false, false)),
		NewFlow(TableClassifier, 200).MatchInPort(vxlanPort).MatchARP().MatchArpSpa(clusterCIDR).MatchArpTpa(localSubnet).
			Action(TunnelKeyField.MoveTo(SrcVNIDField), Goto(TableVXLANIngress)),
		NewFlow(TableClassifier, 200).MatchInPort(vxlanPort).MatchIPv4().MatchNwSrc(clusterCIDR).
			Action(TunnelKeyField.MoveTo(SrcVNIDField), Goto(TableVXLANIngress)),
		NewFlow(TableClassifier, 150).MatchInPort(vxlanPort).Action(DropAction()),
		NewFlow(TableClassifier, 400).MatchInPort(tun0Port).MatchIPv4().MatchNwSrc(host(gateway)).Action(Goto(TableConntrackCommit)),
		NewFlow(TableClassifier, 250).MatchInPort(tun0Port).MatchIPv4().MatchNwDst(multicast).Action(DropAction()),
		NewFlow(TableClassifier, 100).MatchIPv4().Action(Goto(TablePodAntiSpoof)),
		NewFlow(TableClassifier, 100).MatchARP().Action(Goto(TablePodAntiSpoof)),
		NewFlow(TableVXLANIngress, 210).MatchIPv4().MatchNwDst(host(gateway)).With(EthDst(nodeMAC)).
			Action(SetEthernetDst(tunMAC), ResubmitTo(TableVXLANIngress)),
		NewFlow(TablePodAntiSpoof, 300).MatchProto(ProtoUDP).MatchTpDst(4789).Action(DropAction()),
		NewFlow(TablePolicyEgress, 500).Action(Goto(TableConntrackCommit)),
		NewFlow(TableConntrackCommit, 100).MatchIPv4().MatchNwSrc(clusterCIDR).MatchNwDst(clusterCIDR).MatchCtState(0, CtRpl).
			Action(CTThen(TableRouting, true, false)),
		NewFlow(TableRouting, 300).MatchARP().MatchArpTpa(host(gateway)).Action(Output(tun0Port)),
		NewFlow(TableRouting, 300).MatchIPv4().MatchNwDst(host(gateway)).Action(Output(tun0Port)),
		NewFlow(TableRouting, 250).MatchIPv4().MatchNwDst(localSubnet).MatchCtState(CtRpl, 0).Action(CTThen(TableLocalPod, false, true)),
		NewFlow(TableRouting, 200).MatchARP().MatchArpTpa(localSubnet).Action(Goto(TableARPLocal)),
		NewFlow(TableRouting, 200).MatchIPv4().MatchNwDst(localSubnet).Action(Goto(TableLocalPod)),
		NewFlow(TableRouting, 100).MatchARP().MatchArpTpa(clusterCIDR).Action(Goto(TableARPRemote)),
		NewFlow(TableRouting, 100).MatchIPv4().MatchNwDst(serviceCIDR).Action(Goto(TableServices)),
		NewFlow(TableRouting, 100).MatchIPv4().MatchNwDst(clusterCIDR).Action(Goto(TableRemotePod)),
		NewFlow(TableRouting, 25).MatchIPv4().MatchNwDst(multicast).Action(Goto(TableMulticastFromLocal)),
		NewFlow(TableRouting, 1).MatchIPv4().Action(Goto(TableEgressPrelim)),
		NewFlow(TableServices, 200).MatchIPv4().Action(Output(tun0Port)),
		NewFlow(TablePolicyIngress, 300).MatchIPv4().MatchNwSrc(host(gateway)).Action(OutPortField.Output()),
		NewFlow(TablePolicyIngress, 200).MatchReg(SrcVNIDField, 0).Action(OutPortField.Output()),
		NewFlow(TablePolicyIngress, 200).MatchReg(DstVNIDField, 0).Action(OutPortField.Output()),
		NewFlow(TableEgressPrelim, 200).MatchProto(ProtoTCP).MatchNwDst(host(nodeIP)).MatchTpDst(53).Action(Output(tun0Port)),
		NewFlow(TableEgressPrelim, 200).MatchProto(ProtoUDP).MatchNwDst(host(nodeIP)).MatchTpDst(53).Action(Output(tun0Port)),
		NewFlow(TableEgressRouting, 150).MatchCtState(CtRpl, 0).Action(Output(tun0Port)),
		NewFlow(TableEgressRouting, 100).MatchIPv4().MatchReg(SrcVNIDField, 9).Action(CT(true, false), GroupAction(9)),
		NewFlow(TableEgressRouting, 100).MatchIPv4().With(NwProto(47), SrcVNIDField.Match(10)).Action(DropAction()),
		NewFlow(TableVersion, 0).Action(NoteBytes(0x00, 0x0d)),
	}
	for i := range flows {
		flows[i].Cookie = c
	}
	return append(flows, finalDrops()...)
}

func podFlows(p testPod) []Flow {
	c := CookieFor(CookiePod, "pod/ns/"+p.ip.String())
	sha := MAC{0, 0}
	copy(sha[2:], p.ip.AsSlice())
	mask := MAC{0, 0, 0xff, 0xff, 0xff, 0xff}
	return []Flow{
		NewFlow(TablePodAntiSpoof, 100).WithCookie(c).MatchInPort(p.port).MatchARP().MatchArpSpa(host(p.ip)).With(ArpSha(sha, mask)).
			Action(SrcVNIDField.Load(p.vnid), Goto(TableConntrackCommit)),
		NewFlow(TablePodAntiSpoof, 100).WithCookie(c).MatchInPort(p.port).MatchIPv4().MatchNwSrc(host(p.ip)).
			Action(SrcVNIDField.Load(p.vnid), Goto(TablePolicyEgress)),
		NewFlow(TableServiceReturn, 100).WithCookie(c).MatchIPv4().MatchNwSrc(host(p.ip)).
			Action(SrcVNIDField.Load(p.vnid), Goto(TablePolicyEgress)),
		NewFlow(TableARPLocal, 100).WithCookie(c).MatchARP().MatchArpTpa(host(p.ip)).Action(Output(p.port)),
		NewFlow(TableLocalPod, 100).WithCookie(c).MatchIPv4().MatchNwDst(host(p.ip)).
			Action(DstVNIDField.Load(p.vnid), OutPortField.Load(p.port), Goto(TablePolicyIngress)),
	}
}

func nodeFlows() []Flow {
	c := CookieFor(CookieNode, "hostsubnet-uid-1")
	tunnel := []Action{SrcVNIDField.MoveTo(TunnelKeyField), SetTunnelDst(remoteNode), Output(vxlanPort)}
	return []Flow{
		NewFlow(TableVXLANIngress, 100).WithCookie(c).MatchTunSrc(remoteNode).Action(Goto(TableConntrackCommit)),
		NewFlow(TableARPRemote, 100).WithCookie(c).MatchARP().MatchArpTpa(remoteNet).Action(tunnel...),
		NewFlow(TableRemotePod, 100).WithCookie(c).MatchIPv4().MatchNwDst(remoteNet).Action(tunnel...),
	}
}

// policyFlows: namespace VNID 5 and 6 are isolated from each other except
// by a policy allowing pods of VNID 5 to reach podB on tcp/80 and tcp ports
// 8080-8095 (a masked range), rendered as a two-dimensional conjunction.
func policyFlows() []Flow {
	c := CookieFor(CookiePolicy, "policy/ns6/allow-web")
	return []Flow{
		NewFlow(TablePolicyIngress, 100).WithCookie(CookieFor(CookieNamespace, "netns/5")).
			MatchReg(SrcVNIDField, 5).MatchReg(DstVNIDField, 5).Action(OutPortField.Output()),
		NewFlow(TablePolicyIngress, 150).WithCookie(c).MatchIPv4().MatchReg(SrcVNIDField, 5).Action(Conj(7, 1, 2)),
		NewFlow(TablePolicyIngress, 150).WithCookie(c).MatchProto(ProtoTCP).MatchNwDst(host(podB.ip)).MatchTpDst(80).Action(Conj(7, 2, 2)),
		NewFlow(TablePolicyIngress, 150).WithCookie(c).MatchProto(ProtoTCP).MatchNwDst(host(podB.ip)).With(TpDstMasked(8080, 0xfff0)).Action(Conj(7, 2, 2)),
		NewFlow(TablePolicyIngress, 150).WithCookie(c).MatchIPv4().MatchConjID(7).Action(OutPortField.Output()),
	}
}

func multicastFlows() []Flow {
	c := CookieFor(CookieMulticast, "netns/5")
	return []Flow{
		NewFlow(TableMulticastFromLocal, 100).WithCookie(c).MatchReg(SrcVNIDField, 5).Action(Goto(TableMulticastToRemote)),
		NewFlow(TableMulticastToRemote, 100).WithCookie(c).
			Action(SrcVNIDField.MoveTo(TunnelKeyField), SetTunnelDst(remoteNode), Output(vxlanPort), Goto(TableMulticastToLocal)),
		NewFlow(TableMulticastToLocal, 100).WithCookie(c).MatchReg(SrcVNIDField, 5).Action(Output(podA.port)),
	}
}

// sampleGroups are the groups the sample pipeline uses: egress IP group 9
// (EgressRouting sends VNID 9 there).
func sampleGroups() []GroupEntry {
	return []GroupEntry{SelectGroup(9, NewBucket(1, Output(tun0Port)))}
}

// samplePipeline is the full desired state of the sample node.
func samplePipeline() []Flow {
	flows := baseFlows()
	for _, p := range []testPod{podA, podB, podC} {
		flows = append(flows, podFlows(p)...)
	}
	flows = append(flows, nodeFlows()...)
	flows = append(flows, policyFlows()...)
	return append(flows, multicastFlows()...)
}
