package node

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned/fake"
	"github.com/ovs-sdn/ovs-sdn/pkg/iptables"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/sdnctl"
)

// TestSdnctlPolicyFlowsEqualAgentStore is the property behind "one policy
// path": for random pods, namespaces and policies, the flows
// `sdnctl flows --policy NS/NAME` reports for a policy (sdnctl reads the API
// and the node's OVSDB, dumps br0 and explains the flows with its own
// compilation) equal the flows the agent's store holds for that policy
// according to the agent's own provenance (the rules each compiled flow
// renders, and the namespace default drop that isolates the pods the policy
// selects). The clusters include what the two could convert differently:
// local pods known only by their br0 port (no status IP yet), finished
// pods, host-network pods, remote pods.
func TestSdnctlPolicyFlowsEqualAgentStore(t *testing.T) {
	seeds, compared := 12, 0
	if testing.Short() {
		seeds = 4
	}
	for seed := range seeds {
		rc := newRandomCluster(uint64(seed))
		pe := rc.start(t)
		for _, np := range rc.policies {
			want := agentFlowsOfPolicy(t, pe.agent, np.Namespace, np.Name)
			got := sdnctlFlowsOfPolicy(t, pe, rc, np.Namespace+"/"+np.Name)
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d: policy %s/%s: sdnctl flows --policy:\n%s\nthe agent's store:\n%s", seed, np.Namespace, np.Name,
					strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			compared += len(want)
		}
	}
	if compared < 50 {
		t.Errorf("only %d flows compared: the generator no longer makes policies that compile to flows", compared)
	}
}

// agentFlowsOfPolicy returns, sorted, the canonical flows of the agent's
// store that belong to policy ns/name by the agent's provenance.
func agentFlowsOfPolicy(t *testing.T, a *Agent, ns, name string) []string {
	t.Helper()
	a.renderMu.Lock()
	ex := a.policyFeature().explainer()
	a.renderMu.Unlock()
	var out []string
	for _, o := range a.store.Owners() {
		if k := o.Kind(); k != pipeline.KindPolicyNamespace && k != pipeline.KindPolicyMatch {
			continue
		}
		for _, f := range a.store.Flows(o) {
			if belongs(ex, f, ns, name) {
				out = append(out, f.Canonical())
			}
		}
	}
	slices.Sort(out)
	return out
}

func belongs(ex *networkpolicy.Explainer, f ovs.Flow, ns, name string) bool {
	for _, r := range ex.FlowRules(f) {
		if r.Namespace == ns && r.Policy == name {
			return true
		}
	}
	d, ok := networkpolicy.DirectionOf(f.Table)
	if !ok || f.Priority != networkpolicy.PriorityNamespace || !f.IsDrop() || f.Cookie != pipeline.PolicyNamespaceOwner(ns).Cookie() {
		return false
	}
	pods, ok := ex.Selected(ns, name, d)
	return ok && len(pods) > 0
}

// sdnctlFlowsOfPolicy runs `sdnctl flows --node node1 --policy P -o raw`
// against the agent's API clients, bridge and OVSDB.
func sdnctlFlowsOfPolicy(t *testing.T, pe *policyEnv, rc *randomCluster, policy string) []string {
	t.Helper()
	var out, errOut bytes.Buffer
	opts := sdnctl.Options{Out: &out, ErrOut: &errOut, OVS: envBackend{pe},
		Clients: &sdnctl.Clients{Kube: pe.kube, Network: pe.client}}
	if code := sdnctl.Main(context.Background(), []string{"flows", "--node", "node1", "--policy", policy, "-o", "raw"}, opts); code != 0 {
		t.Fatalf("sdnctl flows --policy %s: exit %d: %s", policy, code, errOut.String())
	}
	if s := errOut.String(); s != "" && !strings.HasPrefix(s, "No flows found") {
		t.Fatalf("sdnctl flows --policy %s wrote: %s", policy, s)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if l == "" {
			continue
		}
		f, err := ovs.ParseFlow(l)
		if err != nil {
			t.Fatalf("sdnctl printed %q: %v", l, err)
		}
		lines = append(lines, f.Canonical())
	}
	slices.Sort(lines)
	return lines
}

// envBackend is sdnctl's view of the agent's fakes: its bridge and OVSDB.
type envBackend struct{ pe *policyEnv }

func (b envBackend) DumpFlows(_ context.Context, _ string, filter ovs.Filter) ([]ovs.DumpedFlow, error) {
	return b.pe.rb.DumpFlows(context.Background(), filter)
}

func (b envBackend) Ports(ctx context.Context, _, _ string) ([]ovsdb.PortInfo, error) {
	ports, err := b.pe.sw.Ports(ctx, pipeline.BridgeName)
	var out []ovsdb.PortInfo
	for _, p := range ports {
		out = append(out, ovsdb.PortInfo{Name: p.Name, OFPort: p.OFPort, ExternalIDs: p.ExternalIDs})
	}
	return out, err
}

// randomCluster is a small random cluster: namespaces with labels, pods on
// node1 (local, with br0 ports and no status IP) and node2, and policies.
type randomCluster struct {
	r          *rand.Rand
	namespaces []*corev1.Namespace
	vnids      map[string]uint32
	pods       []*corev1.Pod
	ports      []SwitchPort
	policies   []*networkingv1.NetworkPolicy
}

