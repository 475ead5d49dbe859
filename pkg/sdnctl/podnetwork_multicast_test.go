package sdnctl

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	networkfake "github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned/fake"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// fakeAgents stands in for the node agents and their bridges: table 110 of a node holds
// the flow of every VNID it applied, and a node applies the VNIDs whose NetNamespaces are
// all annotated, as an agent renders them, on its lag+1-th read after that set changed; a
// stuck node keeps what it applied.
type fakeAgents struct {
	network *networkfake.Clientset
	lag     int
	stuck   map[string]bool

	mu      sync.Mutex
	seen    map[string]int      // node → reads since the set changed
	last    map[string]string   // node → the set it last saw
	applied map[string][]uint32 // node → the VNIDs in its table 110
	reads   int
}

func newFakeAgents(network *networkfake.Clientset, lag int) *fakeAgents {
	return &fakeAgents{network: network, lag: lag, seen: map[string]int{}, last: map[string]string{}, applied: map[string][]uint32{}}
}

func (a *fakeAgents) enabled() []uint32 {
	list, _ := a.network.NetworkV1().NetNamespaces().List(context.Background(), metav1.ListOptions{})
	on := map[uint32]bool{}
	for _, nn := range list.Items {
		if _, seen := on[nn.NetID]; !seen {
			on[nn.NetID] = true
		}
		on[nn.NetID] = on[nn.NetID] && multicastOn(&nn)
	}
	var out []uint32
	for id, ok := range on {
		if ok {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func (a *fakeAgents) DumpFlows(_ context.Context, target string, f ovs.Filter) ([]ovs.DumpedFlow, error) {
	node := filepath.Base(filepath.Dir(strings.TrimPrefix(target, "unix:")))
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reads++
	if ids := a.enabled(); !a.stuck[node] {
		if key := fmt.Sprint(ids); a.last[node] != key {
			a.last[node], a.seen[node] = key, 0
		}
		if a.seen[node]++; a.seen[node] > a.lag {
			a.applied[node] = ids
		}
	}
	var out []ovs.DumpedFlow
	for _, id := range a.applied[node] {
		fl := pipeline.MulticastVNIDFlows(pipeline.FlowConfig{}, id, nil)[0]
		fl.Cookie |= 3 << 48 // whatever the reserved bits hold
		if f.Selects(fl) {
			out = append(out, ovs.DumpedFlow{Flow: fl})
		}
	}
	return out, nil
}

func (a *fakeAgents) Ports(context.Context, string, string) ([]ovsdb.PortInfo, error) {
	return nil, errors.New("not used")
}

func (f *podNetworkFixture) runMulticast(t *testing.T, agents *fakeAgents, args ...string) runResult {
	t.Helper()
	opts := Options{Clients: &Clients{Kube: f.kube, Network: f.network}, OVS: agents}
	return runSdnctl(t, opts, append([]string{"pod-network"}, args...)...)
}

func (f *podNetworkFixture) addNodes(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		hs := &networkv1.HostSubnet{ObjectMeta: metav1.ObjectMeta{Name: n}, Host: n, HostIP: "192.0.2.1", Subnet: "10.128.0.0/23"}
		if _, err := f.network.NetworkV1().HostSubnets().Create(context.Background(), hs, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	external := &networkv1.HostSubnet{ObjectMeta: metav1.ObjectMeta{Name: "f5", Annotations: map[string]string{networkv1.FixedVNIDHostAnnotation: "0"}},
		Host: "f5", HostIP: "192.0.2.9", Subnet: "10.128.8.0/23"}
	if _, err := f.network.NetworkV1().HostSubnets().Create(context.Background(), external, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (f *podNetworkFixture) annotated(t *testing.T) string {
	t.Helper()
	list, err := f.network.NetworkV1().NetNamespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var on []string
	for _, nn := range list.Items {
		if multicastOn(&nn) {
			on = append(on, nn.Name)
		}
	}
	return strings.Join(on, " ")
}

// TestPodNetworkMulticast: projects default (0), p1 and p2 (11, joined), p3 (12); nodes
// n1, n2, n3 and the external host f5 (no agent). The fake agents apply a change after
// three reads of their table 110, so every step has to wait.
func TestPodNetworkMulticast(t *testing.T) {
	f := newPodNetworkFixture(t, networkv1.NetworkPolicyPluginName, nil)
	f.addNodes(t, "n1", "n2", "n3")
	agents := newFakeAgents(f.network, 3)
	all := []string{"--ovs-rundir-root", "/run/lab"}
	steps := []struct {
		args      []string
		stuck     string
		stdout    string
		stderr    string // contained in stderr
		annotated string
		fails     bool
	}{{
		args:      append([]string{"enable-multicast", "p3"}, all...),
		stdout:    "netnamespace.network.openshift.io/p3 multicast enabled (netid 12)\napplied on br0 of n1, n2, n3\n",
		annotated: "p3",
	}, {
		args:      append([]string{"enable-multicast", "p1"}, all...),
		stdout:    "netnamespace.network.openshift.io/p1 multicast requested; netid 11 stays off until p2 enable it too\napplied on br0 of n1, n2, n3\n",
		annotated: "p1 p3",
	}, {
		args: []string{"enable-multicast", "--selector", "team=x", "--local-node", "elsewhere", "--ovs-rundir", "n1=/run/lab/n1", "--ovs-rundir", "n2=/run/lab/n2"},
		stdout: "netnamespace.network.openshift.io/p2 multicast enabled (netid 11)\n" +
			"netnamespace.network.openshift.io/p3 multicast enabled (netid 12)\napplied on br0 of n1, n2\n",
		stderr:    "note: multicast not verified on n3: its OVS is out of reach",
		annotated: "p1 p2 p3",
	}, {
		args:      append([]string{"disable-multicast", "p2"}, all...),
		stdout:    "netnamespace.network.openshift.io/p2 multicast disabled (netid 11)\napplied on br0 of n1, n2, n3\n",
		annotated: "p1 p3",
	}, {
		args: append([]string{"disable-multicast", "p3", "--timeout", "300ms"}, all...), stuck: "n2",
		stdout:    "netnamespace.network.openshift.io/p3 multicast disabled (netid 12)\n",
		stderr:    "timed out after 300ms waiting for the node agents (is sdn-node running there?): n2: table 110 still has the flow of VNID 12",
		annotated: "p1",
		fails:     true,
	}}
	for _, s := range steps {
		agents.stuck = map[string]bool{s.stuck: true}
		got := f.runMulticast(t, agents, s.args...)
		if got.stdout != s.stdout {
			t.Errorf("%v: stdout\n%s\nwant\n%s", s.args, got.stdout, s.stdout)
		}
		if !strings.Contains(got.stderr, s.stderr) || (got.code != ExitOK) != s.fails {
			t.Errorf("%v: exit %d, stderr %q; want failure %v and stderr containing %q", s.args, got.code, got.stderr, s.fails, s.stderr)
		}
		if a := f.annotated(t); a != s.annotated {
			t.Errorf("%v: annotated %q, want %q", s.args, a, s.annotated)
		}
	}
	if agents.reads < 3*len(steps) {
		t.Errorf("the bridges were read %d times: the command did not wait", agents.reads)
	}
}

func TestPodNetworkMulticastRefusals(t *testing.T) {
	f := newPodNetworkFixture(t, networkv1.SingleTenantPluginName, nil)
	agents := newFakeAgents(f.network, 0)
	got := f.runMulticast(t, agents, "enable-multicast", "p1")
	if got.code != ExitFailure || !strings.Contains(got.stderr, "multicast is only supported by the multitenant and networkpolicy network plugins") {
		t.Errorf("subnet plugin: exit %d, stderr %q", got.code, got.stderr)
	}
	f = newPodNetworkFixture(t, networkv1.MultiTenantPluginName, nil)
	for _, args := range [][]string{{"enable-multicast"}, {"disable-multicast", "p1", "--selector", "team=x"}, {"enable-multicast", "nosuch"}} {
		if got := f.runMulticast(t, agents, args...); got.code == ExitOK {
			t.Errorf("%v: exit 0, want a usage or not-found error", args)
		}
	}
	if a := f.annotated(t); a != "" {
		t.Errorf("refused commands annotated %q", a)
	}
}

// TestMulticastVNIDOf: only the multicast owner's table-110 flow names a VNID.
func TestMulticastVNIDOf(t *testing.T) {
	f := pipeline.MulticastVNIDFlows(pipeline.FlowConfig{}, 12, nil)[0]
	if id, ok := multicastVNIDOf(f); !ok || id != 12 {
		t.Errorf("multicastVNIDOf(%s) = %d, %v", f, id, ok)
	}
	byHand := f
	byHand.Cookie = 0
	other := f
	other.Cookie = pipeline.MulticastVNIDOwner(13).Cookie()
	for _, g := range []ovs.Flow{byHand, other} {
		if id, ok := multicastVNIDOf(g); ok {
			t.Errorf("multicastVNIDOf(%s) = %d: a flow of another owner counted", g, id)
		}
	}
}
