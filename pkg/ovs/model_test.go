package ovs_test

import (
	"fmt"
	"net/netip"
	"testing"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

var (
	ep5   = netip.MustParseAddr("10.128.0.5")
	learn = CookieFor(CookieLearned, "svc/ns/name:80")
)

// modelCases are flows using every construct added for groups, conntrack,
// marks, learn and hairpin, each with its text exactly as OVS 3.1 prints it
// back in dump-flows (the forms were read off a real ovs-vswitchd; the
// integration test TestOfctlNewConstructs proves it on every run).
func modelCases() []struct {
	name string
	flow Flow
	want string
} {
	tcp := NewFlow(TableLocalPod, 200).MatchProto(ProtoTCP)
	ip := NewFlow(TableLocalPod, 10).MatchIPv4()
	reg4 := RegBits(4, 16, 18, "LB")
	return []struct {
		name string
		flow Flow
		want string
	}{
		{"group", tcp.MatchNwDst(host(vip)).MatchTpDst(80).Action(GroupAction(1)),
			"table=70,priority=200,tcp,nw_dst=172.30.0.10,tp_dst=80 actions=group:1"},
		{"ct dnat", tcp.Action(CTCommit().WithTable(TablePolicyIngress).WithZone(65520).WithDNAT(ep5, 8080).WithMark(CtMarkBits(4, 4, "").Value(1))),
			"table=70,priority=200,tcp actions=ct(commit,table=80,zone=65520,nat(dst=10.128.0.5:8080),exec(load:0x1->NXM_NX_CT_MARK[4]))"},
		{"ct dnat no port", tcp.Action(CTCommit().WithZone(65520).WithDNAT(ep5, 0)),
			"table=70,priority=200,tcp actions=ct(commit,zone=65520,nat(dst=10.128.0.5))"},
		{"ct snat", tcp.Action(CTCommit().WithSNAT(hairpinSNAT, 0)), "table=70,priority=200,tcp actions=ct(commit,nat(src=169.254.0.253))"},
		{"ct snat port", tcp.Action(CTCommit().WithSNAT(netip.MustParseAddr("10.0.0.1"), 1000)), "table=70,priority=200,tcp actions=ct(commit,nat(src=10.0.0.1:1000))"},
		{"ct nat ranges", tcp.Action(CTCommit().WithNATSpec(NATSpec{Kind: NATDst, Addr: ep5, AddrMax: netip.MustParseAddr("10.128.0.9"), Port: 8080, PortMax: 8090, Flags: NATRandom})),
			"table=70,priority=200,tcp actions=ct(commit,nat(dst=10.128.0.5-10.128.0.9:8080-8090,random))"},
		{"ct nat flags", ip.Action(CTCommit().WithNATSpec(NATSpec{Kind: NATDst, Addr: ep5, AddrMax: netip.MustParseAddr("10.128.0.6"), Flags: NATHash | NATPersistent})),
			"table=70,priority=10,ip actions=ct(commit,nat(dst=10.128.0.5-10.128.0.6,persistent,hash))"},
		{"ct zone nat", ip.Action(ConnTrack{}.WithTable(TablePolicyIngress).WithZone(5).WithNAT()), "table=70,priority=10,ip actions=ct(table=80,zone=5,nat)"},
		{"ct zone 0", ip.Action(CTCommit().WithZone(0)), "table=70,priority=10,ip actions=ct(commit)"},
		{"ct label bit", ip.Action(CTCommit().WithMark(CtLabelBits(0, 0, "").Value(1))), "table=70,priority=10,ip actions=ct(commit,exec(load:0x1->NXM_NX_CT_LABEL[0]))"},
		{"ct whole mark and high label", ip.Action(CTCommit().WithMark(CtMarkBits(0, 31, "").Value(0x20), CtLabelBits(64, 64, "").Value(1))),
			"table=70,priority=10,ip actions=ct(commit,exec(load:0x20->NXM_NX_CT_MARK[],load:0x1->NXM_NX_CT_LABEL[64]))"},
		{"ct split mark runs", ip.Action(CTCommit().WithMark(CtMarkBits(4, 4, "").Value(1), CtMarkBits(6, 6, "").Value(1), CtLabelBits(0, 1, "").Value(3))),
			"table=70,priority=10,ip actions=ct(commit,exec(load:0x1->NXM_NX_CT_MARK[4],load:0x1->NXM_NX_CT_MARK[6],load:0x3->NXM_NX_CT_LABEL[0..1]))"},
		{"ct label high run", ip.Action(CTCommit().WithMark(CtMarkBits(4, 6, "").Value(5), CtLabelBits(64, 127, "").Value(3))),
			"table=70,priority=10,ip actions=ct(commit,exec(load:0x5->NXM_NX_CT_MARK[4..6],load:0x3->NXM_NX_CT_LABEL[64..127]))"},
		{"ct_clear", ip.Action(ClearCt(), CTCommit()), "table=70,priority=10,ip actions=ct_clear,ct(commit)"},
		{"ct mark matches", ip.With(CtMarkMatch(0x10, 0x10), CtZone(5)), "table=70,priority=10,ip,ct_mark=0x10/0x10,ct_zone=5 actions=drop"},
		{"ct mark exact and zero", ip.With(CtMarkMatch(0x10, ^uint32(0)), PktMarkMatch(0, ^uint32(0))), "table=70,priority=10,ip,ct_mark=0x10,pkt_mark=0 actions=drop"},
		{"ct label matches", ip.MatchMark(CtLabelBits(0, 0, "").Value(1), CtLabelBits(64, 64, "").Value(1)),
			"table=70,priority=10,ip,ct_label=0x10000000000000001/0x10000000000000001 actions=drop"},
		{"ct label zero masked", ip.MatchMark(CtLabelBits(0, 0, "").Value(0)), "table=70,priority=10,ip,ct_label=0/0x1 actions=drop"},
		{"ct tuple", tcp.MatchCtState(CtTrk|CtDNAT, 0).MatchCtNwDst(host(vip)).MatchCtTpDst(ProtoTCP, 80),
			"table=70,priority=200,tcp,ct_state=+trk+dnat,ct_nw_dst=172.30.0.10,ct_nw_proto=6,ct_tp_dst=80 actions=drop"},
		{"ct tuple masked", ip.MatchCtState(CtTrk, CtInv).With(CtNwSrc(netip.MustParsePrefix("10.96.0.0/16"))),
			"table=70,priority=10,ip,ct_state=-inv+trk,ct_nw_src=10.96.0.0/16 actions=drop"},
		{"pkt_mark", ip.MatchMark(exampleHairpin).Action(PktMarkBits(3, 3, "").Load(1), PktMarkBits(0, 31, "").Load(5)),
			"table=70,priority=10,ip,pkt_mark=0x1/0x1 actions=load:0x1->NXM_NX_PKT_MARK[3],load:0x5->NXM_NX_PKT_MARK[]"},
		{"reg marks merge", tcp.MatchMark(reg4.Value(1), RegBits(4, 19, 19, "").Value(1)).MatchTpSrc(1234),
			"table=70,priority=200,tcp,reg4=0x90000/0xf0000,tp_src=1234 actions=drop"},
		{"reg mark zero", ip.MatchMark(reg4.Value(0)).Action(reg4.Load(0), RegBits(3, 0, 31, "").Load(0)),
			"table=70,priority=10,ip,reg4=0/0x70000 actions=load:0->NXM_NX_REG4[16..18],load:0x0->NXM_NX_REG3[]"},
		{"moves", ip.Action(RegBits(0, 0, 23, "").MoveTo(NewBitField(FieldTunID, 0, 23, "")), Move{Src: FieldIPSrc, Dst: RegFieldID(3)}),
			"table=70,priority=10,ip actions=move:NXM_NX_REG0[0..23]->NXM_NX_TUN_ID[0..23],move:NXM_OF_IP_SRC[]->NXM_NX_REG3[]"},
		{"hairpin rewrite", ip.Action(SetIPv4Src(hairpinSNAT), SetIPv4Dst(ep5), SetEthernetSrc(gwMAC), OutputToInPort()),
			"table=70,priority=10,ip actions=set_field:169.254.0.253->ip_src,set_field:10.128.0.5->ip_dst,set_field:0a:58:0a:80:00:01->eth_src,IN_PORT"},
		{"learn affinity", tcp.Action(affinityLearn()),
			"table=70,priority=200,tcp actions=learn(table=60,hard_timeout=300,priority=200,delete_learned,cookie=" + hexCookie(learnCookie) +
				",eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[],NXM_OF_IP_DST[],NXM_OF_TCP_DST[],load:NXM_NX_REG3[]->NXM_NX_REG3[],load:NXM_NX_REG4[0..15]->NXM_NX_REG4[0..15],load:0x2->NXM_NX_REG4[16..18])"},
		{"learn reflexive sctp", NewFlow(TableLocalPod, 5).MatchProto(ProtoSCTP).Action(NewLearn(TableServices, 200).WithHardTimeout(300).WithCookie(learn).
			MatchProto(ProtoSCTP).MatchFrom(FieldIPSrc, FieldIPDst).MatchFrom(FieldIPDst, FieldIPSrc).MatchFrom(FieldSCTPSrc, FieldSCTPDst).MatchFrom(FieldSCTPDst, FieldSCTPSrc).
			LoadValue(RegBits(4, 19, 19, ""), 1).OutputFrom(FieldInPort)),
			"table=70,priority=5,sctp actions=learn(table=60,hard_timeout=300,priority=200,cookie=" + hexCookie(learn) +
				",eth_type=0x800,nw_proto=132,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],OXM_OF_SCTP_SRC[]=OXM_OF_SCTP_DST[],OXM_OF_SCTP_DST[]=OXM_OF_SCTP_SRC[],load:0x1->NXM_NX_REG4[19],output:NXM_OF_IN_PORT[])"},
		{"learn values", NewFlow(TableLocalPod, 5).MatchProto(ProtoUDP).Action(NewLearn(TableServices, DefaultPriority).WithIdleTimeout(10).WithCookie(learn).
			MatchProto(ProtoUDP).MatchValue(FieldIPSrc, addrValue(netip.MustParseAddr("10.0.0.1"))).MatchValue(RegFieldID(3), 5).MatchValue(RegBits(4, 0, 3, ""), 2).
			MatchValue(FieldPktMark, 7).MatchValue(FieldCtMark, 9).MatchValue(FieldEthSrc, 0x0a5800000001).MatchValue(FieldUDPSrc, 53).MatchValue(FieldTunID, 6).
			MatchFrom(FieldUDPDst, FieldUDPSrc).LoadValue(RegFieldID(3), 0).LoadFrom(FieldInPort, RegBits(2, 0, 15, ""))),
			"table=70,priority=5,udp actions=learn(table=60,idle_timeout=10,cookie=" + hexCookie(learn) +
				",eth_type=0x800,nw_proto=17,ip_src=10.0.0.1,reg3=0x5,NXM_NX_REG4[0..3]=0x2,pkt_mark=0x7,ct_mark=0x9,eth_src=0a:58:00:00:00:01,udp_src=53,tun_id=0x6,NXM_OF_UDP_DST[]=NXM_OF_UDP_SRC[],load:0->NXM_NX_REG3[],load:NXM_OF_IN_PORT[]->NXM_NX_REG2[0..15])"},
		{"multipath", NewFlow(TableLocalPod, 5).MatchProto(ProtoUDP).Action(NewMultipath("symmetric_l3l4+udp", 3, RegBits(6, 0, 15, "")), ResubmitTo(TableLocalPod)),
			"table=70,priority=5,udp actions=multipath(symmetric_l3l4+udp,0,modulo_n,3,0,NXM_NX_REG6[0..15]),resubmit(,70)"},
	}
}

func hexCookie(c uint64) string { return fmt.Sprintf("%#x", c) }

func TestModelTextAndRoundTrip(t *testing.T) {
	for _, tc := range modelCases() {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.flow.String(); got != tc.want {
				t.Errorf("String()\n got %s\nwant %s", got, tc.want)
			}
			if err := ValidateFlow(tc.flow); err != nil {
				t.Errorf("ValidateFlow: %v", err)
			}
			back, err := ParseFlow(tc.want)
			if err != nil {
				t.Fatalf("ParseFlow: %v", err)
			}
			if !back.Equal(tc.flow) || back.String() != tc.want {
				t.Errorf("round trip\n got %s\nwant %s", back, tc.want)
			}
		})
	}
}
