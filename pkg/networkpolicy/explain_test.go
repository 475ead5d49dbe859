package networkpolicy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// explainCluster: prod (VNID 10) web1/web2/admin, db (11) pg1/pg2, dev (12)
// tool, all local; remote clients in prod.
func explainCluster() Input {
	pod := func(ns, name, ip, app string, local bool) Pod {
		return Pod{Namespace: ns, Name: name, IP: netip.MustParseAddr(ip), Labels: map[string]string{"app": app}, Local: local}
	}
	allowClients := func(name string) *networkingv1.NetworkPolicy {
		np := selecting(policy("db", name, ingressTypes,
			ingressRule(ports(port(tcp, 5432), port(tcp, 5433)), networkingv1.NetworkPolicyPeer{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "web"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			})), "pg")
		return np
	}
	return Input{
		Namespaces: []Namespace{
			{Name: "prod", VNID: 10, Labels: map[string]string{"team": "web"}},
			{Name: "db", VNID: 11, Labels: map[string]string{"team": "db"}},
			{Name: "dev", VNID: 12},
		},
		Pods: []Pod{
			pod("prod", "web1", "10.128.0.10", "web", true),
			pod("prod", "web2", "10.128.2.11", "web", false),
			pod("prod", "admin", "10.128.0.12", "admin", true),
			pod("db", "pg1", "10.128.0.20", "pg", true),
			pod("db", "pg2", "10.128.0.21", "pg", true),
			pod("dev", "tool", "10.128.0.30", "tool", true),
		},
		Policies: []*networkingv1.NetworkPolicy{
			// 2 targets × 2 peers × 2 ports: a conjunction; its copy is the
			// same box, rendered once, explained as both.
			allowClients("allow-clients"),
			allowClients("allow-clients-copy"),
			// Rule 1 is a 1×1×1 box: a plain allow.
			selecting(policy("prod", "web", ingressTypes,
				ingressRule(ports(port(udp, 53)), peerPods("nothing")),
				ingressRule(ports(port(tcp, 80)), peerPods("admin"))), "web"),
			// Egress of admin: the world on 443 (ipBlock except), plain.
			selecting(policy("prod", "admin-egress", egressTypes,
				egressRule(ports(port(tcp, 443)), peerBlock("10.0.0.0/8", "10.128.0.0/14"))), "admin"),
		},
	}
}

// explainProbe traces p through the compiled flows (harness) in direction d
// and explains the flow of the policy table it matched.
func explainProbe(t *testing.T, e *Explainer, flows []ovs.Flow, pr probe, d Direction) (Explanation, ovs.Trace) {
	t.Helper()
	inPort, table := uint32(inPortIngress), ovs.TablePolicyIngress
	if d == Egress {
		inPort, table = inPortEgress, ovs.TablePolicyEgress
	}
	tr, err := ovs.TraceFlows(flows, pr.packet(inPort))
	if err != nil {
		t.Fatalf("trace %+v: %v", pr, err)
	}
	i := slices.IndexFunc(tr.Flows, func(f ovs.Flow) bool { return f.Table == table })
	if i < 0 {
		t.Fatalf("trace %+v did not match a flow in %s:\n%s", pr, table.Named(), tr)
	}
	pkt := Packet{Src: pr.src, Dst: pr.dst, SrcVNID: pr.srcVNID, DstVNID: pr.dstVNID, Proto: pr.proto, Port: pr.port}
	return e.ExplainFlow(tr.Flows[i], pkt), tr
}

