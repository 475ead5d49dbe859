package ovs_test

import (
	"fmt"
	"net/netip"
	"testing"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
)

// TestGoldenServices pins the text of a select group and of flows with
// ct(commit,nat(dst=…)) (issue 10 acceptance).
func TestGoldenServices(t *testing.T) {
	ovstest.AssertGoldenWithGroups(t, "services", serviceGroups(), serviceFlows())
}

func TestServicesFixtureValid(t *testing.T) {
	flows := serviceFlows()
	for _, f := range flows {
		if err := ValidateFlow(f); err != nil {
			t.Error(err)
		}
	}
	if err := ValidateGroups(serviceGroups(), flows); err != nil {
		t.Error(err)
	}
}

func tcpTo(from netip.Addr, inPort uint32, dst netip.Addr, bucket int) Packet {
	return Packet{InPort: inPort, Proto: ProtoTCP, Src: from, Dst: dst, TpSrc: 40000, TpDst: svcPort, Bucket: bucket}
}

func traceServices(t *testing.T, flows []Flow, p Packet) Trace {
	t.Helper()
	tr, err := TraceWithGroups(flows, serviceGroups(), p)
	if err != nil {
		t.Fatalf("trace: %v\n%s", err, tr)
	}
	return tr
}

// TestTraceServiceBuckets pushes a new connection to the VIP through the
// select group: each bucket leads to ct(commit,nat(dst=EP:8080)) and out to
// that endpoint, with the destination rewritten and the conntrack state,
// mark and label set.
func TestTraceServiceBuckets(t *testing.T) {
	want := []string{"Output(3)", "Output(4)", "Tunnel(192.168.1.2, 0x0)"}
	for bucket, ep := range endpoints {
		t.Run(ep.String(), func(t *testing.T) {
			tr := traceServices(t, serviceFlows(), tcpTo(client, clientPort, vip, bucket))
			if got := tr.Verdict.String(); got != want[bucket] {
				t.Fatalf("verdict %s, want %s\n%s", got, want[bucket], tr)
			}
			out := tr.OutputPackets[0]
			if out.Dst != ep || out.TpDst != backendPort || out.Src != client || out.TpSrc != 40000 {
				t.Errorf("output packet %s:%d → %s:%d, want %s:40000 → %s:%d", out.Src, out.TpSrc, out.Dst, out.TpDst, client, ep, backendPort)
			}
			if out.CtState != CtTrk|CtNew|CtDNAT || out.CtZone != svcZone {
				t.Errorf("ct_state %#x zone %d, want +new+trk+dnat in zone %d", out.CtState, out.CtZone, svcZone)
			}
			if out.CtMark != 0x10 || out.CtLabel != (U128{Hi: uint64(bucket + 1)}) {
				t.Errorf("ct_mark %#x ct_label %s, want 0x10 and service %d", out.CtMark, out.CtLabel, bucket+1)
			}
			wantDNAT := NATBinding{From: netip.AddrPortFrom(vip, svcPort), To: netip.AddrPortFrom(ep, backendPort), Zone: svcZone}
			if out.CtDNAT != wantDNAT {
				t.Errorf("DNAT binding %v, want %v", out.CtDNAT, wantDNAT)
			}
			if len(tr.Groups) != 1 || tr.Groups[0] != (GroupStep{ID: svcGroup, Type: GroupSelect, Bucket: bucket}) {
				t.Errorf("groups %v", tr.Groups)
			}
		})
	}
}

