package pipeline_test

import (
	"net/netip"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// Egress IP fixture on node-a of the multitenant scenario: shop (VNID 10,
// pod web) asks for egressShop; blog (VNID 11, pod blog) for egressBlog,
// which no node holds.
var (
	egressShop = netip.MustParseAddr("192.168.126.100")
	egressBlog = netip.MustParseAddr("192.168.126.101")
	outside    = netip.MustParseAddr("203.0.113.1")
)

// egressBridge is node-a (multitenant) with the egress flows of shop held by
// egressNode (node-b's IP, or node-a's own when local) and blog's dropped.
func egressBridge(local bool) ([]ovs.Flow, []ovs.GroupEntry) {
	s := scenarioNamed("multitenant")
	flows := s.flows()
	shop := pipeline.EgressNode{IP: egressShop, HostIP: nodeB.HostIP}
	if local {
		shop.HostIP, shop.Local = fxNodeIP, true
		flows = append(flows, pipeline.EgressIPHostFlows(s.cfg, []netip.Addr{egressShop})...)
	}
	f, groups := pipeline.EgressIPFlows(s.cfg, podWeb.VNID, []pipeline.EgressNode{shop})
	flows = append(flows, f...)
	f, _ = pipeline.EgressIPFlows(s.cfg, podBlog.VNID, nil)
	return append(flows, f...), groups
}

func TestEgressIPGolden(t *testing.T) {
	c := fxConfig(clusternetwork.ModeMultitenant)
	var flows []ovs.Flow
	var groups []ovs.GroupEntry
	for _, active := range [][]pipeline.EgressNode{
		nil,
		{{IP: egressShop, HostIP: nodeB.HostIP}, {IP: egressBlog, HostIP: nodeC.HostIP}},
		{{IP: egressShop, HostIP: nodeB.HostIP}, {IP: egressBlog, HostIP: fxNodeIP, Local: true}},
	} {
		f, g := pipeline.EgressIPFlows(c, uint32(20+len(flows)), active)
		flows, groups = append(flows, f...), append(groups, g...)
	}
	flows = append(flows, pipeline.EgressIPHostFlows(c, []netip.Addr{egressShop, egressBlog})...)
	ovstest.AssertGoldenWithGroups(t, "egressip", groups, flows)
	if err := pipeline.CheckFlowBands(pipeline.StageEgressIP, flows); err != nil {
		t.Error(err)
	}
	for _, g := range groups {
		if err := ovs.ValidateGroupEntry(g); err != nil {
			t.Error(err)
		}
	}
	if len(groups) != 2 || len(groups[1].Buckets) != 1 {
		t.Errorf("groups %v: want a 2-bucket group and, with a local egress IP, a group of the local bucket only", groups)
	}
}

func traceEgress(t *testing.T, flows []ovs.Flow, groups []ovs.GroupEntry, p ovs.Packet) ovs.Trace {
	t.Helper()
	tr, err := ovs.TraceWithGroups(flows, groups, p)
	if err != nil {
		t.Fatalf("trace: %v\n%s", err, tr)
	}
	return tr
}

// TestTraceEgressIP: shop's traffic leaving the cluster goes to its egress
// node, through the tunnel with its VNID, or SNATed to the egress IP and
// out tun0 when this node holds it; blog, whose egress IP no node holds,
// is dropped, never sent out with the node's address; replies of
// connections a pod serves leave normally; cluster traffic is untouched.
func TestTraceEgressIP(t *testing.T) {
	remote, rgroups := egressBridge(false)
	tr := traceEgress(t, remote, rgroups, fromPod(podWeb, outside, ovs.ProtoTCP, 80))
	if got := tr.Verdict.String(); got != "Tunnel(192.168.126.11, 0xa)" {
		t.Errorf("shop → outside, egress IP on node-b: %s\n%s", got, tr)
	}
	tr = traceEgress(t, remote, rgroups, fromPod(podBlog, outside, ovs.ProtoTCP, 80))
	if tr.Verdict.Kind != ovs.VerdictDrop || tr.Verdict.Table != ovs.TableEgressRouting {
		t.Errorf("blog → outside, no active egress IP: %s, want a drop in EgressRouting\n%s", tr.Verdict, tr)
	}
	reply := fromPod(podBlog, outside, ovs.ProtoTCP, 40000)
	reply.TpSrc, reply.CtReply = 8080, true
	if tr := traceEgress(t, remote, rgroups, reply); tr.Verdict.String() != "Output(2)" {
		t.Errorf("blog serving an outside client: reply %s, want Output(2)\n%s", tr.Verdict, tr)
	}
	if tr := traceEgress(t, remote, rgroups, fromPod(podWeb, remoteOnB, ovs.ProtoTCP, 80)); tr.Verdict.String() != "Tunnel(192.168.126.11, 0xa)" {
		t.Errorf("shop → a pod on node-b: %s\n%s", tr.Verdict, tr)
	}

	local, lgroups := egressBridge(true)
	tr = traceEgress(t, local, lgroups, fromPod(podWeb, outside, ovs.ProtoTCP, 80))
	if tr.Verdict.String() != "Output(2)" {
		t.Fatalf("shop → outside, egress IP held here: %s, want Output(2)\n%s", tr.Verdict, tr)
	}
	if out := tr.OutputPackets[0]; out.Src != egressShop || out.DstMAC != fxConfig(clusternetwork.ModeMultitenant).GatewayMAC() {
		t.Errorf("leaves as %s to %s, want the egress IP %s to tun0's MAC", out.Src, out.DstMAC, egressShop)
	}
	// A remote pod of shop, tunneled here by its node: SNATed the same way.
	fromB := ovs.Packet{InPort: pipeline.OFPortVXLAN, TunSrc: nodeB.HostIP, TunID: uint64(podWeb.VNID), Proto: ovs.ProtoTCP,
		Src: remoteOnB, Dst: outside, TpSrc: 40000, TpDst: 80}
	tr = traceEgress(t, local, lgroups, fromB)
	if tr.Verdict.String() != "Output(2)" || tr.OutputPackets[0].Src != egressShop {
		t.Errorf("a pod of node-b through its egress node: %s\n%s", tr.Verdict, tr)
	}
	// The reply from outside, routed by the host into br0: un-SNATed and
	// delivered to the pod.
	back := ovs.Packet{InPort: pipeline.OFPortTun0, Proto: ovs.ProtoTCP, Src: outside, Dst: egressShop, TpSrc: 80, TpDst: 40000,
		CtReply: true, CtSNAT: ovs.NATBinding{From: netip.AddrPortFrom(podWeb.IP, 40000), To: netip.AddrPortFrom(egressShop, 40000), Zone: ovs.EgressZone}}
	tr = traceEgress(t, local, lgroups, back)
	if tr.Verdict.String() != "Output(3)" || tr.OutputPackets[0].Dst != podWeb.IP {
		t.Errorf("reply to the egress IP: %s\n%s", tr.Verdict, tr)
	}
}
