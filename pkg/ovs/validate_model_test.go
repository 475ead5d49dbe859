package ovs_test

import (
	"net/netip"
	"strings"
	"testing"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// TestValidateNewConstructs: each rule ValidateFlow enforces for the new
// constructs, mostly where OVS would reject the flow or, worse, accept it
// and misbehave.
func TestValidateNewConstructs(t *testing.T) {
	ip := NewFlow(TableLocalPod, 1).MatchIPv4()
	tcp := NewFlow(TableLocalPod, 1).MatchProto(ProtoTCP)
	lb := RegBits(4, 16, 18, "LB")
	okLearn := NewLearn(TableServices, 10).WithCookie(learnCookie).MatchProto(ProtoTCP).MatchSame(FieldIPSrc)
	tests := []struct {
		name    string
		flow    Flow
		wantErr string
	}{
		{"nat without commit", ip.Action(ConnTrack{}.WithDNAT(ep5, 80)), "need commit"},
		{"exec without commit", ip.Action(ConnTrack{}.WithMark(exampleServiceCT)), "need commit"},
		{"nat IPv6", ip.Action(CTCommit().WithDNAT(netip.MustParseAddr("fd00::1"), 80)), "IPv4"},
		{"nat hash and random", ip.Action(CTCommit().WithNATSpec(NATSpec{Kind: NATSrc, Addr: ep5, Flags: NATHash | NATRandom})), "exclusive"},
		{"nat bad port range", ip.Action(CTCommit().WithNATSpec(NATSpec{Kind: NATSrc, Addr: ep5, Port: 9, PortMax: 8})), "port range"},
		{"ct recirc backward", ip.Action(CTCommit().WithTable(TableRouting)), "backward"},
		{"ct_mark outside ct", ip.Action(CtMarkBits(4, 4, "").Load(1)), "only be set in ct"},
		{"load does not fit", ip.Action(lb.Load(9)), "does not fit"},
		{"mark does not fit", ip.MatchMark(lb.Value(9)), "outside the mask"},
		{"overlapping marks", ip.MatchMark(lb.Value(1), RegBits(4, 18, 19, "").Value(1)), "matched twice"},
		{"move widths", ip.Action(RegBits(0, 0, 7, "").MoveTo(RegBits(1, 0, 15, ""))), "destination 16"},
		{"move into eth_type", ip.Action(RegBits(0, 0, 15, "").MoveTo(FieldEthType)), "read-only"},
		{"ct_nw_dst untracked", ip.MatchCtNwDst(host(vip)), "ct_state implying a connection"},
		{"ct_nw_dst +trk only", ip.MatchCtState(CtTrk, 0).MatchCtNwDst(host(vip)), "ct_state implying a connection"},
		{"ct_tp_dst without ct_nw_proto", tcp.MatchCtState(CtDNAT, 0).With(CtTpDst(80)), "requires ct_nw_proto"},
		{"ct_nw_dst without ip", NewFlow(TableLocalPod, 1).MatchARP().MatchCtState(CtEst, 0).MatchCtNwDst(host(vip)), "requires ip"},
		{"set ip_src without ip", NewFlow(TableLocalPod, 1).Action(SetIPv4Src(ep5)), "do not have"},
		{"move tcp port from udp flow", NewFlow(TableLocalPod, 1).MatchProto(ProtoUDP).Action(Move{Src: FieldTCPDst, Dst: RegBits(4, 0, 15, "")}), "do not have"},
		{"group 0", ip.Action(GroupAction(0)), "group ID"},
		{"learn cookie category", tcp.Action(okLearn.WithCookie(CookieFor(CookiePod, "x"))), "CookieLearned"},
		{"learn unknown table", tcp.Action(NewLearn(Table{ID: 42}, 1).WithCookie(learnCookie).MatchSame(FieldInPort)), "unknown table"},
		{"learn load ct_mark", tcp.Action(okLearn.LoadValue(FieldCtMark, 1)), "only be set in ct"},
		{"learn ip before eth_type", tcp.Action(NewLearn(TableServices, 1).WithCookie(learnCookie).MatchSame(FieldIPSrc)), "eth_type/nw_proto specs before"},
		{"learn port before nw_proto", tcp.Action(NewLearn(TableServices, 1).WithCookie(learnCookie).MatchProto(ProtoIP).MatchSame(FieldTCPDst)), "eth_type/nw_proto specs before"},
		{"learn source not in flow", NewFlow(TableLocalPod, 1).MatchProto(ProtoUDP).Action(okLearn.MatchSame(FieldTCPDst)), "do not have"},
		{"learn width", tcp.Action(okLearn.LoadFrom(FieldIPSrc, RegBits(4, 0, 15, ""))), "widths differ"},
		{"learn value fits", tcp.Action(okLearn.MatchValue(RegBits(4, 0, 3, ""), 16)), "does not fit"},
		{"learn sub-range of ip", tcp.Action(okLearn.MatchSame(NewBitField(FieldIPDst, 0, 7, ""))), "cannot model"},
		{"learn no specs", tcp.Action(NewLearn(TableServices, 1).WithCookie(learnCookie)), "no specs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateFlow(tt.flow)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ValidateFlow(%s) = %v, want error containing %q", tt.flow, err, tt.wantErr)
			}
		})
	}
}

func TestBitFieldDeclarations(t *testing.T) {
	for _, bad := range []func(){
		func() { RegBits(4, 18, 16, "reversed") },
		func() { RegBits(16, 0, 1, "no such register") },
		func() { RegBits(4, 0, 32, "too wide") },
		func() { CtLabelBits(0, 128, "too wide") },
		func() { NewBitField(FieldIPSrc, 0, 31, "").Match(1) },
		func() { CTCommit().WithMark(exampleLBNeeded) },
		func() { CTCommit().WithMark(CtMarkBits(0, 0, "").Value(2)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("bad declaration did not panic")
				}
			}()
			bad()
		}()
	}
	if got := exampleLBSelected.String(); got != "ServiceLBState(NXM_NX_REG4[16..18])=0x2" {
		t.Errorf("Mark.String = %s", got)
	}
	if got := exampleLBNeeded.Match().String(); got != "reg4=0x10000/0x70000" {
		t.Errorf("Match = %s", got)
	}
	if got := CtLabelBits(100, 127, "").Value(0xfffffff).Match().String(); got != "ct_label=0xfffffff0000000000000000000000000/0xfffffff0000000000000000000000000" {
		t.Errorf("label match = %s", got)
	}
}