// TestTraceServiceConnection follows the rest of the connection: later
// packets bypass the group through conntrack, replies come back from the
// VIP.
func TestTraceServiceConnection(t *testing.T) {
	dnat := NATBinding{From: netip.AddrPortFrom(vip, svcPort), To: netip.AddrPortFrom(podB.ip, backendPort), Zone: svcZone}
	est := tcpTo(client, clientPort, vip, 0)
	est.CtEst, est.CtDNAT, est.CtMark = true, dnat, 0x10
	tr := traceServices(t, serviceFlows(), est)
	if tr.Verdict.String() != "Output(4)" || len(tr.Groups) != 0 || tr.OutputPackets[0].Dst != podB.ip {
		t.Errorf("established packet: %s groups=%v dst=%s", tr.Verdict, tr.Groups, tr.OutputPackets[0].Dst)
	}
	if s := tr.OutputPackets[0].CtState; s != CtTrk|CtEst|CtDNAT {
		t.Errorf("established ct_state %#x", s)
	}
	reply := Packet{InPort: podB.port, Proto: ProtoTCP, Src: podB.ip, Dst: client, TpSrc: backendPort, TpDst: 40000,
		CtReply: true, CtDNAT: dnat, CtMark: 0x10}
	tr = traceServices(t, serviceFlows(), reply)
	if tr.Verdict.String() != "Output(5)" {
		t.Fatalf("reply verdict %s\n%s", tr.Verdict, tr)
	}
	if out := tr.OutputPackets[0]; out.Src != vip || out.TpSrc != svcPort {
		t.Errorf("reply leaves from %s:%d, want the VIP %s:%d", out.Src, out.TpSrc, vip, svcPort)
	}
}

// TestTraceSessionAffinity: the first connection learns its endpoint; the
// next one from the same client, with the learned flow installed, skips the
// group and reaches the same endpoint whatever the bucket would have been.
func TestTraceSessionAffinity(t *testing.T) {
	tr := traceServices(t, serviceFlows(), tcpTo(client, clientPort, vipAffinity, 1))
	if tr.Verdict.String() != "Output(4)" || len(tr.Learned) != 1 {
		t.Fatalf("first connection: %s, learned %d\n%s", tr.Verdict, len(tr.Learned), tr)
	}
	learned := tr.Learned[0]
	want := fmt.Sprintf("table=Services(60),priority=200,cookie=%#x", learnCookie) +
		",tcp,nw_src=10.128.0.7,nw_dst=172.30.0.11,tp_dst=80 actions=load:0xa800006->NXM_NX_REG3[],load:0x1f90->NXM_NX_REG4[0..15],load:0x2->NXM_NX_REG4[16..18]"
	if learned.StringNamed() != want {
		t.Errorf("learned flow\n got %s\nwant %s", learned.StringNamed(), want)
	}
	for bucket := range endpoints {
		next := tcpTo(client, clientPort, vipAffinity, bucket)
		next.TpSrc = 40001
		tr2 := traceServices(t, append(serviceFlows(), learned), next)
		if tr2.Verdict.String() != "Output(4)" || len(tr2.Groups) != 0 {
			t.Errorf("bucket %d after learning: %s groups=%v, want Output(4) without the group", bucket, tr2.Verdict, tr2.Groups)
		}
	}
	other := tcpTo(podB.ip, podB.port, vipAffinity, 0)
	if tr3 := traceServices(t, append(serviceFlows(), learned), other); tr3.Verdict.String() != "Output(3)" {
		t.Errorf("another client follows its own bucket: %s", tr3.Verdict)
	}
}

func TestTraceServiceNoEndpointsAndHairpin(t *testing.T) {
	tr := traceServices(t, serviceFlows(), tcpTo(client, clientPort, vipNoEP, 0))
	if tr.Verdict.String() != "Output(2)" {
		t.Errorf("no endpoints: %s, want the host's reject path Output(2)", tr.Verdict)
	}
	tr = traceServices(t, serviceFlows(), tcpTo(podA.ip, podA.port, vip, 0))
	if tr.Verdict.String() != "Output(3)" {
		t.Fatalf("hairpin verdict %s, want back out of port 3\n%s", tr.Verdict, tr)
	}
	out := tr.OutputPackets[0]
	if out.Src != hairpinSNAT || out.Dst != podA.ip || out.PktMark != 1 || out.SrcMAC != gwMAC || out.CtState&CtSNAT == 0 {
		t.Errorf("hairpin packet %s → %s pkt_mark=%d src MAC %s ct_state %#x", out.Src, out.Dst, out.PktMark, out.SrcMAC, out.CtState)
	}
}
