package sdnctl

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubefake "k8s.io/client-go/kubernetes/fake"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	networkfake "github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned/fake"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// The --policy scenario: networkpolicy mode, shop (VNID 10) on node1 (10.128.0.0/23) with
// web-1, web-2 (app=web), client-1, client-2 (app=client), db (app=db), and web-3 on
// node2 (10.128.2.0/23); other (VNID 11) with a policy of its own on node1.
//
// shop/allow-web selects web. ingress[0]: from client on tcp 80, 443 (2 targets × 2
// peers × 2 ports: conjunction 2560); ingress[1]: from db on tcp 9090 (2 plain flows).
// shop/db selects db. ingress[0]: from client and web on tcp 80, 443, 5432 (1 × 5 × 3:
// conjunction 2561, at the same level as 2560, so that the peer clauses of the clients
// and the port clauses tcp 80 and 443 are shared flows carrying both conjunctions);
// egress[0]: to web on tcp 80 (3 plain flows).
var policyPods = []tracePod{
	{"shop", "web-1", "10.128.0.10", "node1", "web", 3},
	{"shop", "web-2", "10.128.0.11", "node1", "web", 4},
	{"shop", "client-1", "10.128.0.12", "node1", "client", 5},
	{"shop", "client-2", "10.128.0.13", "node1", "client", 6},
	{"shop", "db", "10.128.0.14", "node1", "db", 7},
	{"shop", "web-3", "10.128.2.10", "node2", "web", 3},
	{"other", "app", "10.128.0.20", "node1", "app", 8},
}

var policyVNIDs = map[string]uint32{"shop": 10, "other": 11}

func policyPolicies() []*networkingv1.NetworkPolicy {
	tcp := func(ports ...int32) []networkingv1.NetworkPolicyPort {
		var out []networkingv1.NetworkPolicyPort
		for _, p := range ports {
			proto, v := corev1.ProtocolTCP, intstr.FromInt32(p)
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v})
		}
		return out
	}
	app := func(apps ...string) []networkingv1.NetworkPolicyPeer {
		return []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: apps}}}}}
	}
	sel := func(a string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchLabels: map[string]string{"app": a}}
	}
	meta := func(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }
	in, eg := networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress
	return []*networkingv1.NetworkPolicy{
		{ObjectMeta: meta("shop", "allow-web"), Spec: networkingv1.NetworkPolicySpec{PodSelector: sel("web"), PolicyTypes: []networkingv1.PolicyType{in},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: app("client"), Ports: tcp(80, 443)}, {From: app("db"), Ports: tcp(9090)}}}},
		{ObjectMeta: meta("shop", "db"), Spec: networkingv1.NetworkPolicySpec{PodSelector: sel("db"), PolicyTypes: []networkingv1.PolicyType{in, eg},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: app("client", "web"), Ports: tcp(80, 443, 5432)}},
			Egress:  []networkingv1.NetworkPolicyEgressRule{{To: app("web"), Ports: tcp(80)}}}},
		{ObjectMeta: meta("other", "allow-web"), Spec: networkingv1.NetworkPolicySpec{PodSelector: sel("app"), PolicyTypes: []networkingv1.PolicyType{in},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: app("web"), Ports: tcp(80, 443)}}}},
	}
}

// policyClients are fake API clients holding the scenario.
func policyClients() *Clients {
	var kubeObjs, netObjs []runtime.Object
	for ns, vnid := range policyVNIDs {
		kubeObjs = append(kubeObjs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		netObjs = append(netObjs, &networkv1.NetNamespace{ObjectMeta: metav1.ObjectMeta{Name: ns}, NetName: ns, NetID: vnid})
	}
	for _, p := range policyPods {
		kubeObjs = append(kubeObjs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: map[string]string{"app": p.app}},
			Spec:       corev1.PodSpec{NodeName: p.nodeName},
			Status:     corev1.PodStatus{PodIP: p.ip},
		})
	}
	for _, np := range policyPolicies() {
		kubeObjs = append(kubeObjs, np)
	}
	for _, n := range traceNodes {
		netObjs = append(netObjs, &networkv1.HostSubnet{ObjectMeta: metav1.ObjectMeta{Name: n.Name},
			Host: n.Name, HostIP: n.HostIP.String(), Subnet: n.Subnet.String()})
	}
	return &Clients{Kube: kubefake.NewSimpleClientset(kubeObjs...), Network: networkfake.NewSimpleClientset(netObjs...)}
}

