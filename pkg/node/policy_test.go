package node

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// TestPolicyAppliedAndDeleted: a deny-all ingress policy isolates ns1's
// pods and only them; deleting it restores default-allow exactly as it
// was. The metrics follow.
func TestPolicyAppliedAndDeleted(t *testing.T) {
	pe := newPolicyEnv(t, newPolModel())
	pe.expectPolicy("no policy", polA, polB, polC)
	open := pe.rb.Dump()
	all := func(want1 bool) []npReachCase {
		return []npReachCase{
			{"c → a", npPodToPod(polC, polA.IP), want1},
			{"a → b", npPodToPod(polA, polB.IP), want1},
			{"r → b", npRemoteToPod(polR, 12, polB.IP), want1},
			{"a → c", npPodToPod(polA, polC.IP), true},
			{"b → r", npPodToPod(polB, polR), true},
		}
	}
	npCheckReach(t, "no policy", pe.rb.Flows(), all(true))

	pe.createPolicy(npDenyAll("ns1", "deny", nil, npIngressOnly))
	pe.expectPolicy("deny-all in ns1", polA, polB, polC)
	npCheckReach(t, "deny-all in ns1", pe.rb.Flows(), all(false))
	if got, want := testutil.ToFloat64(pe.agent.m.policyFlows), float64(len(pe.storePolicyFlows())); got != want || got == 0 {
		t.Errorf("ovs_sdn_networkpolicy_flows = %v, want %v", got, want)
	}
	if n := testutil.CollectAndCount(pe.agent.m.policyRealization); n != 1 {
		t.Errorf("realization histogram has %d series", n)
	}
	if got := npHistogramCount(t, pe.agent.m.policyRealization); got == 0 {
		t.Error("ovs_sdn_networkpolicy_realization_seconds observed nothing after a policy was applied")
	}

	pe.deletePolicy("ns1", "deny")
	pe.expectPolicy("policy deleted", polA, polB, polC)
	if got := pe.rb.Dump(); got != open {
		t.Errorf("after deleting the policy the bridge differs from before it:\n%s", npLineDiff(open, got))
	}
	npCheckReach(t, "policy deleted", pe.rb.Flows(), all(true))
}

// TestPolicyPodLabelChange: relabelling a local pod moves it into a
// policy's peer selector, relabelling a remote pod moves it out; each
// change is one bundle holding exactly the difference of the compiled
// flows (nothing else is touched).
func TestPolicyPodLabelChange(t *testing.T) {
	m := newPolModel()
	m.policies["ns1/db"] = npAllowFrom("ns1", "db", npSel("app", "db"),
		networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: npSel("app", "client")})
	pe := newPolicyEnv(t, m)
	before := pe.expectPolicy("start", polA, polB, polC)
	npCheckReach(t, "start", pe.rb.Flows(), []npReachCase{
		{"c → b", npPodToPod(polC, polB.IP), true},
		{"r → b", npRemoteToPod(polR, 12, polB.IP), true},
		{"a → b", npPodToPod(polA, polB.IP), false},
		{"c → a (a not selected)", npPodToPod(polC, polA.IP), true},
	})

	nb, ns := pe.rb.mark()
	pe.relabelPod("ns1", "a", "node1", "", map[string]string{"app": "client"})
	after := pe.expectPolicy("a relabelled app=client", polA, polB, polC)
	npCheckOnlyDiff(t, pe.rb, nb, ns, before, after)
	npCheckReach(t, "a is a client", pe.rb.Flows(), []npReachCase{{"a → b", npPodToPod(polA, polB.IP), true}})

	nb, ns = pe.rb.mark()
	pe.relabelPod("ns2", "r", "node2", polR.String(), map[string]string{"app": "other"})
	final := pe.expectPolicy("r relabelled app=other", polA, polB, polC)
	npCheckOnlyDiff(t, pe.rb, nb, ns, after, final)
	npCheckReach(t, "r is no client", pe.rb.Flows(), []npReachCase{
		{"r → b", npRemoteToPod(polR, 12, polB.IP), false},
		{"c → b", npPodToPod(polC, polB.IP), true},
	})
}

