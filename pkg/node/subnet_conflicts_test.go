package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned/fake"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

var conflictEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// agedHostSubnet is hostSubnet created age seconds after conflictEpoch.
func agedHostSubnet(name, ip, subnet string, age int) *networkv1.HostSubnet {
	hs := hostSubnet(name, ip, subnet)
	hs.CreationTimestamp = metav1.NewTime(conflictEpoch.Add(time.Duration(age) * time.Second))
	return hs
}

// The conflict cases: node1 is this node, node2 (oldest remote) wins;
// every other HostSubnet but "inside" (ignored: not a node subnet) loses to
// node2 or to node1. (Node subnets of one cluster network all have one
// length, so overlapping ones are equal.)
func conflictObjects() (base []runtime.Object, hss []*networkv1.HostSubnet) {
	base = []runtime.Object{testClusterNetwork(), netNamespace("ns1", 11), netNamespace("ns2", 12)}
	hss = []*networkv1.HostSubnet{
		agedHostSubnet("node1", "10.0.0.1", "10.128.0.0/23", 0),
		agedHostSubnet("node2", "10.0.0.2", "10.128.2.0/23", 1),
		agedHostSubnet("a-same-subnet", "10.0.0.7", "10.128.2.0/23", 5), // sorts before node2
		agedHostSubnet("z-same-subnet", "10.0.0.8", "10.128.2.0/23", 6),
		agedHostSubnet("inside", "10.0.0.9", "10.128.2.0/24", 7), // not a node subnet: no flows, no part in conflicts
		agedHostSubnet("dup-hostip", "10.0.0.2", "10.128.6.0/23", 8),
		agedHostSubnet("on-my-subnet", "10.0.0.10", "10.128.0.0/23", 9),
	}
	return base, hss
}

// TestAgentIgnoresConflictLosersInAnyOrder (issue 17 item 6): whatever
// order the agent learns the HostSubnets in — listed at start in any
// order, some of them arriving as events later, in any order — and across
// agent restarts, only the winners get flows: the newcomers overlapping
// node2's subnet or sharing its hostIP never take its traffic, and none
// is in the multicast replication list.
func TestAgentIgnoresConflictLosersInAnyOrder(t *testing.T) {
	want := expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb})
	sw := newFakeSwitch(podPort("ns1", "a", "10.128.0.2", 3), podPort("ns2", "b", "10.128.0.3", 4))
	br := ovs.NewFakeBridge()
	rng := rand.New(rand.NewPCG(17, 6))
	for round := 0; round < 12; round++ {
		base, hss := conflictObjects()
		rng.Shuffle(len(hss), func(i, j int) { hss[i], hss[j] = hss[j], hss[i] })
		// node1 (own) must exist at start; in odd rounds only a random
		// prefix of the others is there at start, the rest arrives while
		// the agent runs.
		atStart := len(hss)
		if round%2 == 1 {
			atStart = 1 + rng.IntN(len(hss))
		}
		objs := base
		var later []*networkv1.HostSubnet
		for i, hs := range hss {
			if i < atStart || hs.Name == "node1" {
				objs = append(objs, hs)
			} else {
				later = append(later, hs)
			}
		}
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			before := br.FlowMods()
			e := newAgentEnvWithClient(t, br, sw, fake.NewSimpleClientset(objs...))
			e.start()
			for _, hs := range later {
				if _, err := e.client.NetworkV1().HostSubnets().Create(context.Background(), hs, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			e.expect("only the winners have flows", want)
			e.eventually("every HostSubnet seen", func() string {
				if n := len(e.agent.env.losers); n != len(hss)-3 {
					return fmt.Sprintf("%d losers, want %d", n, len(hss)-3)
				}
				return ""
			})
			e.expect("only the winners have flows, all HostSubnets seen", want)
			// A restarted agent that lists every HostSubnet at start (in
			// another order) changes no flow.
			if d := br.FlowMods() - before; round > 0 && len(later) == 0 && d != 0 {
				t.Errorf("restarted agent (HostSubnets in another order) modified %d flows, want 0", d)
			}
		})
	}
}

// TestAgentPromotesLoserWhenWinnerDeleted: deleting the winner gives its
// subnet to the (now oldest) loser in one pass; a winner recreated later is
// younger and loses in turn.
func TestAgentPromotesLoserWhenWinnerDeleted(t *testing.T) {
	ctx := context.Background()
	base, _ := conflictObjects()
	newcomer := agedHostSubnet("newcomer", "10.0.0.7", "10.128.2.0/23", 5)
	objs := append(base, agedHostSubnet("node1", "10.0.0.1", "10.128.0.0/23", 0),
		agedHostSubnet("node2", "10.0.0.2", "10.128.2.0/23", 1), newcomer)
	e := newAgentEnv(t, ovs.NewFakeBridge(), newFakeSwitch(podPort("ns1", "a", "10.128.0.2", 3), podPort("ns2", "b", "10.128.0.3", 4)), objs...)
	e.start()
	e.expect("node2 wins", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb}))

	if err := e.client.NetworkV1().HostSubnets().Delete(ctx, "node2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	promoted := pipeline.RemoteNode{Name: "newcomer", UID: "uid-newcomer", HostIP: netip.MustParseAddr("10.0.0.7"), Subnet: netip.MustParsePrefix("10.128.2.0/23")}
	e.expect("newcomer promoted", expectedFlows([]pipeline.RemoteNode{promoted}, []pipeline.PodInfo{pa, pb}))

	if _, err := e.client.NetworkV1().HostSubnets().Create(ctx, agedHostSubnet("node2", "10.0.0.2", "10.128.2.0/23", 60), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("recreated node2 loses", func() string {
		if _, lost := e.agent.env.losers["node2"]; !lost {
			return "node2 is not a loser"
		}
		return ""
	})
	e.expect("newcomer keeps the subnet", expectedFlows([]pipeline.RemoteNode{promoted}, []pipeline.PodInfo{pa, pb}))
}

// TestAgentWaitsWhileOwnHostSubnetLoses: an agent whose own HostSubnet
// loses to an older one installs nothing; once the conflict is gone it
// starts.
func TestAgentWaitsWhileOwnHostSubnetLoses(t *testing.T) {
	base, _ := conflictObjects()
	objs := append(base, agedHostSubnet("node1", "10.0.0.1", "10.128.0.0/23", 5),
		agedHostSubnet("squatter", "10.0.0.50", "10.128.0.0/23", 1))
	e := newAgentEnv(t, ovs.NewFakeBridge(), newFakeSwitch(), objs...)
	go func() {
		time.Sleep(1500 * time.Millisecond) // the first retries of waitOwnSubnet
		if n := len(e.br.Flows()); n != 0 || e.agent.Ready() {
			t.Errorf("%d flows installed (ready %v) while the own HostSubnet loses", n, e.agent.Ready())
		}
		if err := e.client.NetworkV1().HostSubnets().Delete(context.Background(), "squatter", metav1.DeleteOptions{}); err != nil {
			t.Error(err)
		}
	}()
	e.start()
	e.expect("started", expectedFlows(nil, nil))
}