func TestExplainFlow(t *testing.T) {
	in := explainCluster()
	owners, errs := Compile(in)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	flows := harness(Flatten(owners), false)
	e := NewExplainer(in)
	ip := netip.MustParseAddr
	web1, web2, admin, pg1, tool := ip("10.128.0.10"), ip("10.128.2.11"), ip("10.128.0.12"), ip("10.128.0.20"), ip("10.128.0.30")
	ref := func(ns, name string, d Direction, i int) RuleRef {
		return RuleRef{Namespace: ns, Policy: name, Direction: d, Index: i}
	}
	for _, tc := range []struct {
		name  string
		pr    probe
		d     Direction
		kind  Kind
		rules []RuleRef
		pols  []string
		conj  bool
		words string
	}{
		{name: "conjunction", pr: probe{srcVNID: 10, dstVNID: 11, src: web2, dst: pg1, proto: ovs.ProtoTCP, port: 5433}, d: Ingress,
			kind: KindRuleAllow, conj: true, rules: []RuleRef{ref("db", "allow-clients", Ingress, 0), ref("db", "allow-clients-copy", Ingress, 0)},
			words: "allowed by NetworkPolicy db/allow-clients rule ingress[0] and NetworkPolicy db/allow-clients-copy rule ingress[0] (conjunction 2816)"},
		{name: "plain rule 1", pr: probe{srcVNID: 10, dstVNID: 10, src: admin, dst: web1, proto: ovs.ProtoTCP, port: 80}, d: Ingress,
			kind: KindRuleAllow, rules: []RuleRef{ref("prod", "web", Ingress, 1)},
			words: "allowed by NetworkPolicy prod/web rule ingress[1]"},
		{name: "isolated", pr: probe{srcVNID: 10, dstVNID: 11, src: admin, dst: pg1, proto: ovs.ProtoTCP, port: 5432}, d: Ingress,
			kind: KindIsolated, pols: []string{"db/allow-clients", "db/allow-clients-copy"},
			words: "dropped: pod db/pg1 is isolated for ingress by NetworkPolicy db/allow-clients, db/allow-clients-copy, and no ingress rule allows this packet"},
		{name: "wrong port", pr: probe{srcVNID: 10, dstVNID: 11, src: web2, dst: pg1, proto: ovs.ProtoTCP, port: 5434}, d: Ingress,
			kind: KindIsolated, pols: []string{"db/allow-clients", "db/allow-clients-copy"}},
		{name: "not selected", pr: probe{srcVNID: 11, dstVNID: 10, src: pg1, dst: admin, proto: ovs.ProtoTCP, port: 80}, d: Ingress,
			kind: KindNotSelected, pols: []string{"prod/web"},
			words: "allowed: no ingress NetworkPolicy selects pod prod/admin (namespace prod has ingress policies prod/web, none selecting it)"},
		{name: "namespace default", pr: probe{srcVNID: 10, dstVNID: 12, src: admin, dst: tool, proto: ovs.ProtoTCP, port: 1}, d: Ingress,
			kind: KindNamespaceAllow, words: "allowed: namespace dev has no ingress NetworkPolicy (not isolated)"},
		{name: "egress ipBlock", pr: probe{srcVNID: 10, src: admin, dst: ip("10.1.2.3"), proto: ovs.ProtoTCP, port: 443}, d: Egress,
			kind: KindRuleAllow, rules: []RuleRef{ref("prod", "admin-egress", Egress, 0)}},
		{name: "egress except", pr: probe{srcVNID: 10, src: admin, dst: pg1, proto: ovs.ProtoTCP, port: 443}, d: Egress,
			kind: KindIsolated, pols: []string{"prod/admin-egress"},
			words: "dropped: pod prod/admin is isolated for egress by NetworkPolicy prod/admin-egress, and no egress rule allows this packet"},
		{name: "egress not selected", pr: probe{srcVNID: 10, src: web1, dst: pg1, proto: ovs.ProtoTCP, port: 443}, d: Egress,
			kind: KindNotSelected, pols: []string{"prod/admin-egress"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, tr := explainProbe(t, e, flows, tc.pr, tc.d)
			if x.Kind != tc.kind || !x.Consistent || x.Conj != tc.conj {
				t.Fatalf("got %+v (%s), want kind %d, consistent, conjunction %v\n%s", x, x, tc.kind, tc.conj, tr)
			}
			allowed := tr.Verdict.Kind == ovs.VerdictOutput
			if x.Allowed != allowed {
				t.Errorf("explanation says allowed=%v, the trace %v", x.Allowed, tr.Verdict)
			}
			if !slices.Equal(x.Rules, tc.rules) {
				t.Errorf("rules %v, want %v", x.Rules, tc.rules)
			}
			if !slices.Equal(x.Policies, tc.pols) {
				t.Errorf("policies %v, want %v", x.Policies, tc.pols)
			}
			if tc.words != "" && x.String() != tc.words {
				t.Errorf("words:\n got %s\nwant %s", x, tc.words)
			}
			if tc.kind == KindRuleAllow && !slices.Equal(e.Allowing(Packet{Src: tc.pr.src, Dst: tc.pr.dst, SrcVNID: tc.pr.srcVNID,
				DstVNID: tc.pr.dstVNID, Proto: tc.pr.proto, Port: tc.pr.port}, tc.d), tc.rules) {
				t.Errorf("Allowing disagrees with the flow's rules %v", tc.rules)
			}
		})
	}

	// Conjunction lookup by ID, and what is not one.
	c, ok := e.Conjunction(ovs.TablePolicyIngress, 11<<8)
	if !ok || c.Namespace != "db" || c.Priority != PriorityConjTop || len(c.Rules) != 2 {
		t.Errorf("Conjunction(80, 2816) = %+v, %v", c, ok)
	}
	for _, id := range []uint32{11<<8 | 1, 10 << 8, 99 << 8} {
		if c, ok := e.Conjunction(ovs.TablePolicyIngress, id); ok {
			t.Errorf("Conjunction(80, %d) = %+v, want none", id, c)
		}
	}
	if _, ok := e.Conjunction(ovs.TablePolicyEgress, 11<<8); ok {
		t.Errorf("conjunction 2816 found in egress")
	}
}