// TestPolicyNamespaceLabelChange: a namespace gaining the label a
// namespaceSelector wants is admitted (by VNID, local and remote pods
// alike) in one bundle holding exactly the difference.
func TestPolicyNamespaceLabelChange(t *testing.T) {
	m := newPolModel()
	m.policies["ns1/team-b"] = npAllowFrom("ns1", "team-b", &metav1.LabelSelector{},
		networkingv1.NetworkPolicyPeer{NamespaceSelector: npSel("team", "b")})
	pe := newPolicyEnv(t, m)
	before := pe.expectPolicy("start", polA, polB, polC)
	cases := func(want bool) []npReachCase {
		return []npReachCase{{"c → a", npPodToPod(polC, polA.IP), want}, {"r → a", npRemoteToPod(polR, 12, polA.IP), want}}
	}
	npCheckReach(t, "ns2 is team x", pe.rb.Flows(), cases(false))
	nb, ns := pe.rb.mark()
	pe.relabelNamespace("ns2", map[string]string{"team": "b"})
	after := pe.expectPolicy("ns2 is team b", polA, polB, polC)
	npCheckOnlyDiff(t, pe.rb, nb, ns, before, after)
	npCheckReach(t, "ns2 is team b", pe.rb.Flows(), cases(true))
}

// npCheckOnlyDiff checks that the bundles since (nb, ns) are one bundle
// whose adds and deletes are exactly the difference between the compiled
// flows before and after.
func npCheckOnlyDiff(t *testing.T, rb *gatedBridge, nb, ns int, before, after []string) {
	t.Helper()
	bundles, _ := rb.since(nb, ns)
	if len(bundles) != 1 {
		t.Fatalf("%d bundles for one change, want 1", len(bundles))
	}
	var adds, dels []string
	for _, c := range bundles[0] {
		switch c.Op {
		case ovs.OpAdd:
			adds = append(adds, c.Flow.Canonical())
		case ovs.OpDeleteStrict:
			dels = append(dels, c.Flow.Canonical())
		default:
			t.Errorf("unexpected change %s", c)
		}
	}
	wantAdds, wantDels := npSetDiff(after, before), npDeletedKeys(before, after)
	slices.Sort(adds)
	slices.Sort(dels)
	if !slices.Equal(adds, wantAdds) || !slices.Equal(dels, wantDels) {
		t.Errorf("bundle adds:\n%s\ndeletes:\n%s\nwant adds:\n%s\ndeletes:\n%s",
			strings.Join(adds, "\n"), strings.Join(dels, "\n"), strings.Join(wantAdds, "\n"), strings.Join(wantDels, "\n"))
	}
	if len(wantAdds)+len(wantDels) == 0 {
		t.Error("the change changed no compiled flow; the test proves nothing")
	}
}

