package ovs_test

import (
	"net/netip"
	"strings"
	"testing"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

type packetFlowTest struct {
	name        string
	packet      Packet
	wantVerdict string
}

func ipPacket(from testPod, dst netip.Addr, proto Proto, port uint16) Packet {
	return Packet{InPort: from.port, Proto: proto, Src: from.ip, Dst: dst, TpDst: port}
}

func TestTraceSamplePipeline(t *testing.T) {
	remotePod := netip.MustParseAddr("10.129.0.9")
	tests := []packetFlowTest{
		// A pod's packet to its own address reaches table 80 but OVS never
		// outputs it back to its input port.
		{"to itself: no output to in_port", ipPacket(podA, podA.ip, ProtoTCP, 22), "Drop(PolicyIngress(80))"},
		{"VNID 5 to VNID 6 tcp/22: isolated", ipPacket(podA, podB.ip, ProtoTCP, 22), "Drop(PolicyIngress(80))"},
		{"VNID 5 to VNID 6 tcp/80: conjunction allows", ipPacket(podA, podB.ip, ProtoTCP, 80), "Output(4)"},
		{"VNID 5 to VNID 6 tcp/8085: masked port range", ipPacket(podA, podB.ip, ProtoTCP, 8085), "Output(4)"},
		{"VNID 5 to VNID 6 tcp/8096: outside range", ipPacket(podA, podB.ip, ProtoTCP, 8096), "Drop(PolicyIngress(80))"},
		{"VNID 5 to VNID 6 udp/80: wrong protocol", ipPacket(podA, podB.ip, ProtoUDP, 80), "Drop(PolicyIngress(80))"},
		{"VNID 6 to VNID 5: no policy", ipPacket(podB, podA.ip, ProtoTCP, 80), "Drop(PolicyIngress(80))"},
		{"VNID 6 to VNID 0: global", ipPacket(podB, podC.ip, ProtoTCP, 80), "Output(5)"},
		{"VNID 0 to VNID 6: global", ipPacket(podC, podB.ip, ProtoTCP, 80), "Output(4)"},
		{"spoofed source", Packet{InPort: podA.port, Proto: ProtoTCP, Src: podB.ip, Dst: podC.ip}, "Drop(PodAntiSpoof(20))"},
		{"pod emits VXLAN", ipPacket(podA, remotePod, ProtoUDP, 4789), "Drop(PodAntiSpoof(20))"},
		{"to remote pod", ipPacket(podA, remotePod, ProtoTCP, 80), "Tunnel(192.168.1.2, 0x5)"},
		{"to service", ipPacket(podA, netip.MustParseAddr("172.30.0.10"), ProtoTCP, 443), "Output(2)"},
		{"to gateway", ipPacket(podB, gateway, ProtoICMP, 0), "Output(2)"},
		{"external", ipPacket(podB, netip.MustParseAddr("8.8.8.8"), ProtoUDP, 53), "Output(2)"},
		{"DNS to node IP", ipPacket(podB, nodeIP, ProtoUDP, 53), "Output(2)"},
		{"GRE of VNID 10 dropped", Packet{InPort: 6, Proto: ProtoIP, IPProto: 47, Src: netip.MustParseAddr("10.128.0.8"), Dst: netip.MustParseAddr("8.8.8.8")}, "Drop(PodAntiSpoof(20))"},
		{"ARP for local pod", Packet{InPort: podA.port, Proto: ProtoARP, Src: podA.ip, Dst: podB.ip, SrcMAC: MAC{0, 0, 10, 128, 0, 5}}, "Output(4)"},
		{"ARP with wrong sha", Packet{InPort: podA.port, Proto: ProtoARP, Src: podA.ip, Dst: podB.ip, SrcMAC: MAC{0, 0, 10, 128, 0, 6}}, "Drop(PodAntiSpoof(20))"},
		{"ARP for remote pod", Packet{InPort: podA.port, Proto: ProtoARP, Src: podA.ip, Dst: remotePod, SrcMAC: MAC{0, 0, 10, 128, 0, 5}}, "Tunnel(192.168.1.2, 0x5)"},
		{"VXLAN from known node, VNID 5", Packet{InPort: vxlanPort, Proto: ProtoTCP, Src: remotePod, Dst: podA.ip, TunSrc: remoteNode, TunID: 5}, "Output(3)"},
		{"VXLAN from known node, VNID 5 to podB tcp/80", Packet{InPort: vxlanPort, Proto: ProtoTCP, Src: remotePod, Dst: podB.ip, TpDst: 80, TunSrc: remoteNode, TunID: 5}, "Output(4)"},
		{"VXLAN from unknown node", Packet{InPort: vxlanPort, Proto: ProtoTCP, Src: remotePod, Dst: podA.ip, TunSrc: netip.MustParseAddr("192.168.1.99"), TunID: 5}, "Drop(VXLANIngress(10))"},
		{"host to pod", Packet{InPort: tun0Port, Proto: ProtoTCP, Src: gateway, Dst: podB.ip, TpDst: 8080}, "Output(4)"},
		{"host multicast dropped", Packet{InPort: tun0Port, Proto: ProtoUDP, Src: netip.MustParseAddr("10.128.0.50"), Dst: netip.MustParseAddr("239.1.1.1")}, "Drop(Classifier(0))"},
		{"reply un-NATed into LocalPod", Packet{InPort: podB.port, Proto: ProtoTCP, Src: podB.ip, Dst: podA.ip, CtReply: true}, "Drop(PolicyIngress(80))"},
		{"multicast from VNID 5", ipPacket(podA, netip.MustParseAddr("239.1.1.1"), ProtoUDP, 5000), "Tunnel(192.168.1.2, 0x5)"},
		{"multicast from VNID 6", ipPacket(podB, netip.MustParseAddr("239.1.1.1"), ProtoUDP, 5000), "Drop(MulticastFromLocal(110))"},
	}
	runPacketFlowTests(t, samplePipeline(), tests)
}

func runPacketFlowTests(t *testing.T, flows []Flow, tests []packetFlowTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := TraceFlows(flows, tt.packet)
			if err != nil {
				t.Fatalf("trace: %v\n%s", err, tr)
			}
			if got := tr.Verdict.String(); got != tt.wantVerdict {
				t.Errorf("verdict %s, want %s; trace:\n%s", got, tt.wantVerdict, tr)
			}
		})
	}
}