// TestExplainStale: flows compiled from one snapshot, explained with
// another (the copy policy deleted and allow-clients narrowed to 5432):
// the explanation says so instead of naming a rule that does not allow it.
func TestExplainStale(t *testing.T) {
	in := explainCluster()
	owners, _ := Compile(in)
	flows := harness(Flatten(owners), false)
	now := explainCluster()
	now.Policies = slices.Clone(now.Policies[:1])
	np := now.Policies[0].DeepCopy()
	np.Spec.Ingress[0].Ports = np.Spec.Ingress[0].Ports[:1]
	now.Policies = append([]*networkingv1.NetworkPolicy{np}, explainCluster().Policies[2:]...)
	e := NewExplainer(now)
	x, _ := explainProbe(t, e, flows, probe{srcVNID: 10, dstVNID: 11, src: netip.MustParseAddr("10.128.2.11"),
		dst: netip.MustParseAddr("10.128.0.20"), proto: ovs.ProtoTCP, port: 5433}, Ingress)
	if x.Consistent || x.Kind != KindRuleAllow || !strings.Contains(x.String(), "may be stale") {
		t.Errorf("stale conjunction explained as %+v: %s", x, x)
	}
	// A static flow is not the compiler's.
	static := ovs.NewFlow(ovs.TablePolicyIngress, 200).MatchIPv4().MatchCtState(ovs.CtRpl, 0).Action(ovs.OutPortField.Output())
	if x := e.ExplainFlow(static, Packet{DstVNID: 11}); x.Kind != KindNotCompiled {
		t.Errorf("static flow explained as %+v", x)
	}
}