// policyDump is node1's bridge in the scenario: the static pipeline, the pods, and the
// flows the compiler renders for node1 from its own copy of the scenario (not the API's).
func policyDump(t *testing.T) []ovs.DumpedFlow {
	t.Helper()
	self := traceNodes[0]
	c := pipeline.FlowConfig{Mode: clusternetwork.ModeNetworkPolicy, ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/14")},
		ServiceNetwork: netip.MustParsePrefix("172.30.0.0/16"), LocalSubnet: self.Subnet, NodeIP: self.HostIP}
	flows := append(pipeline.BaseFlows(c), c.Isolation().StaticFlows(c)...)
	var in networkpolicy.Input
	for ns, vnid := range policyVNIDs {
		in.Namespaces = append(in.Namespaces, networkpolicy.Namespace{Name: ns, VNID: vnid})
	}
	for _, p := range policyPods {
		ip := netip.MustParseAddr(p.ip)
		in.Pods = append(in.Pods, networkpolicy.Pod{Namespace: p.ns, Name: p.name, Labels: map[string]string{"app": p.app}, IP: ip, Local: p.nodeName == self.Name})
		if p.nodeName == self.Name {
			flows = append(flows, pipeline.PodFlows(c, pipeline.PodInfo{Namespace: p.ns, Name: p.name, IP: ip, OFPort: p.ofport, VNID: policyVNIDs[p.ns]})...)
		}
	}
	in.Policies = policyPolicies()
	owners, errs := networkpolicy.Compile(in)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	flows = append(flows, networkpolicy.Flatten(owners)...)
	flows = append(flows, pipeline.VersionFlow(c))
	if err := ovs.ValidatePipeline(flows); err != nil {
		t.Fatal(err)
	}
	out := make([]ovs.DumpedFlow, 0, len(flows))
	for _, f := range flows {
		out = append(out, ovs.DumpedFlow{Flow: f})
	}
	return out
}

// policyPorts are node1's pod ports in its OVSDB, from which sdnctl (like the
// agent) takes the local pods' addresses.
func policyPorts() []ovsdb.PortInfo {
	var out []ovsdb.PortInfo
	for _, p := range policyPods {
		if p.nodeName == traceNodes[0].Name {
			out = append(out, ovsdb.PortInfo{Name: "veth-" + p.name, OFPort: int(p.ofport), ExternalIDs: map[string]string{
				ovsdb.ExternalIDIP: p.ip, ovsdb.ExternalIDPodNamespace: p.ns, ovsdb.ExternalIDPodName: p.name}})
		}
	}
	return out
}

var conjActionRE = regexp.MustCompile(`conjunction\((\d+),`)