// npSetDiff returns the lines of a not in b, sorted.
func npSetDiff(a, b []string) []string {
	in := map[string]bool{}
	for _, s := range b {
		in[s] = true
	}
	var out []string
	for _, s := range a {
		if !in[s] {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// npDeletedKeys returns the flows of before whose key (table, priority,
// match) no flow of after has: OVS add replaces a flow with the same key,
// so only these are deleted.
func npDeletedKeys(before, after []string) []string {
	key := func(canon string) string { return strings.SplitN(canon, ",cookie=", 2)[0] }
	keep := map[string]bool{}
	for _, s := range after {
		keep[key(s)] = true
	}
	var out []string
	for _, s := range before {
		if !keep[key(s)] {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func npHistogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	h.Collect(ch)
	var out dto.Metric
	if err := (<-ch).Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetHistogram().GetSampleCount()
}

func npLineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range npSetDiff(w, g) {
		b.WriteString("- " + l + "\n")
	}
	for _, l := range npSetDiff(g, w) {
		b.WriteString("+ " + l + "\n")
	}
	return b.String()
}

// TestPolicyBadPolicy: a policy with an unparsable CIDR isolates the pods it
// selects and leaves the other policies working; fixing it opens them. The
// agent records no Event (the sdn-controller reports invalid policies, once
// for the cluster).
func TestPolicyBadPolicy(t *testing.T) {
	m := newPolModel()
	m.nsLabels["ns2"] = map[string]string{"team": "b"}
	m.policies["ns1/good"] = npAllowFrom("ns1", "good", npSel("app", "web"), networkingv1.NetworkPolicyPeer{NamespaceSelector: npSel("team", "b")})
	bad := npAllowFrom("ns1", "bad", npSel("app", "db"), networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.128.0.0/33"}})
	m.policies["ns1/bad"] = bad
	pe := newPolicyEnv(t, m)
	pe.expectPolicy("start", polA, polB, polC)
	npCheckReach(t, "bad policy present", pe.rb.Flows(), []npReachCase{
		{"c → a (good policy)", npPodToPod(polC, polA.IP), true},
		{"r → a (good policy)", npRemoteToPod(polR, 12, polA.IP), true},
		{"c → b (bad policy: isolated)", npPodToPod(polC, polB.IP), false},
	})
	// Another change recompiles ns1.
	pe.createPolicy(npDenyAll("ns1", "deny-egress-db", npSel("app", "db"), []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}))
	pe.expectPolicy("another policy", polA, polB, polC)
	fixed := bad.DeepCopy()
	fixed.Spec.Ingress[0].From[0].IPBlock.CIDR = "10.128.0.0/16"
	pe.updatePolicy(fixed)
	pe.expectPolicy("fixed", polA, polB, polC)
	npCheckReach(t, "fixed", pe.rb.Flows(), []npReachCase{{"c → b", npPodToPod(polC, polB.IP), true}})
	broken := fixed.DeepCopy()
	broken.Spec.Ingress[0].From[0].IPBlock.Except = []string{"nonsense"}
	pe.updatePolicy(broken)
	pe.expectPolicy("broken again", polA, polB, polC)
	npCheckReach(t, "broken again", pe.rb.Flows(), []npReachCase{{"c → b", npPodToPod(polC, polB.IP), false}})
	select {
	case ev := <-pe.rec.Events:
		t.Errorf("the agent recorded an event %q; invalid policies are the controller's to report", ev)
	default:
	}
}

// TestPolicyNewPodIsolatedFirst: a new local pod that a deny policy
// selects is never reachable, in no state the bridge passes through —
// also when it reuses the IP of a pod that was allowed, and whether it
// arrives through OVSDB (the sync loop) or a CNI ADD (PodAdded syncs on
// its own).
func TestPolicyNewPodIsolatedFirst(t *testing.T) {
	const reusedIP = "10.128.0.9"
	old := pipeline.PodInfo{Namespace: "ns1", Name: "old", IP: netip.MustParseAddr(reusedIP), OFPort: 9, VNID: 11}
	for _, via := range []string{"ovsdb", "cni"} {
		t.Run(via, func(t *testing.T) {
			m := newPolModel()
			m.podLabels["ns1/old"] = map[string]string{"app": "web"}
			m.podLabels["ns1/new"] = map[string]string{"app": "db"}
			m.policies["ns1/deny-db"] = npDenyAll("ns1", "deny-db", npSel("app", "db"), npBothTypes)
			ports := []SwitchPort{podPort("ns1", "a", "10.128.0.2", 3), podPort("ns1", "b", "10.128.0.3", 4),
				podPort("ns2", "c", "10.128.0.4", 5), podPort("ns1", "old", reusedIP, 9)}
			pe := newPolicyEnv(t, m, ports...)
			npCreatePod(t, pe.kube, m.pod("ns1", "old", "node1", ""))
			pe.expectPolicy("old pod, allowed", polA, polB, polC, old)
			npCheckReach(t, "old", pe.rb.Flows(), []npReachCase{{"c → old", npPodToPod(polC, old.IP), true}})

			// The kubelet: the Pod object first, then the sandbox.
			npCreatePod(t, pe.kube, m.pod("ns1", "new", "node1", ""))
			pe.eventually("informer has the new pod", func() string {
				if _, err := pe.agent.policyFeature().pods.Pods("ns1").Get("new"); err != nil {
					return err.Error()
				}
				return ""
			})
			newPod := pipeline.PodInfo{Namespace: "ns1", Name: "new", IP: old.IP, OFPort: 10, VNID: 11}
			nb, ns := pe.rb.mark()
			if via == "ovsdb" {
				// One OVSDB change: old's port goes, new's comes with the same IP.
				pe.sw.setPorts(append(ports[:3:3], podPort("ns1", "new", reusedIP, 10))...)
			} else {
				pe.sw.setPorts(ports[:3]...)
				pe.expectPolicy("old pod gone", polA, polB, polC)
				nb, ns = pe.rb.mark()
				err := pe.agent.PodAdded(context.Background(), npCNIPort(newPod))
				if err != nil {
					t.Fatal(err)
				}
			}
			pe.expectPolicy("new pod isolated", polA, polB, polC, newPod)
			_, states := pe.rb.since(nb, ns)
			sawPod := false
			for i, flows := range states {
				if !slices.ContainsFunc(flows, func(f ovs.Flow) bool {
					return f.Table == ovs.TableLocalPod && f.Cookie == pipeline.PodFlows(fc1, newPod)[0].Cookie
				}) {
					continue
				}
				sawPod = true
				npCheckReach(t, fmt.Sprintf("state %d after the new pod", i), flows, []npReachCase{
					{"c → new", npPodToPod(polC, newPod.IP), false},
					{"r → new", npRemoteToPod(polR, 12, newPod.IP), false},
					{"new → c", npPodToPod(newPod, polC.IP), false},
					{"c → a", npPodToPod(polC, polA.IP), true},
				})
			}
			if !sawPod {
				t.Fatal("no recorded state holds the new pod's flows")
			}
		})
	}
}

func npCNIPort(p pipeline.PodInfo) cni.PodPort {
	return cni.PodPort{Namespace: p.Namespace, Name: p.Name, SandboxID: "sb-" + p.Name, IP: p.IP,
		PortName: "veth-" + p.Name, OFPort: p.OFPort, VNID: p.VNID}
}

func npCreatePod(t *testing.T, kube *kubefake.Clientset, pod *corev1.Pod) {
	t.Helper()
	if _, err := kube.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestPolicyBatching: every change pending when the sync goroutine runs
// goes into one bundle.
func TestPolicyBatching(t *testing.T) {
	pe := newPolicyEnv(t, newPolModel())
	pe.expectPolicy("start", polA, polB, polC)
	gate := make(chan struct{})
	pe.rb.mu.Lock()
	pe.rb.gate = gate
	pe.rb.mu.Unlock()
	nb, ns := pe.rb.mark()
	// The first change: its bundle waits at the gate.
	pe.createPolicy(npDenyAll("ns1", "p0", npSel("app", "web"), npIngressOnly))
	pe.eventually("a bundle waits at the gate", func() string {
		pe.rb.mu.Lock()
		defer pe.rb.mu.Unlock()
		if pe.rb.waiting == 0 {
			return "none"
		}
		return ""
	})
	// Meanwhile: policies in both namespaces, a pod and a namespace label.
	const n = 6
	for i := 1; i <= n; i++ {
		ns := []string{"ns1", "ns2"}[i%2]
		pe.createPolicy(npAllowFrom(ns, fmt.Sprintf("p%d", i), npSel("app", "db"),
			networkingv1.NetworkPolicyPeer{PodSelector: npSel("app", fmt.Sprintf("x%d", i))}))
	}
	pe.relabelPod("ns2", "c", "node1", "", map[string]string{"app": "x3"})
	pe.relabelNamespace("ns2", map[string]string{"team": "y"})
	pe.eventually("all events handled", func() string {
		if n := pe.agent.env.queue.keyCount(featureNetworkPolicy); n < 2 {
			return fmt.Sprintf("%d dirty keys", n)
		}
		return ""
	})
	time.Sleep(200 * time.Millisecond) // let every handler run
	pe.rb.mu.Lock()
	pe.rb.gate = nil
	pe.rb.mu.Unlock()
	close(gate)
	pe.expectPolicy("all applied", polA, polB, polC)
	if bundles, _ := pe.rb.since(nb, ns); len(bundles) != 2 {
		t.Errorf("%d bundles, want 2 (the first change, then everything that came while it was applied)", len(bundles))
	}
}

// npState is one named desired state of the policy inputs (STYLE L11).
type npState struct {
	name      string
	policies  []*networkingv1.NetworkPolicy
	podLabels map[string]map[string]string // "ns/name"; others keep the default
	nsLabels  map[string]map[string]string
}

func npStates() []npState {
	client := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: npSel("app", "client")}
	teamB := networkingv1.NetworkPolicyPeer{NamespaceSelector: npSel("team", "b")}
	return []npState{
		{name: "empty"},
		{name: "deny ns1", policies: []*networkingv1.NetworkPolicy{npDenyAll("ns1", "deny", nil, npBothTypes)}},
		{name: "db from clients", policies: []*networkingv1.NetworkPolicy{npAllowFrom("ns1", "db", npSel("app", "db"), client)},
			podLabels: map[string]map[string]string{"ns1/a": {"app": "client"}}},
		{name: "team b, two policies", nsLabels: map[string]map[string]string{"ns2": {"team": "b"}},
			policies: []*networkingv1.NetworkPolicy{npAllowFrom("ns1", "web", npSel("app", "web"), teamB),
				npAllowFrom("ns1", "db", npSel("app", "db"), client), npDenyAll("ns2", "deny", npSel("app", "client"), npIngressOnly)}},
		{name: "r not a client", podLabels: map[string]map[string]string{"ns2/r": {"app": "x"}},
			policies: []*networkingv1.NetworkPolicy{npAllowFrom("ns1", "db", npSel("app", "db"), client)}},
	}
}

// apply makes the fake API server and the model hold st.
func (pe *policyEnv) apply(st npState) {
	pe.t.Helper()
	want := map[string]*networkingv1.NetworkPolicy{}
	for _, np := range st.policies {
		want[np.Namespace+"/"+np.Name] = np
	}
	for key, np := range pe.m.policies {
		if _, ok := want[key]; !ok {
			pe.deletePolicy(np.Namespace, np.Name)
		}
	}
	for key, np := range want {
		if _, ok := pe.m.policies[key]; ok {
			pe.updatePolicy(np.DeepCopy())
		} else {
			pe.createPolicy(np.DeepCopy())
		}
	}
	def := newPolModel()
	for key, l := range def.podLabels {
		if sl, ok := st.podLabels[key]; ok {
			l = sl
		}
		if !maps.Equal(l, pe.m.podLabels[key]) {
			ns, name, _ := strings.Cut(key, "/")
			node, ip := "node1", ""
			if name == "r" {
				node, ip = "node2", polR.String()
			}
			pe.relabelPod(ns, name, node, ip, l)
		}
	}
	for ns, l := range def.nsLabels {
		if sl, ok := st.nsLabels[ns]; ok {
			l = sl
		}
		if !maps.Equal(l, pe.m.nsLabels[ns]) {
			pe.relabelNamespace(ns, l)
		}
	}
}

// TestPolicyStates applies the named states in order, then in
// pseudorandom orders: after each, the store and the bridge hold exactly
// that state's compiled flows (nothing leaks from the previous state).
func TestPolicyStates(t *testing.T) {
	pe := newPolicyEnv(t, newPolModel())
	states := npStates()
	order := []int{0, 1, 2, 3, 4, 0}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 3 {
		order = append(order, rnd.Perm(len(states))...)
	}
	for i, idx := range order {
		st := states[idx]
		pe.apply(st)
		pe.expectPolicy(fmt.Sprintf("step %d: %s", i, st.name), polA, polB, polC)
		if err := ovs.ValidatePipeline(pe.rb.Flows()); err != nil {
			t.Fatalf("step %d (%s): bridge pipeline invalid: %v", i, st.name, err)
		}
	}
}