func TestTraceDetails(t *testing.T) {
	tr, err := TraceFlows(samplePipeline(), ipPacket(podA, netip.MustParseAddr("239.1.1.1"), ProtoUDP, 5000))
	if err != nil {
		t.Fatal(err)
	}
	// Multicast goes to the remote node and to local pods of the VNID, but
	// not back to the sender: OVS skips output to the input port (3).
	if len(tr.Outputs) != 1 || tr.Outputs[0].String() != "Tunnel(192.168.1.2, 0x5)" {
		t.Errorf("outputs = %v", tr.Outputs)
	}
	var visited []string
	for _, tb := range tr.Tables {
		visited = append(visited, tb.String())
	}
	// 0 twice: ct(table=0) recirculates.
	if got, want := strings.Join(visited, " "), "0 0 20 27 30 31 110 111 120"; got != want {
		t.Errorf("tables = %s, want %s", got, want)
	}
	if tr.Packet.Regs[SrcVNIDField.Reg] != 5 || tr.Packet.CtState != CtTrk|CtNew {
		t.Errorf("final packet state: reg0=%d ct=%#x", tr.Packet.Regs[0], tr.Packet.CtState)
	}
}

func TestTraceAmbiguousAndLoop(t *testing.T) {
	flows := []Flow{
		NewFlow(TableClassifier, 5).MatchIPv4().Action(Output(1)),
		NewFlow(TableClassifier, 5).MatchInPort(3).Action(Output(2)),
	}
	if _, err := TraceFlows(flows, Packet{InPort: 3, Proto: ProtoIP}); err == nil || !strings.Contains(err.Error(), "both match") {
		t.Errorf("ambiguous match not reported: %v", err)
	}
	group := []Flow{NewFlow(TableClassifier, 5).MatchIPv4().Action(GroupAction(9))}
	if tr, err := TraceFlows(group, Packet{Proto: ProtoTCP}); err != nil || tr.Verdict.String() != "Group(9)" {
		t.Errorf("group: %v %v", tr.Verdict, err)
	}
	loop := []Flow{NewFlow(TableClassifier, 5).Action(ResubmitTo(TableClassifier))}
	if _, err := TraceFlows(loop, Packet{}); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Errorf("loop not reported: %v", err)
	}
	tr, err := TraceFlows(nil, Packet{})
	if err != nil || tr.Verdict.String() != "Drop(Classifier(0))" {
		t.Errorf("empty pipeline: %v %v", tr.Verdict, err)
	}
}