// TestExplainAgreesWithReference: on the property test's random clusters,
// every probe's deciding flow is explained consistently, with the trace's
// verdict, and the named rules and isolating policies are what the
// reference evaluator (which shares no code with the compiler) says.
func TestExplainAgreesWithReference(t *testing.T) {
	clusters := 150
	if testing.Short() {
		clusters = 30
	}
	kinds := map[Kind]int{}
	for seed := range clusters {
		g := gen{rand.New(rand.NewPCG(uint64(seed), 7))}
		in := g.cluster()
		c := NewCompiler(Input{})
		c.alwaysConj = seed%3 != 0
		c.Update(in, namesOf(in)...)
		flows := harness(Flatten(c.Owners()), seed%2 == 1)
		e := c.Explainer()
		eps := endpoints(in)
		for range 100 {
			src, dst := eps[g.r.IntN(len(eps))], eps[g.r.IntN(len(eps))]
			proto := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[g.r.IntN(3)]
			pr := probe{srcVNID: vnidOf(in, src), dstVNID: vnidOf(in, dst), src: src.ip, dst: dst.ip, proto: protoMap[proto], port: probePorts[g.r.IntN(len(probePorts))]}
			for _, d := range []Direction{Ingress, Egress} {
				self := dst
				if d == Egress {
					self = src
				}
				if self.pod == nil || !self.pod.Local || src.pod == dst.pod || d == Ingress && src.ip == gateway {
					continue
				}
				x, tr := explainProbe(t, e, flows, pr, d)
				if x.Kind == KindNotCompiled {
					continue // the placeholder decides for a namespace the compiler left alone
				}
				kinds[x.Kind]++
				allowed := tr.Verdict.Kind == ovs.VerdictOutput
				fail := func(format string, args ...any) {
					t.Helper()
					t.Fatalf("seed %d: %s %s → %s %v/%d: %s: %s\n%s", seed, d, src.ip, dst.ip, proto, pr.port,
						x, strings.TrimSpace(fmt.Sprintf(format, args...)), tr)
				}
				if !x.Consistent || x.Allowed != allowed {
					fail("inconsistent or verdict differs (trace allowed=%v)", allowed)
				}
				for _, r := range x.Rules {
					np := findPolicy(in, r.Namespace, r.Policy)
					peers, ports := ruleAt(np, r.Direction.internal(), r.Index)
					if !refRule(in, np.Namespace, r.Direction.internal(), peers, ports, src, dst, proto, pr.port) {
						fail("the reference says %s does not allow it", r)
					}
				}
				if x.Kind == KindIsolated || x.Kind == KindNotSelected {
					var want []string
					for _, np := range in.Policies {
						sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
						if np.Namespace == self.pod.Namespace && affects(np, d.internal()) &&
							(err != nil || sel.Matches(labels.Set(self.pod.Labels)) || x.Kind == KindNotSelected) {
							want = append(want, np.Namespace+"/"+np.Name)
						}
					}
					slices.Sort(want)
					got := append(slices.Clone(x.Policies), x.Failed...)
					slices.Sort(got)
					if !slices.Equal(got, want) {
						fail("policies %v, reference %v", got, want)
					}
				}
			}
		}
	}
	t.Logf("explanations by kind: %v", kinds)
	for _, k := range []Kind{KindRuleAllow, KindNotSelected, KindNamespaceAllow, KindIsolated} {
		if kinds[k] == 0 {
			t.Errorf("no probe was explained as kind %d: the generator no longer covers it", k)
		}
	}
}

func findPolicy(in Input, ns, name string) *networkingv1.NetworkPolicy {
	for _, np := range in.Policies {
		if np.Namespace == ns && np.Name == name {
			return np
		}
	}
	return nil
}

