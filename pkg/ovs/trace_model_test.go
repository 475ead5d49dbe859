package ovs_test

import (
	"net/netip"
	"strings"
	"testing"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

func TestTraceGroups(t *testing.T) {
	flows := []Flow{
		NewFlow(TableClassifier, 10).MatchInPort(1).Action(GroupAction(1), Output(9)),
		NewFlow(TableClassifier, 10).MatchInPort(2).Action(GroupAction(2)),
		NewFlow(TableClassifier, 10).MatchInPort(3).Action(GroupAction(3)),
		NewFlow(TableLocalPod, 10).MatchReg(OutPortField, 7).Action(OutPortField.Output()),
	}
	groups := []GroupEntry{
		// all: every bucket on its own copy of the packet; the flow's next
		// action sees the packet as it was before the group.
		AllGroup(1, BucketOf(OutPortField.Load(7), ResubmitTo(TableLocalPod)), BucketOf(Output(8)), BucketOf(OutPortField.Output())),
		SelectGroup(2),
		SelectGroup(3, NewBucket(1, GroupAction(3))),
	}
	tr, err := TraceWithGroups(flows, groups, Packet{InPort: 1})
	if err != nil {
		t.Fatal(err)
	}
	var outs []string
	for _, o := range tr.Outputs {
		outs = append(outs, o.String())
	}
	if got := strings.Join(outs, " "); got != "Output(7) Output(8) Output(0) Output(9)" || tr.Packet.Regs[OutPortField.Reg] != 0 {
		t.Errorf("all group outputs %s, reg2 after %d", got, tr.Packet.Regs[OutPortField.Reg])
	}
	if len(tr.Groups) != 3 || tr.Groups[2] != (GroupStep{ID: 1, Type: GroupAll, Bucket: 2}) {
		t.Errorf("group steps %v", tr.Groups)
	}
	tr, err = TraceWithGroups(flows, groups, Packet{InPort: 2})
	if err != nil || tr.Verdict.String() != "Drop(Classifier(0))" || tr.Groups[0].Bucket != -1 {
		t.Errorf("empty select group: %v %v %v", tr.Verdict, tr.Groups, err)
	}
	if _, err := TraceWithGroups(flows, groups, Packet{InPort: 3}); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Errorf("group loop: %v", err)
	}
	tr, err = TraceWithGroups(flows, groups, Packet{InPort: 1, Bucket: -4})
	if err != nil || len(tr.Outputs) != 4 {
		t.Errorf("negative bucket: %v %v", tr.Outputs, err)
	}
}

// TestTraceConntrackState: marks and labels written by exec, the zone and
// the original destination are visible to later tables; ct_clear forgets
// them; pkt_mark and register bit fields load, move and match.
func TestTraceConntrackState(t *testing.T) {
	label := CtLabelBits(64, 79, "Svc")
	flows := []Flow{
		NewFlow(TableClassifier, 10).MatchProto(ProtoTCP).Action(
			exampleHairpin.Load(), RegBits(5, 8, 15, "").Load(0xab), RegBits(5, 8, 15, "").MoveTo(RegBits(6, 0, 7, "")),
			CTCommit().WithTable(TableRouting).WithZone(7).WithDNAT(ep5, 8080).WithMark(exampleServiceCT, label.Value(3))),
		NewFlow(TableRouting, 10).MatchProto(ProtoTCP).MatchCtState(CtTrk|CtNew|CtDNAT, 0).MatchCtZone(7).
			MatchMark(exampleServiceCT, label.Value(3), exampleHairpin).MatchCtNwDst(host(vip)).MatchCtTpDst(ProtoTCP, 80).
			MatchReg(RegField{Reg: 6}, 0xab).MatchNwDst(host(ep5)).MatchTpDst(8080).Action(Goto(TableLocalPod)),
		NewFlow(TableLocalPod, 10).MatchIPv4().Action(ClearCt(), ResubmitTo(TablePolicyIngress)),
		NewFlow(TablePolicyIngress, 20).MatchIPv4().MatchMark(exampleServiceCT).Action(Output(1)),
		NewFlow(TablePolicyIngress, 10).MatchIPv4().MatchCtState(0, CtTrk).Action(Output(2)),
	}
	tr, err := TraceFlows(flows, Packet{InPort: 3, Proto: ProtoTCP, Src: client, Dst: vip, TpSrc: 999, TpDst: 80})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Verdict.String() != "Output(2)" || len(tr.Flows) != 4 {
		t.Errorf("verdict %s after %d flows, want Output(2) after 4 (ct_clear forgot the mark)\n%s", tr.Verdict, len(tr.Flows), tr)
	}
}

// TestLearnedFlowReflexive: a reflexive SCTP learn swaps source and
// destination and outputs to the ingress port.
func TestLearnedFlowReflexive(t *testing.T) {
	l := NewLearn(TableServices, 200).WithHardTimeout(300).WithCookie(learnCookie).MatchProto(ProtoSCTP).
		MatchFrom(FieldIPSrc, FieldIPDst).MatchFrom(FieldIPDst, FieldIPSrc).MatchFrom(FieldSCTPSrc, FieldSCTPDst).
		MatchFrom(FieldSCTPDst, FieldSCTPSrc).LoadValue(RegBits(4, 19, 19, ""), 1).OutputFrom(FieldInPort)
	p := Packet{InPort: 4, Proto: ProtoSCTP, Src: netip.MustParseAddr("10.128.0.9"), Dst: vip, TpSrc: 1234, TpDst: 80}
	f, err := LearnedFlow(l, p)
	if err != nil {
		t.Fatal(err)
	}
	want := "table=60,priority=200,cookie=" + hexCookie(learnCookie) +
		",sctp,nw_src=172.30.0.10,nw_dst=10.128.0.9,tp_src=80,tp_dst=1234 actions=load:0x1->NXM_NX_REG4[19],output:4"
	if f.String() != want {
		t.Errorf("learned\n got %s\nwant %s", f, want)
	}
	if _, err := LearnedFlow(NewLearn(TableServices, 1).MatchSame(NewBitField(FieldIPSrc, 0, 7, "")), p); err == nil {
		t.Error("a learned match on part of an IP was modelled")
	}
}
