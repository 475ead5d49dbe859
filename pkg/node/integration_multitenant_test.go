package node_test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// TestIntegrationMultitenant: in multitenant mode pods of different VNIDs
// cannot reach each other (same node and across nodes), pods of the same
// VNID and VNID 0 ("global") can; joining proj2 to proj1 (netid change)
// changes reachability within seconds without restarting anything. The
// in-process tracer's verdicts are cross-checked against ofproto/trace on
// the real bridge (STYLE L10).
func TestIntegrationMultitenant(t *testing.T) {
	c := newITCluster(t, "itmt", networkv1.MultiTenantPluginName, 2, 0)
	a, b := c.nodes[0], c.nodes[1]
	c.netNamespace("proj1", 11)
	c.netNamespace("proj2", 12)
	c.netNamespace("global", 0)
	a1 := a.addPod("proj1", "a1")
	a2 := a.addPod("proj2", "a2")
	ag := a.addPod("global", "ag")
	b1 := b.addPod("proj1", "b1")
	b2 := b.addPod("proj2", "b2")
	for _, p := range []*netlab.Pod{a1, a2, ag, b1, b2} {
		if _, err := p.ServeTCP(itEchoPort); err != nil {
			t.Fatal(err)
		}
	}

	allowed := [][2]*netlab.Pod{{a1, b1}, {b1, a1}, {a2, b2}, {b2, a2}, {ag, a1}, {a1, ag}, {ag, b2}, {b2, ag}, {ag, b1}}
	blocked := [][2]*netlab.Pod{{a1, a2}, {a2, a1}, {a1, b2}, {b2, a1}, {b1, a2}, {a2, b1}, {b1, b2}}
	dropA, dropB := a.packets("table=80,priority=0"), b.packets("table=80,priority=0")
	checkReach(t, allowed, blocked)
	if da, db := a.packets("table=80,priority=0")-dropA, b.packets("table=80,priority=0")-dropB; da == 0 || db == 0 {
		t.Errorf("table 80 priority-0 drop flow did not count the blocked packets: node a +%d, node b +%d", da, db)
	} else {
		t.Logf("table 80 isolation drops: node a +%d, node b +%d packets", da, db)
	}

	t.Run("trace", func(t *testing.T) {
		crossCheckTrace(t, a, map[string]*netlab.Pod{"a1": a1, "a2": a2, "ag": ag, "b1": b1, "b2": b2})
	})

	// Join proj2 to proj1: every pair of the two projects becomes reachable.
	start := time.Now()
	c.netNamespace("proj2", 11)
	joined := [][2]*netlab.Pod{{a1, a2}, {a2, a1}, {a1, b2}, {b2, a1}, {b1, a2}, {a2, b1}, {b1, b2}}
	var took time.Duration
	for _, pr := range joined {
		for {
			err := reachable(pr[0], pr[1], 300*time.Millisecond)
			if err == nil {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("after join: %s → %s still blocked after %v: %v", pr[0].Name, pr[1].Name, time.Since(start), err)
			}
		}
		took = time.Since(start)
	}
	t.Logf("join proj2 → proj1: all %d pairs reachable %v after the NetNamespace update", len(joined), took.Round(time.Millisecond))
	// Isolate again (netid back to 12): blocked again, global still reaches.
	start = time.Now()
	c.netNamespace("proj2", 12)
	for {
		err := reachable(a1, b2, 300*time.Millisecond)
		if err != nil {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("after isolate: a1 → b2 still reachable after 5 s")
		}
	}
	t.Logf("isolate proj2 again: a1 → b2 blocked %v after the update", time.Since(start).Round(time.Millisecond))
	checkReach(t, [][2]*netlab.Pod{{ag, b2}, {a1, b1}}, blocked)
}

// checkReach checks TCP reachability of every pair concurrently: allowed
// pairs must answer within 3 s, blocked ones must not connect within 1 s.
func checkReach(t *testing.T, allowed, blocked [][2]*netlab.Pod) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for _, pr := range allowed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := reachable(pr[0], pr[1], 3*time.Second); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("want allowed %s → %s: %v", pr[0].Name, pr[1].Name, err))
				mu.Unlock()
			}
		}()
	}
	for _, pr := range blocked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pr[0].TCPConnect(pr[1].IP.Addr(), itEchoPort, time.Second); err == nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("want blocked %s → %s: connected", pr[0].Name, pr[1].Name))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Error(joinLines(errs))
	}
}

