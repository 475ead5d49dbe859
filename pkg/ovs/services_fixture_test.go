package ovs_test

import (
	"net/netip"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// A small Services fixture: ClusterIP load balancing with a select group and
// ct(commit,nat(dst=…)), session affinity with learn, hairpin with SNAT and
// IN_PORT, and a reject path. It exercises the constructs this package
// models; it is not the Services pipeline (that feature declares its own
// tables, marks and zones). It borrows existing tables:
//
//	Classifier(0)     conntrack lookup in the service zone; established
//	                  service connections (ct_mark) go straight to 80; new
//	                  connections to the service CIDR visit 60 then 70.
//	Services(60)      session affinity: learned flows load the endpoint and
//	                  mark it selected; otherwise mark "needs LB".
//	LocalPod(70)      LB: the VIP flow outputs to the service's group; each
//	                  bucket loads an endpoint and resubmits here, where the
//	                  endpoint's DNAT flow commits ct(nat(dst=EP:port)).
//	PolicyIngress(80) delivery by destination; hairpin commits an SNAT.
//	RemotePod(90)     tunnel to the remote endpoint; hairpin back out IN_PORT.

// Example bit fields and marks, declared once as the pipeline will declare
// its own in fields.go.
var (
	// exampleEndpointIP is reg3: the selected endpoint's IPv4 address.
	exampleEndpointIP = RegBits(3, 0, 31, "EndpointIP")
	// exampleEndpointPort is reg4[0..15]: the selected endpoint's port.
	exampleEndpointPort = RegBits(4, 0, 15, "EndpointPort")
	// exampleLBState is reg4[16..18]: 1 = needs load balancing, 2 = endpoint
	// selected.
	exampleLBState    = RegBits(4, 16, 18, "ServiceLBState")
	exampleLBNeeded   = exampleLBState.Value(1)
	exampleLBSelected = exampleLBState.Value(2)
	// exampleServiceCT is ct_mark[4]: the connection was DNATed by a
	// service.
	exampleServiceCT = CtMarkBits(4, 4, "ServiceCT").Value(1)
	// exampleServiceLabel is ct_label[64..79]: a service number, to show
	// ct_label bits.
	exampleServiceLabel = CtLabelBits(64, 79, "ServiceID")
	// exampleHairpin is pkt_mark[0]: the packet is a hairpin.
	exampleHairpin = PktMarkBits(0, 0, "Hairpin").Value(1)
)

const (
	svcZone     = 65520
	snatZone    = 65521
	clientPort  = 5
	svcGroup    = 1
	affGroup    = 2
	affTimeout  = 300
	svcPort     = 80
	backendPort = 8080
)

var (
	svcCIDR     = netip.MustParsePrefix("172.30.0.0/16")
	vip         = netip.MustParseAddr("172.30.0.10")
	vipAffinity = netip.MustParseAddr("172.30.0.11")
	vipNoEP     = netip.MustParseAddr("172.30.0.12")
	client      = netip.MustParseAddr("10.128.0.7")
	hairpinSNAT = netip.MustParseAddr("169.254.0.253")
	remoteEP    = netip.MustParseAddr("10.129.0.9")
	svcCookie   = CookieFor(CookiePipeline, "services-fixture")
	learnCookie = CookieFor(CookieLearned, "svc/ns/affinity:80")
	gwMAC       = MAC{0x0a, 0x58, 0x0a, 0x80, 0x00, 0x01}
)

// endpoints of the fixture's services, in bucket order.
var endpoints = []netip.Addr{podA.ip, podB.ip, remoteEP}

func addrValue(a netip.Addr) uint64 {
	b := a.As4()
	return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}

// selectEndpoint is what a bucket does: load the endpoint, mark it
// selected, come back to the LB table. (OVS runs bucket actions as an
// action set: loads and one resubmit; a learn there would be dropped, so
// the affinity service learns in its DNAT flows.)
func selectEndpoint(ep netip.Addr) []Action {
	return []Action{exampleEndpointIP.Load(addrValue(ep)), exampleEndpointPort.Load(backendPort), exampleLBSelected.Load(),
		ResubmitTo(TableLocalPod)}
}

// affinityLearn records the choice: client IP, VIP and port → endpoint.
func affinityLearn() Learn {
	return NewLearn(TableServices, 200).WithHardTimeout(affTimeout).WithDeleteLearned().WithCookie(learnCookie).
		MatchProto(ProtoTCP).MatchSame(FieldIPSrc, FieldIPDst, FieldTCPDst).
		LoadFrom(exampleEndpointIP, exampleEndpointIP).LoadFrom(exampleEndpointPort, exampleEndpointPort).
		LoadMark(exampleLBSelected)
}

func serviceGroups() []GroupEntry {
	var plain, affinity []Bucket
	for _, ep := range endpoints {
		plain = append(plain, NewBucket(100, selectEndpoint(ep)...))
		affinity = append(affinity, NewBucket(100, selectEndpoint(ep)...))
	}
	return []GroupEntry{SelectGroup(svcGroup, plain...), SelectGroup(affGroup, affinity...)}
}

func serviceFlows() []Flow {
	lb := NewFlow(TableLocalPod, 200).MatchProto(ProtoTCP).MatchMark(exampleLBNeeded).MatchTpDst(svcPort)
	flows := []Flow{
		NewFlow(TableClassifier, 1000).MatchIPv4().MatchCtState(0, CtTrk).
			Action(ConnTrack{}.WithTable(TableClassifier).WithZone(svcZone).WithNAT()),
		NewFlow(TableClassifier, 300).MatchIPv4().MatchCtState(CtTrk|CtEst, 0).MatchMark(exampleServiceCT).Action(Goto(TablePolicyIngress)),
		NewFlow(TableClassifier, 300).MatchIPv4().MatchCtState(CtTrk|CtRpl, 0).MatchMark(exampleServiceCT).Action(Goto(TablePolicyIngress)),
		NewFlow(TableClassifier, 200).MatchProto(ProtoTCP).MatchCtState(CtTrk|CtNew, 0).MatchNwDst(svcCIDR).
			Action(ResubmitTo(TableServices), ResubmitTo(TableLocalPod)),
		NewFlow(TableServices, 0).Action(exampleLBNeeded.Load()),
		lb.MatchNwDst(host(vip)).Action(GroupAction(svcGroup)),
		lb.MatchNwDst(host(vipAffinity)).Action(GroupAction(affGroup)),
		// No ready endpoint: hand the packet to the host, whose REJECT rule
		// answers (TCP RST / ICMP unreachable) instead of a black hole.
		lb.MatchNwDst(host(vipNoEP)).Action(Output(tun0Port)),
		NewFlow(TableLocalPod, 0).Action(DropAction()),
		NewFlow(TablePolicyIngress, 300).MatchIPv4().MatchCtState(CtTrk|CtNew, 0).MatchInPort(podA.port).MatchNwDst(host(podA.ip)).
			Action(exampleHairpin.Load(), CTCommit().WithTable(TableRemotePod).WithZone(snatZone).WithSNAT(hairpinSNAT, 0)),
		NewFlow(TablePolicyIngress, 0).Action(DropAction()),
		NewFlow(TableRemotePod, 300).MatchIPv4().MatchMark(exampleHairpin).MatchNwSrc(host(hairpinSNAT)).
			Action(SetEthernetSrc(gwMAC), SetEthernetDst(MAC{0, 0, 10, 128, 0, 5}), OutputToInPort()),
		NewFlow(TableRemotePod, 200).MatchIPv4().MatchNwDst(remoteNet).
			Action(SetTunnelDst(remoteNode), Output(vxlanPort)),
		NewFlow(TableRemotePod, 0).Action(DropAction()),
	}
	for i, p := range []testPod{podA, podB, {client, clientPort, 0}} {
		flows = append(flows, NewFlow(TablePolicyIngress, uint16(200+i)).MatchIPv4().MatchNwDst(host(p.ip)).Action(Output(p.port)))
	}
	flows = append(flows, NewFlow(TablePolicyIngress, 100).MatchIPv4().MatchNwDst(remoteNet).Action(Goto(TableRemotePod)))
	for i, ep := range endpoints {
		dnat := NewFlow(TableLocalPod, 190).MatchProto(ProtoTCP).
			With(exampleEndpointIP.Match(addrValue(ep)), exampleLBSelected.Match(), exampleEndpointPort.Match(backendPort))
		commit := CTCommit().WithTable(TablePolicyIngress).WithZone(svcZone).WithDNAT(ep, backendPort).
			WithMark(exampleServiceCT, exampleServiceLabel.Value(uint64(i+1)))
		learn := dnat.MatchNwDst(host(vipAffinity))
		learn.Priority = 195
		flows = append(flows, dnat.Action(commit), learn.Action(affinityLearn(), commit))
	}
	for i := range flows {
		flows[i].Cookie = svcCookie
	}
	return flows
}