var rcLabels = []string{"web", "db", "client"}

func newRandomCluster(seed uint64) *randomCluster {
	rc := &randomCluster{r: rand.New(rand.NewPCG(seed, 31)), vnids: map[string]uint32{}}
	for i, ns := range []string{"ns-a", "ns-b", "ns-c"} {
		rc.namespaces = append(rc.namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{"team": []string{"x", "y"}[rc.r.IntN(2)]}}})
		rc.vnids[ns] = uint32(20 + i)
	}
	local, remote := 2, 2
	for i := range 10 {
		ns := rc.namespaces[rc.r.IntN(len(rc.namespaces))].Name
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", i),
			Labels: map[string]string{"app": rcLabels[rc.r.IntN(len(rcLabels))]}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(8000 + rc.r.IntN(2))}}}}}}
		switch rc.r.IntN(5) {
		case 0, 1: // local: the agent knows its IP from its br0 port only
			pod.Spec.NodeName = "node1"
			ip := fmt.Sprintf("10.128.0.%d", local)
			rc.ports = append(rc.ports, podPort(ns, pod.Name, ip, local+1))
			local++
		case 2: // host network: never selected
			pod.Spec.NodeName, pod.Spec.HostNetwork = "node2", true
			pod.Status.PodIP = "10.0.0.2"
		default: // remote; some finished
			pod.Spec.NodeName = "node2"
			pod.Status.PodIP = fmt.Sprintf("10.128.2.%d", remote)
			remote++
			if rc.r.IntN(3) == 0 {
				pod.Status.Phase = corev1.PodSucceeded
			}
		}
		rc.pods = append(rc.pods, pod)
	}
	for i := range 4 {
		rc.policies = append(rc.policies, rc.policy(fmt.Sprintf("np%d", i)))
	}
	return rc
}

func (rc *randomCluster) policy(name string) *networkingv1.NetworkPolicy {
	ns := rc.namespaces[rc.r.IntN(len(rc.namespaces))].Name
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if rc.r.IntN(3) > 0 {
		np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": rcLabels[rc.r.IntN(len(rcLabels))]}}
	}
	peer := func() networkingv1.NetworkPolicyPeer {
		switch rc.r.IntN(3) {
		case 0:
			return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": rcLabels[rc.r.IntN(3)]}}}
		case 1:
			return networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}},
				PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": rcLabels[rc.r.IntN(3)]}}}
		}
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.128.0.0/16", Except: []string{"10.128.2.0/24"}}}
	}
	ports := func() []networkingv1.NetworkPolicyPort {
		tcp := corev1.ProtocolTCP
		named, num := intstr.FromString("http"), intstr.FromInt32(int32(80+rc.r.IntN(2)))
		return []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &num}, {Protocol: &tcp, Port: &named}}
	}
	for range 1 + rc.r.IntN(2) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{peer(), peer()}, Ports: ports()})
	}
	np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	if rc.r.IntN(2) == 0 {
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{peer()}, Ports: ports()}}
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	}
	return np
}

// start runs an agent for node1 on fakes holding the cluster and waits
// until it has compiled and applied the policies.
func (rc *randomCluster) start(t *testing.T) *policyEnv {
	t.Helper()
	var kubeObjs []runtime.Object
	for _, o := range rc.namespaces {
		kubeObjs = append(kubeObjs, o)
	}
	for _, o := range rc.pods {
		kubeObjs = append(kubeObjs, o)
	}
	for _, o := range rc.policies {
		kubeObjs = append(kubeObjs, o)
	}
	cn := testClusterNetwork()
	cn.PluginName = networkv1.NetworkPolicyPluginName
	netObjs := []runtime.Object{cn, hostSubnet("node1", "10.0.0.1", "10.128.0.0/23"), hostSubnet("node2", "10.0.0.2", "10.128.2.0/23")}
	for ns, id := range rc.vnids {
		netObjs = append(netObjs, netNamespace(ns, id))
	}
	pe := &policyEnv{rb: &gatedBridge{FakeBridge: ovs.NewFakeBridge()}, kube: kubefake.NewSimpleClientset(kubeObjs...),
		rec: record.NewFakeRecorder(100)}
	e := &agentEnv{t: t, client: fake.NewSimpleClientset(netObjs...), sw: newFakeSwitch(rc.ports...), host: &fakeHost{},
		br: pe.rb.FakeBridge, reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	a, err := New(Config{NodeName: "node1", NodeIP: netip.MustParseAddr("10.0.0.1"), Network: e.client, Kube: pe.kube,
		Recorder: pe.rec, Dial: e.dial, Bridge: pe.rb, Host: e.host, IPTables: iptables.NewFake(), Registry: e.reg,
		FullSyncPeriod: time.Hour, HealthCheckPeriod: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e.agent, pe.agentEnv = a, e
	e.start()
	e.eventually("policies compiled and applied", func() string {
		if a.env.queue.has(featureNetworkPolicy) || a.env.queue.has(featurePods) || a.store.Pending() > 0 {
			return "pending"
		}
		return ""
	})
	return pe
}