// conjIDs are the conjunction IDs a raw flow line mentions (conj_id or actions).
func conjIDs(line string) []string {
	var ids []string
	if _, rest, ok := strings.Cut(line, "conj_id="); ok {
		id, _, _ := strings.Cut(rest, " ")
		ids = append(ids, strings.TrimSuffix(id, ","))
	}
	for _, m := range conjActionRE.FindAllStringSubmatch(line, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// TestFlowsPolicy checks that --policy lists exactly the flows of one of two policies of
// a namespace, labelled with their rules, and its errors.
func TestFlowsPolicy(t *testing.T) {
	dump := policyDump(t)
	run := func(t *testing.T, args ...string) runResult {
		t.Helper()
		b := &cannedBackend{dump: dump, ports: policyPorts()}
		got := runFlows(t, Options{Clients: policyClients()}, b.backend(), append([]string{"--node", "node1"}, args...)...)
		if diff := cmp.Diff([]string{fmt.Sprintf("br0 cookie=%#x/%#x", uint64(ovs.CookiePolicy)<<56, ovs.CategoryMask)}, b.filters); got.code == ExitOK && diff != "" {
			t.Errorf("dump filters (-want +got):\n%s", diff)
		}
		return got
	}

	t.Run("golden", func(t *testing.T) {
		got := run(t, "--policy", "shop/allow-web")
		if got.code != ExitOK || got.stderr != "" {
			t.Fatalf("exit %d, stderr:\n%s", got.code, got.stderr)
		}
		assertGolden(t, filepath.Join("flows", "policy-allow-web.txt"), got.stdout)
	})

	// In raw form: allow-web is conjunction 2560 (2 target clauses, 2 shared peer
	// clauses, 2 shared port clauses, the conj_id flow), the 2 plain flows from db on
	// 9090 and the ingress default drop; db is conjunction 2561 (1 target clause, 5 peer
	// clauses, 3 port clauses, the conj_id flow), 3 plain egress flows and both drops.
	rawLines := func(t *testing.T, policy string) []string {
		t.Helper()
		got := run(t, "--policy", policy, "-o", "raw")
		if got.code != ExitOK || got.stderr != "" {
			t.Fatalf("exit %d, stderr:\n%s", got.code, got.stderr)
		}
		parseRaw(t, got.stdout)
		return strings.Split(strings.TrimSuffix(got.stdout, "\n"), "\n")
	}
	web, db := rawLines(t, "shop/allow-web"), rawLines(t, "shop/db")
	kinds := func(lines []string, conj string) (conjFlows, plain, drops int) {
		for _, l := range lines {
			ids := conjIDs(l)
			switch {
			case slices.Contains(ids, conj):
				conjFlows++
			case len(ids) > 0:
				t.Errorf("flow of another conjunction: %s", l)
			case strings.Contains(l, "priority=195,"):
				plain++
			case strings.Contains(l, "priority=60,") && strings.HasSuffix(l, "actions=drop"):
				drops++
			default:
				t.Errorf("unexpected flow: %s", l)
			}
		}
		return
	}
	type count struct{ conj, plain, drops int }
	for _, tc := range []struct {
		name  string
		lines []string
		conj  string
		want  count
	}{
		{"allow-web", web, "2560", count{7, 2, 1}},
		{"db", db, "2561", count{10, 3, 2}},
	} {
		c, p, d := kinds(tc.lines, tc.conj)
		if got := (count{c, p, d}); got != tc.want {
			t.Errorf("%s: %+v flows, want %+v:\n%s", tc.name, got, tc.want, strings.Join(tc.lines, "\n"))
		}
	}
	// What both list: the shared clauses (client peers, tcp 80 and 443) and the ingress
	// default drop; no plain flow of the one is in the other.
	var common []string
	for _, l := range web {
		if slices.Contains(db, l) {
			common = append(common, l)
			if !strings.Contains(l, "conjunction(2560,") && !strings.HasSuffix(l, "actions=drop") {
				t.Errorf("listed for both policies: %s", l)
			}
		}
	}
	if len(common) != 5 {
		t.Errorf("%d flows listed for both policies, want 5 (4 shared clauses, the ingress drop):\n%s", len(common), strings.Join(common, "\n"))
	}

	for _, tc := range []struct {
		name string
		args []string
		want runResult
	}{
		{"unknown policy", []string{"--policy", "shop/nope"},
			runResult{code: ExitFailure, stderr: "Error from server (NotFound): networkpolicies.networking.k8s.io \"nope\" not found\n"}},
		{"policy of another namespace", []string{"--policy", "other/db"},
			runResult{code: ExitFailure, stderr: "Error from server (NotFound): networkpolicies.networking.k8s.io \"db\" not found\n"}},
		{"unknown node", []string{"--policy", "shop/db", "--node", "node9"},
			runResult{code: ExitFailure, stderr: "error: --policy compiles the policies for one node, and no HostSubnet names node \"node9\": pass --node NAME, the node whose bridge --ofctl-target reaches\n"}},
		{"node without pods of the namespace", []string{"--policy", "other/allow-web", "--node", "node2"},
			runResult{stderr: "note: the bridge has policy flows of namespace other, but the API has none of its pods on node node2: is --node right?\n" +
				"No flows found on br0 matching policy other/allow-web\n"}},
		{"bad argument", []string{"--policy", "db"},
			runResult{code: ExitFailure, stderr: "error: --policy must be NAMESPACE/NAME, got \"db\"\nSee 'sdnctl flows -h' for help and examples\n"}},
		{"with --pod", []string{"--policy", "shop/db", "--pod", "shop/db"},
			runResult{code: ExitFailure, stderr: "error: --policy and --pod cannot be combined\nSee 'sdnctl flows -h' for help and examples\n"}},
		{"with --owner", []string{"--policy", "shop/db", "--owner", "pod"},
			runResult{code: ExitFailure, stderr: "error: --policy selects policy flows; it cannot be combined with --owner pod\nSee 'sdnctl flows -h' for help and examples\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := run(t, tc.args...)
			got.stdout = ""
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(runResult{})); diff != "" {
				t.Errorf("sdnctl flows %v (-want +got):\n%s", tc.args, diff)
			}
		})
	}

	// A flow of another snapshot is listed for no policy, with a note.
	t.Run("stale flow", func(t *testing.T) {
		stale := ovs.NewFlow(ovs.TablePolicyIngress, networkpolicy.PriorityPlainAllow).
			WithCookie(pipeline.PolicyNamespaceOwner("shop").Cookie()).
			MatchReg(ovs.DstVNIDField, 10).MatchProto(ovs.ProtoTCP).MatchTpDst(9999).Action(ovs.OutPortField.Output())
		b := &cannedBackend{dump: append(slices.Clone(dump), ovs.DumpedFlow{Flow: stale}), ports: policyPorts()}
		got := runFlows(t, Options{Clients: policyClients()}, b.backend(), "--node", "node1", "--policy", "shop/allow-web", "-o", "raw")
		if want := "note: 1 allow flow of namespace shop is explained by no current NetworkPolicy rule (stale flows, or --node is wrong)\n"; got.code != ExitOK || got.stderr != want {
			t.Errorf("exit %d, stderr %q, want %q", got.code, got.stderr, want)
		}
		if strings.Contains(got.stdout, "tp_dst=9999") || strings.Count(got.stdout, "\n") != 10 {
			t.Errorf("stdout:\n%s", got.stdout)
		}
	})

	// Without the API, --policy fails before touching the bridge.
	t.Run("no API", func(t *testing.T) {
		home := t.TempDir()
		t.Setenv("HOME", home)
		t.Setenv("KUBECONFIG", filepath.Join(home, "missing"))
		b := &cannedBackend{dump: dump}
		got := runFlows(t, Options{}, b.backend(), "--policy", "shop/db")
		want := runResult{code: ExitFailure, stderr: "error: --policy needs the API server to compile the namespace's NetworkPolicies: no kubeconfig (pass --kubeconfig)\n"}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(runResult{})); diff != "" || len(b.filters) > 0 {
			t.Errorf("(-want +got):\n%s\ndumps: %v", diff, b.filters)
		}
	})
}
