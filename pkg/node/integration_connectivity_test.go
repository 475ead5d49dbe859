package node_test

import (
	"testing"
	"time"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
)

// TestIntegrationConnectivity: in networkpolicy mode (no policies: every
// pod reaches every pod), the agents' flows carry ping and TCP between pods
// on one node and across nodes over VXLAN, on real OVS.
func TestIntegrationConnectivity(t *testing.T) {
	c := newITCluster(t, "itconn", networkv1.NetworkPolicyPluginName, 2, 0)
	a, b := c.nodes[0], c.nodes[1]
	c.netNamespace("proj1", 11)
	c.netNamespace("proj2", 12)
	a1 := a.addPod("proj1", "a1")
	a2 := a.addPod("proj2", "a2")
	b1 := b.addPod("proj1", "b1")
	pods := []*netlab.Pod{a1, a2, b1}
	for _, p := range pods {
		if _, err := p.ServeTCP(itEchoPort); err != nil {
			t.Fatal(err)
		}
	}
	for _, from := range pods {
		for _, to := range pods {
			if from == to {
				continue
			}
			if err := from.Ping(to.IP.Addr(), 3); err != nil {
				t.Errorf("ping %s → %s: %v", from.Name, to.Name, err)
			}
			if err := reachable(from, to, 3*time.Second); err != nil {
				t.Errorf("tcp %s → %s: %v", from.Name, to.Name, err)
			}
		}
	}
	if t.Failed() {
		return
	}

	// Numbers: cross-node and same-node ping RTT, TCP connect latency.
	for _, pair := range [][2]*netlab.Pod{{a1, b1}, {a1, a2}} {
		st, err := pair[0].PingStats(pair[1].IP.Addr(), 20, 20*time.Millisecond)
		if err != nil || st.Received < st.Sent-1 {
			t.Errorf("ping %s → %s: %v, %v", pair[0].Name, pair[1].Name, st, err)
		}
		t.Logf("ping %s → %s: %v", pair[0].Name, pair[1].Name, st)
		var conns []time.Duration
		for i := 0; i < 20; i++ {
			start := time.Now()
			if err := pair[0].TCPConnect(pair[1].IP.Addr(), itEchoPort, 3*time.Second); err != nil {
				t.Errorf("tcp %s → %s: %v", pair[0].Name, pair[1].Name, err)
				break
			}
			conns = append(conns, time.Since(start))
		}
		if len(conns) > 0 {
			t.Logf("tcp connect+greeting %s → %s: median %v, max %v (n=%d)", pair[0].Name, pair[1].Name,
				median(conns).Round(time.Microsecond), maxDur(conns).Round(time.Microsecond), len(conns))
		}
	}
	for _, n := range c.nodes {
		cnt, sum := n.currentAgent().fullSyncStats(t)
		if cnt == 0 {
			t.Errorf("agent %s: no full sync recorded", n.name)
			continue
		}
		t.Logf("agent %s: %d flows on br0, start-up full sync %v", n.name, len(n.dumpFlows("")),
			time.Duration(sum/float64(cnt)*float64(time.Second)).Round(time.Microsecond))
	}
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