// crossCheckTrace traces packets with the in-process tracer through the
// flows the agent of n holds and with ofproto/trace through n's real br0,
// and requires the same verdict (drop in the same table, output to the same
// port, or tunnel to the same node with the same VNI).
func crossCheckTrace(t *testing.T, n *itNode, pods map[string]*netlab.Pod) {
	flows := n.currentAgent().Store().All()
	dumped := n.dumpFlows("")
	if len(dumped) != len(flows) {
		t.Errorf("br0 holds %d flows, the agent's store %d", len(dumped), len(flows))
	}
	odp := n.odpToOFPort(t)
	ip := func(name string) netip.Addr { return pods[name].IP.Addr() }
	port := func(name string) uint32 { return uint32(pods[name].OFPort) }
	nodeB := netip.MustParseAddr("198.18.0.12")
	unknown := netip.MustParseAddr("198.18.0.99")
	cases := []struct {
		name string
		p    ovs.Packet
		want string
	}{
		{"a1 → a2 other VNID", ovs.Packet{InPort: port("a1"), Proto: ovs.ProtoICMP, Src: ip("a1"), Dst: ip("a2")}, "Drop(PolicyIngress(80))"},
		{"a1 → ag global", ovs.Packet{InPort: port("a1"), Proto: ovs.ProtoTCP, Src: ip("a1"), Dst: ip("ag"), TpDst: 8080}, fmt.Sprintf("Output(%d)", port("ag"))},
		{"ag → a2", ovs.Packet{InPort: port("ag"), Proto: ovs.ProtoTCP, Src: ip("ag"), Dst: ip("a2"), TpDst: 8080}, fmt.Sprintf("Output(%d)", port("a2"))},
		{"a1 → b1 over VXLAN", ovs.Packet{InPort: port("a1"), Proto: ovs.ProtoTCP, Src: ip("a1"), Dst: ip("b1"), TpDst: 8080}, fmt.Sprintf("Tunnel(%s, 0xb)", nodeB)},
		{"a2 → b1 over VXLAN (isolated at b)", ovs.Packet{InPort: port("a2"), Proto: ovs.ProtoUDP, Src: ip("a2"), Dst: ip("b1"), TpDst: 53}, fmt.Sprintf("Tunnel(%s, 0xc)", nodeB)},
		{"VXLAN from b, VNID 11 → a1", ovs.Packet{InPort: 1, Proto: ovs.ProtoTCP, Src: ip("b1"), Dst: ip("a1"), TpDst: 8080, TunSrc: nodeB, TunID: 11}, fmt.Sprintf("Output(%d)", port("a1"))},
		{"VXLAN from b, VNID 12 → a1", ovs.Packet{InPort: 1, Proto: ovs.ProtoTCP, Src: ip("b2"), Dst: ip("a1"), TpDst: 8080, TunSrc: nodeB, TunID: 12}, "Drop(PolicyIngress(80))"},
		{"VXLAN from unknown node", ovs.Packet{InPort: 1, Proto: ovs.ProtoTCP, Src: ip("b1"), Dst: ip("a1"), TpDst: 8080, TunSrc: unknown, TunID: 11}, "Drop(VXLANIngress(10))"},
		{"a1 spoofed source", ovs.Packet{InPort: port("a1"), Proto: ovs.ProtoICMP, Src: netip.MustParseAddr("10.128.0.99"), Dst: ip("b1")}, "Drop(PodAntiSpoof(20))"},
		{"a1 sends VXLAN", ovs.Packet{InPort: port("a1"), Proto: ovs.ProtoUDP, Src: ip("a1"), Dst: nodeB, TpDst: 4789}, "Drop(PodAntiSpoof(20))"},
		{"a1 ARP for a2", ovs.Packet{InPort: port("a1"), Proto: ovs.ProtoARP, Src: ip("a1"), Dst: ip("a2"), SrcMAC: mac(ip("a1"))}, fmt.Sprintf("Output(%d)", port("a2"))},
		{"a1 ARP claiming a2", ovs.Packet{InPort: port("a1"), Proto: ovs.ProtoARP, Src: ip("a2"), Dst: ip("b1"), SrcMAC: mac(ip("a2"))}, "Drop(PodAntiSpoof(20))"},
		{"a1 ARP wrong sha", ovs.Packet{InPort: port("a1"), Proto: ovs.ProtoARP, Src: ip("a1"), Dst: ip("b1"), SrcMAC: mac(netip.MustParseAddr("10.128.0.99"))}, "Drop(PodAntiSpoof(20))"},
		{"a1 → service", ovs.Packet{InPort: port("a1"), Proto: ovs.ProtoTCP, Src: ip("a1"), Dst: netip.MustParseAddr("172.30.0.10"), TpDst: 80}, "Output(2)"},
		{"gateway → a2", ovs.Packet{InPort: 2, Proto: ovs.ProtoTCP, Src: n.subnet.Addr().Next(), Dst: ip("a2"), TpDst: 8080}, fmt.Sprintf("Output(%d)", port("a2"))},
	}
	for _, tc := range cases {
		tr, err := ovs.TraceFlows(flows, tc.p)
		if err != nil {
			t.Errorf("%s: in-process trace: %v", tc.name, err)
			continue
		}
		mine := tr.Verdict.String()
		real, raw := n.ofprotoTrace(t, tc.p, odp)
		if mine != tc.want || real != tc.want {
			t.Errorf("%s: in-process tracer %s, ofproto/trace %s, want %s\nin-process:\n%s\nofproto/trace:\n%s", tc.name, mine, real, tc.want, tr, raw)
		}
	}
	t.Logf("%d packets: in-process tracer and ofproto/trace agree", len(cases))
}

func mac(ip netip.Addr) ovs.MAC {
	m := netlab.PodMAC(ip)
	var out ovs.MAC
	copy(out[:], m)
	return out
}
