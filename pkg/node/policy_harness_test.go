package node

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned/fake"
	"github.com/ovs-sdn/ovs-sdn/pkg/iptables"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// gatedBridge is a FakeBridge that records the flows after every
// bundle (to check that no intermediate state lets traffic through) and
// can hold bundles at a gate (to check batching).
type gatedBridge struct {
	*ovs.FakeBridge
	mu      sync.Mutex
	bundles [][]ovs.Change
	states  [][]ovs.Flow // bridge content after each bundle or replace
	gate    chan struct{}
	waiting int // bundles waiting at the gate
}

func (b *gatedBridge) Bundle(ctx context.Context, changes []ovs.Change) error {
	b.mu.Lock()
	gate := b.gate
	if gate != nil {
		b.waiting++
	}
	b.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	err := b.FakeBridge.Bundle(ctx, changes)
	b.mu.Lock()
	defer b.mu.Unlock()
	if gate != nil {
		b.waiting--
	}
	if err == nil {
		b.bundles = append(b.bundles, changes)
		b.states = append(b.states, b.FakeBridge.Flows())
	}
	return err
}

func (b *gatedBridge) ReplaceFlows(ctx context.Context, flows []ovs.Flow) error {
	return b.ReplaceAll(ctx, nil, flows)
}

func (b *gatedBridge) ReplaceAll(ctx context.Context, groups []ovs.GroupEntry, flows []ovs.Flow) error {
	err := b.FakeBridge.ReplaceAll(ctx, groups, flows)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		b.states = append(b.states, b.FakeBridge.Flows())
	}
	return err
}

// since returns the bundles and states recorded after the first n bundles
// and m states.
func (b *gatedBridge) mark() (int, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.bundles), len(b.states)
}

func (b *gatedBridge) since(n, m int) ([][]ovs.Change, [][]ovs.Flow) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.bundles[n:]), slices.Clone(b.states[m:])
}

// The policy test cluster: node1 (10.0.0.1, 10.128.0.0/23) runs a (ns1,
// app=web), b (ns1, app=db) and c (ns2, app=client); node2 (10.0.0.2)
// runs r (ns2, app=client).
var (
	polA = pipeline.PodInfo{Namespace: "ns1", Name: "a", IP: netip.MustParseAddr("10.128.0.2"), OFPort: 3, VNID: 11}
	polB = pipeline.PodInfo{Namespace: "ns1", Name: "b", IP: netip.MustParseAddr("10.128.0.3"), OFPort: 4, VNID: 11}
	polC = pipeline.PodInfo{Namespace: "ns2", Name: "c", IP: netip.MustParseAddr("10.128.0.4"), OFPort: 5, VNID: 12}
	polR = netip.MustParseAddr("10.128.2.5")
)

// polModel is the test's own description of the cluster: it feeds both
// the fake API server and the oracle (networkpolicy.Compile).
type polModel struct {
	nsLabels  map[string]map[string]string
	vnids     map[string]uint32
	podLabels map[string]map[string]string // "ns/name"
	policies  map[string]*networkingv1.NetworkPolicy
}

func newPolModel() *polModel {
	return &polModel{
		nsLabels: map[string]map[string]string{"ns1": {"team": "a"}, "ns2": {"team": "x"}},
		vnids:    map[string]uint32{"ns1": 11, "ns2": 12},
		podLabels: map[string]map[string]string{
			"ns1/a": {"app": "web"}, "ns1/b": {"app": "db"}, "ns2/c": {"app": "client"}, "ns2/r": {"app": "client"}},
		policies: map[string]*networkingv1.NetworkPolicy{},
	}
}

// input is the compiler input the agent should derive (written out by
// hand, independently of policy.go).
func (m *polModel) input(local ...pipeline.PodInfo) networkpolicy.Input {
	var in networkpolicy.Input
	for _, ns := range slices.Sorted(maps.Keys(m.vnids)) {
		in.Namespaces = append(in.Namespaces, networkpolicy.Namespace{Name: ns, Labels: m.nsLabels[ns], VNID: m.vnids[ns]})
	}
	for _, p := range local {
		in.Pods = append(in.Pods, networkpolicy.Pod{Namespace: p.Namespace, Name: p.Name, Labels: m.podLabels[p.Namespace+"/"+p.Name], IP: p.IP, Local: true})
	}
	in.Pods = append(in.Pods, networkpolicy.Pod{Namespace: "ns2", Name: "r", Labels: m.podLabels["ns2/r"], IP: polR})
	for _, k := range slices.Sorted(maps.Keys(m.policies)) {
		in.Policies = append(in.Policies, m.policies[k])
	}
	return in
}

