package node_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/openflow"
)

// TestIntegrationChurnVswitchdRestart: pods are added and deleted through
// the real CNI path (libcni, sdn-cni, the agent with its default OpenFlow
// transport) while ovs-vswitchd is killed and restarted twice. ADDs and
// DELs that meet the outage fail with "try again later" or wait for OVS
// and are retried, as a container runtime does. Afterwards the agent has
// reconnected (new OpenFlow connections), and br0 holds exactly the
// agent's desired flows — none lost, none left over from deleted pods,
// none twice — every live pod has its port and flows, and every deleted
// pod has neither.
func TestIntegrationChurnVswitchdRestart(t *testing.T) {
	if itTransport() != "openflow" {
		t.Skip("exercises the OpenFlow transport's reconnect")
	}
	c := newITCluster(t, "itchurn", networkv1.NetworkPolicyPluginName, 1, 0)
	c.netNamespace(cniPodNS, cniPodVNID)
	n := newCNINode(t, c.nodes[0], buildCNIPlugin(t))
	n.stopAgent()
	n.startCNIAgent(true)
	n.loadConflist()
	ag := n.currentAgent()
	fb, ok := ag.br.Bridge.(interface{ OpenFlow() *openflow.Bridge })
	if !ok || fb.OpenFlow() == nil {
		t.Fatalf("agent bridge is %T, want the OpenFlow transport", ag.br.Bridge)
	}
	of := fb.OpenFlow()

	ch := &churn{n: n, rng: rand.New(rand.NewPCG(7, 9))}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- ch.run(stop) }()
	for i := range 2 {
		time.Sleep(1500 * time.Millisecond)
		t.Logf("restart %d of ovs-vswitchd after %d ADDs, %d DELs, %d retried calls", i+1, ch.adds, ch.dels, ch.retries)
		if err := n.Restart(netlab.OVSVswitchd); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("churn: %d ADDs, %d DELs, %d calls retried; %d pods live; %d OpenFlow connections made",
		ch.adds, ch.dels, ch.retries, len(ch.live), of.Dials())
	if of.Dials() < 3 {
		t.Errorf("%d OpenFlow connections over two ovs-vswitchd restarts, want at least 3", of.Dials())
	}
	n.eventually(15*time.Second, "br0 equal to the agent's flows", func() bool { return len(flowDiff(n, ag)) == 0 })
	if d := flowDiff(n, ag); len(d) > 0 {
		t.Errorf("br0 differs from the agent's desired flows:\n%s", joinLines(d))
	}
	for _, p := range ch.live {
		p.assertAttached(t)
	}
	for _, p := range ch.gone {
		p.assertDetached(t)
	}
}

// churn adds and deletes pods on one node, retrying what fails. Its
// counters are read while it runs (for logs only).
type churn struct {
	n                   *cniNode
	rng                 *rand.Rand
	live, gone          []*cniPod
	adds, dels, retries int
}

// run churns until stop is closed; a call failing for 30 s is an error.
func (c *churn) run(stop chan struct{}) error {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		if len(c.live) > 4 && c.rng.IntN(3) == 0 {
			k := c.rng.IntN(len(c.live))
			p := c.live[k]
			if err := c.retry("DEL "+p.name, func() error { return c.n.del(p) }); err != nil {
				return err
			}
			c.live = slices.Delete(c.live, k, k+1)
			c.gone = append(c.gone, p)
			c.dels++
			continue
		}
		p := c.n.newPod(fmt.Sprintf("ch%d", i))
		err := c.retry("ADD "+p.name, func() error {
			r, err := cniAdd(c.n, p)
			if err == nil {
				err = p.record(r)
			}
			return err
		})
		if err != nil {
			return err
		}
		c.live = append(c.live, p)
		c.adds++
	}
}

// retry calls op until it succeeds (30 s at most), as a runtime retries a
// failed CNI call.
func (c *churn) retry(what string, op func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := op()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still failing after 30 s: %w", what, err)
		}
		c.retries++
		time.Sleep(200 * time.Millisecond)
	}
}

// flowDiff compares br0 (ovs-ofctl dump, every flow counted) with the
// agent's desired flows and returns the differences.
func flowDiff(n *cniNode, ag *itAgent) []string {
	count := map[string]int{}
	for _, f := range n.dumpFlows("") {
		if ovs.CookieCategoryOf(f.Cookie) != ovs.CookieLearned {
			count[f.Canonical()]++
		}
	}
	for _, f := range ag.Store().All() {
		count[f.Canonical()]--
	}
	var out []string
	for k, v := range count {
		switch {
		case v > 0:
			out = append(out, fmt.Sprintf("on br0 %d× but not desired: %s", v, k))
		case v < 0:
			out = append(out, "desired but missing on br0: "+k)
		}
	}
	slices.Sort(out)
	return out
}