// TestFlowRules maps the compiled flows of explainCluster back to their
// rules without a packet, and tells which local pods a policy isolates.
func TestFlowRules(t *testing.T) {
	in := explainCluster()
	e := NewExplainer(in)
	flows, errs := Compile(in)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	clientsRules := []RuleRef{{"db", "allow-clients", Ingress, 0}, {"db", "allow-clients-copy", Ingress, 0}}
	byRules := map[string]int{}
	for _, f := range Flatten(flows) {
		got := e.FlowRules(f)
		_, conj := conjIDOf(f)
		clause := slices.ContainsFunc(f.Actions, func(a ovs.Action) bool { _, ok := a.(ovs.Conjunction); return ok })
		switch {
		case conj || clause:
			if !slices.Equal(got, clientsRules) {
				t.Errorf("%s: rules %v, want %v", f, got, clientsRules)
			}
		case f.Priority == PriorityPlainAllow:
			if len(got) != 1 {
				t.Errorf("%s: rules %v, want one", f, got)
			}
		default:
			if got != nil {
				t.Errorf("%s: rules %v, want none", f, got)
			}
		}
		for _, r := range got {
			byRules[r.String()]++
		}
	}
	want := map[string]int{
		// 2 target clauses, 2 peer clauses, 2 port clauses, 1 conj_id flow.
		"db/allow-clients rule ingress[0]": 7, "db/allow-clients-copy rule ingress[0]": 7,
		"prod/web rule ingress[1]": 1,
		// 10.0.0.0/8 minus 10.128.0.0/14: 6 disjoint prefixes.
		"prod/admin-egress rule egress[0]": 6,
	}
	if diff := fmt.Sprint(byRules); diff != fmt.Sprint(want) {
		t.Errorf("flows by rule: %v, want %v", byRules, want)
	}

	// A flow of another snapshot is attributed to nothing.
	stale := ovs.NewFlow(ovs.TablePolicyIngress, PriorityPlainAllow).MatchReg(ovs.DstVNIDField, 10).MatchProto(ovs.ProtoTCP).MatchTpDst(9999)
	if got := e.FlowRules(stale); got != nil {
		t.Errorf("stale plain allow: rules %v", got)
	}

	for _, tc := range []struct {
		ns, policy string
		d          Direction
		pods       []string
		ok         bool
	}{
		{"db", "allow-clients", Ingress, []string{"db/pg1", "db/pg2"}, true},
		{"prod", "web", Ingress, []string{"prod/web1"}, true}, // web2 is remote
		{"prod", "web", Egress, nil, false},
		{"prod", "admin-egress", Egress, []string{"prod/admin"}, true},
		{"prod", "nope", Ingress, nil, false},
		{"dev", "web", Ingress, nil, false},
	} {
		pods, ok := e.Selected(tc.ns, tc.policy, tc.d)
		if !slices.Equal(pods, tc.pods) || ok != tc.ok {
			t.Errorf("Selected(%s, %s, %s) = %v, %v; want %v, %v", tc.ns, tc.policy, tc.d, pods, ok, tc.pods, tc.ok)
		}
	}
}

// TestFlowRulesRandom: on the property test's random clusters, every
// compiled allow flow (plain, conj_id, clause) maps back to at least one
// rule, of its own namespace unless it is a shared clause, and no other
// compiled flow maps to a rule.
func TestFlowRulesRandom(t *testing.T) {
	attributed := 0
	for seed := range 60 {
		g := gen{rand.New(rand.NewPCG(uint64(seed), 7))}
		in := g.cluster()
		c := NewCompiler(Input{})
		c.alwaysConj = seed%3 != 0
		c.Update(in, namesOf(in)...)
		e := c.Explainer()
		for owner, flows := range c.Owners() {
			for _, f := range flows {
				got := e.FlowRules(f)
				_, conj := conjIDOf(f)
				clause := slices.ContainsFunc(f.Actions, func(a ovs.Action) bool { _, ok := a.(ovs.Conjunction); return ok })
				allow := conj || clause || f.Priority == PriorityPlainAllow
				if allow != (len(got) > 0) {
					t.Fatalf("seed %d: %s %s: rules %v", seed, owner, f, got)
				}
				if allow {
					attributed++
				}
				if owner.Kind() == pipeline.KindPolicyNamespace {
					ns := owner.ID()
					for _, r := range got {
						if r.Namespace != ns {
							t.Fatalf("seed %d: %s %s: rule %s of another namespace", seed, owner, f, r)
						}
					}
				}
			}
		}
	}
	if attributed < 100 {
		t.Errorf("only %d allow flows in the random clusters: the generator no longer covers them", attributed)
	}
}