func (m *polModel) kubeObjects() []runtime.Object {
	var objs []runtime.Object
	for ns, l := range m.nsLabels {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: l}})
	}
	for _, p := range []pipeline.PodInfo{polA, polB, polC} {
		objs = append(objs, m.pod(p.Namespace, p.Name, "node1", ""))
	}
	objs = append(objs, m.pod("ns2", "r", "node2", polR.String()))
	for _, np := range m.policies {
		objs = append(objs, np)
	}
	return objs
}

// pod is a Pod object; local pods have no status IP yet (the agent must
// use the one of their br0 port).
func (m *polModel) pod(ns, name, node, ip string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: m.podLabels[ns+"/"+name]},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c"}}}}
	if ip != "" {
		p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	}
	return p
}

// policyEnv is an agent in networkpolicy mode on fakes.
type policyEnv struct {
	*agentEnv
	rb   *gatedBridge
	kube *kubefake.Clientset
	rec  *record.FakeRecorder
	m    *polModel
}

func newPolicyEnv(t *testing.T, m *polModel, ports ...SwitchPort) *policyEnv {
	t.Helper()
	if ports == nil {
		ports = []SwitchPort{podPort("ns1", "a", "10.128.0.2", 3), podPort("ns1", "b", "10.128.0.3", 4), podPort("ns2", "c", "10.128.0.4", 5)}
	}
	cn := testClusterNetwork()
	cn.PluginName = networkv1.NetworkPolicyPluginName
	netObjs := []runtime.Object{cn, hostSubnet("node1", "10.0.0.1", "10.128.0.0/23"), hostSubnet("node2", "10.0.0.2", "10.128.2.0/23")}
	for ns, id := range m.vnids {
		netObjs = append(netObjs, netNamespace(ns, id))
	}
	pe := &policyEnv{rb: &gatedBridge{FakeBridge: ovs.NewFakeBridge()}, kube: kubefake.NewSimpleClientset(m.kubeObjects()...),
		rec: record.NewFakeRecorder(100), m: m}
	e := &agentEnv{t: t, client: fake.NewSimpleClientset(netObjs...), sw: newFakeSwitch(ports...), host: &fakeHost{},
		br: pe.rb.FakeBridge, reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	a, err := New(Config{NodeName: "node1", NodeIP: netip.MustParseAddr("10.0.0.1"), Network: e.client, Kube: pe.kube,
		Recorder: pe.rec, Dial: e.dial, Bridge: pe.rb, Host: e.host, IPTables: iptables.NewFake(), Registry: e.reg,
		FullSyncPeriod: time.Hour, HealthCheckPeriod: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e.agent = a
	pe.agentEnv = e
	e.start()
	return pe
}

// npPolicyFlowsOf returns the flows of the policy owners (compiled flows),
// sorted canonical lines.
func npPolicyFlowsOf(owners map[pipeline.Owner][]ovs.Flow) []string {
	var out []string
	for o, flows := range owners {
		if k := o.Kind(); k == pipeline.KindPolicyNamespace || k == pipeline.KindPolicyMatch {
			for _, f := range flows {
				out = append(out, f.Canonical())
			}
		}
	}
	slices.Sort(out)
	return out
}

func (pe *policyEnv) storePolicyFlows() []string {
	owners := map[pipeline.Owner][]ovs.Flow{}
	for _, o := range pe.agent.store.Owners() {
		owners[o] = pe.agent.store.Flows(o)
	}
	return npPolicyFlowsOf(owners)
}

// npBridgePolicyFlows returns the compiled flows on the bridge (those with a
// policy cookie).
func npBridgePolicyFlows(flows []ovs.Flow) []string {
	var out []string
	for _, f := range flows {
		if f.Cookie>>56 == uint64(ovs.CookiePolicy) {
			out = append(out, f.Canonical())
		}
	}
	slices.Sort(out)
	return out
}

// expectPolicy waits until the store and the bridge hold exactly the
// compiled flows of the model with local pods local.
func (pe *policyEnv) expectPolicy(what string, local ...pipeline.PodInfo) []string {
	pe.t.Helper()
	owners, _ := networkpolicy.Compile(pe.m.input(local...))
	want := npPolicyFlowsOf(owners)
	pe.eventually(what, func() string {
		if got := pe.storePolicyFlows(); !slices.Equal(got, want) {
			return fmt.Sprintf("store policy flows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if got := npBridgePolicyFlows(pe.rb.Flows()); !slices.Equal(got, want) {
			return fmt.Sprintf("bridge policy flows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		return ""
	})
	return want
}

func (pe *policyEnv) createPolicy(np *networkingv1.NetworkPolicy) {
	pe.t.Helper()
	pe.m.policies[np.Namespace+"/"+np.Name] = np
	if _, err := pe.kube.NetworkingV1().NetworkPolicies(np.Namespace).Create(context.Background(), np, metav1.CreateOptions{}); err != nil {
		pe.t.Fatal(err)
	}
}

func (pe *policyEnv) updatePolicy(np *networkingv1.NetworkPolicy) {
	pe.t.Helper()
	pe.m.policies[np.Namespace+"/"+np.Name] = np
	if _, err := pe.kube.NetworkingV1().NetworkPolicies(np.Namespace).Update(context.Background(), np, metav1.UpdateOptions{}); err != nil {
		pe.t.Fatal(err)
	}
}

func (pe *policyEnv) deletePolicy(ns, name string) {
	pe.t.Helper()
	delete(pe.m.policies, ns+"/"+name)
	if err := pe.kube.NetworkingV1().NetworkPolicies(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		pe.t.Fatal(err)
	}
}

func (pe *policyEnv) relabelPod(ns, name, node, ip string, l map[string]string) {
	pe.t.Helper()
	pe.m.podLabels[ns+"/"+name] = l
	if _, err := pe.kube.CoreV1().Pods(ns).Update(context.Background(), pe.m.pod(ns, name, node, ip), metav1.UpdateOptions{}); err != nil {
		pe.t.Fatal(err)
	}
}

func (pe *policyEnv) relabelNamespace(ns string, l map[string]string) {
	pe.t.Helper()
	pe.m.nsLabels[ns] = l
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: l}}
	if _, err := pe.kube.CoreV1().Namespaces().Update(context.Background(), obj, metav1.UpdateOptions{}); err != nil {
		pe.t.Fatal(err)
	}
}

// Policies.

func npPolicy(ns, name string, spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func npSel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

var (
	npIngressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	npBothTypes   = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
)

func npDenyAll(ns, name string, target *metav1.LabelSelector, types []networkingv1.PolicyType) *networkingv1.NetworkPolicy {
	if target == nil {
		target = &metav1.LabelSelector{}
	}
	return npPolicy(ns, name, networkingv1.NetworkPolicySpec{PodSelector: *target, PolicyTypes: types})
}

func npAllowFrom(ns, name string, target *metav1.LabelSelector, peers ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
	return npPolicy(ns, name, networkingv1.NetworkPolicySpec{PodSelector: *target, PolicyTypes: npIngressOnly,
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: peers}}})
}

// Packets (STYLE L10).

func npPodToPod(from pipeline.PodInfo, to netip.Addr) ovs.Packet {
	return ovs.Packet{InPort: from.OFPort, Proto: ovs.ProtoTCP, Src: from.IP, Dst: to, TpDst: 80}
}

func npRemoteToPod(src netip.Addr, vnid uint32, to netip.Addr) ovs.Packet {
	return ovs.Packet{InPort: pipeline.OFPortVXLAN, Proto: ovs.ProtoTCP, Src: src, Dst: to, TpDst: 80,
		TunSrc: netip.MustParseAddr("10.0.0.2"), TunID: uint64(vnid)}
}

// passes reports whether p leaves br0 (to a port or a tunnel).
func npPasses(t *testing.T, flows []ovs.Flow, p ovs.Packet) bool {
	t.Helper()
	tr, err := ovs.TraceFlows(flows, p)
	if err != nil {
		t.Fatalf("trace %v: %v\n%s", p, err, tr)
	}
	return tr.Verdict.Kind != ovs.VerdictDrop
}

type npReachCase struct {
	name string
	p    ovs.Packet
	want bool
}

func npCheckReach(t *testing.T, what string, flows []ovs.Flow, cases []npReachCase) {
	t.Helper()
	for _, c := range cases {
		if got := npPasses(t, flows, c.p); got != c.want {
			t.Errorf("%s: %s passes = %v, want %v", what, c.name, got, c.want)
		}
	}
}
