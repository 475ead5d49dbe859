package pipeline

import (
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// The static flows of the ovs proxy (--proxy-mode=ovs, SPEC §4.5), owned by
// OwnerServiceProxy; the flows and groups of each Service are pkg/proxy's.
//
// Where NAT happens. Un-SNAT only rewrites a packet's destination, so it
// runs first, in Classifier, for packets to the node gateway (the SNAT
// address). Un-DNAT rewrites the source (endpoint → virtual address), so it
// must run after PodAntiSpoof, which checks the source: replies are
// un-DNATed at the top of Routing, whatever port they came in on. DNAT of a
// new connection and the re-application of its NAT to later packets happen
// in ServiceLB, after PodAntiSpoof and before PolicyEgress, so egress
// policy sees the endpoint.
//
//	0   p1100 ip to the gateway, untracked → ct(zone=SNAT,nat,table=0)
//	    p1050 tracked in the SNAT zone → ct(table=0) (track in zone 0)
//	    p450  from tun0 to the service network or NodePortVIP → 21
//	21  p310  established, not a reply, a service connection → restore
//	          its flags, ct(nat,table=22) (re-apply the DNAT)
//	    p300  other established or replies → restore flags, 22
//	    (per Service, pkg/proxy: affinity entry, DNAT per endpoint, VIP →
//	    group)
//	22  p200  not a reply, flag SNAT → ct(commit,zone=SNAT,nat(src=gw),table=23)
//	23  p210  from tun0 and hairpin (a pod reaching itself through a node
//	          port, by way of the host) → clear hairpin, 31: it is not
//	          sent back out IN_PORT (tun0)
//	    p200  from tun0 → 31 (the host has no egress policy)
//	    p200  SNATed (NodePort, hairpin: a pod may always reach itself)
//	          → 31
//	          These skip ConntrackCommit (30) too: the connection was
//	          committed with its DNAT in ServiceLB, and for a SNATed one a
//	          second commit in zone 0 would look the translated packet up
//	          afresh (the SNAT zone came in between) and create a second
//	          entry that steals its replies.
//	31  p400  reply of a service connection, not yet un-DNATed → mark,
//	          ct(nat,table=31)
//	    p390  from NodePortVIP (a NodePort reply, un-DNATed) → tun0, to
//	          the gateway's MAC: the host un-DNATs it to the node
//	          address the client used, whoever the client is (a local
//	          pod too)
//	80  p310  hairpin → IN_PORT (OpenFlow never outputs to the in_port
//	          otherwise)

// OwnerServiceProxy owns ServiceProxyFlows.
var OwnerServiceProxy = Owner{kind: KindServiceProxy, key: "service-proxy"}

// StageServiceProxy is the bands of ServiceProxyFlows.
var StageServiceProxy = Stage{Name: "service proxy", Bands: []Band{
	band(ovs.TableClassifier, 1050, 1100, "un-SNAT"),
	band(ovs.TableClassifier, 450, 450, "host to Services"),
	band(ovs.TableServiceLB, 300, 310, "established"),
	band(ovs.TableServiceSNAT, 200, 200, "SNAT"),
	band(ovs.TableServicePost, 200, 210, "skip egress policy"),
	band(ovs.TableRouting, 390, 400, "un-DNAT"),
	band(ovs.TablePolicyIngress, 310, 310, "hairpin"),
}}

// StageServices is the bands of the flows of each Service (pkg/proxy).
var StageServices = Stage{Name: "services", Bands: []Band{
	band(ovs.TableServiceLB, 180, 240, "Service"),
}}

// ServiceProxyFlows returns the static flows of the ovs proxy for c (none
// in kube-proxy mode).
func ServiceProxyFlows(c FlowConfig) []ovs.Flow {
	if !c.OVSProxy() {
		return nil
	}
	gw, zone := c.Gateway(), ovs.SNATZone
	restore := ovs.ServiceFlagsCT.MoveTo(ovs.ServiceFlags)
	tun0 := ovs.NewFlow(ovs.TableClassifier, 450).MatchInPort(OFPortTun0).MatchIPv4()
	flows := []ovs.Flow{
		ovs.NewFlow(ovs.TableClassifier, 1100).MatchIPv4().MatchNwDst(host(gw)).MatchCtState(0, ovs.CtTrk).
			Action(ovs.ConnTrack{}.WithZone(zone).WithNAT().WithTable(ovs.TableClassifier)),
		ovs.NewFlow(ovs.TableClassifier, 1050).MatchIPv4().MatchCtZone(zone).MatchCtState(ovs.CtTrk, 0).
			Action(ovs.CTThen(ovs.TableClassifier, false, false)),
		tun0.MatchNwDst(c.ServiceNetwork).Action(ovs.Goto(ovs.TableServiceLB)),
		tun0.MatchNwDst(host(NodePortVIP)).Action(ovs.Goto(ovs.TableServiceLB)),
		ovs.NewFlow(ovs.TableServiceLB, 310).MatchIPv4().MatchCtState(ovs.CtTrk, ovs.CtNew|ovs.CtRpl).MatchMark(ovs.ServiceCT).
			Action(restore, ovs.ConnTrack{}.WithNAT().WithTable(ovs.TableServiceSNAT)),
		ovs.NewFlow(ovs.TableServiceLB, 300).MatchIPv4().MatchCtState(ovs.CtTrk, ovs.CtNew).
			Action(restore, ovs.Goto(ovs.TableServiceSNAT)),
		ovs.NewFlow(ovs.TableServiceSNAT, 200).MatchIPv4().MatchCtState(ovs.CtTrk, ovs.CtRpl).MatchMark(ovs.ServiceSNAT).
			Action(ovs.CTCommit().WithZone(zone).WithSNAT(gw, 0).WithTable(ovs.TableServicePost)),
		ovs.NewFlow(ovs.TableServicePost, 210).MatchInPort(OFPortTun0).MatchMark(ovs.ServiceHairpin).
			Action(ovs.ServiceHairpin.Field.Load(0), ovs.Goto(ovs.TableRouting)),
		ovs.NewFlow(ovs.TableServicePost, 200).MatchInPort(OFPortTun0).Action(ovs.Goto(ovs.TableRouting)),
		ovs.NewFlow(ovs.TableServicePost, 200).MatchMark(ovs.ServiceSNAT).Action(ovs.Goto(ovs.TableRouting)),
		ovs.NewFlow(ovs.TableRouting, 400).MatchIPv4().MatchCtState(ovs.CtTrk|ovs.CtRpl, 0).MatchMark(ovs.ServiceCT, ovs.UnDNATDone.Field.Value(0)).
			Action(ovs.UnDNATDone.Load(), ovs.ConnTrack{}.WithNAT().WithTable(ovs.TableRouting)),
		ovs.NewFlow(ovs.TableRouting, 390).MatchIPv4().MatchNwSrc(host(NodePortVIP)).
			Action(ovs.SetEthernetDst(c.GatewayMAC()), ovs.Output(OFPortTun0)),
		ovs.NewFlow(ovs.TablePolicyIngress, 310).MatchIPv4().MatchMark(ovs.ServiceHairpin).Action(ovs.OutputToInPort()),
	}
	return OwnerServiceProxy.Stamp(flows)
}
