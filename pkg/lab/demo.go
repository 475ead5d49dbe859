package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/sdnctl"
)

// The demo of seeds/003 (OpenShift-SDN and NetworkPolicy, 2019): projects
// proj1 and proj2, clients and servers spread over the nodes, and four
// NetworkPolicies applied one after another. client3 is our addition: a
// second client in proj1, so that pod-level selection (step 3) and
// namespace-level selection (step 4) show in the matrix.
const DemoPort = 8080

var (
	client1 = types.NamespacedName{Namespace: "proj1", Name: "client1"}
	client3 = types.NamespacedName{Namespace: "proj1", Name: "client3"}
	server1 = types.NamespacedName{Namespace: "proj1", Name: "server1"}
	client2 = types.NamespacedName{Namespace: "proj2", Name: "client2"}
	server2 = types.NamespacedName{Namespace: "proj2", Name: "server2"}

	demoClients = []types.NamespacedName{client1, client3, client2}
	demoServers = []types.NamespacedName{server1, server2}
)

// demoPods places the pods as the slides do where they say (client1 on
// node1, server1 on node2), the others round-robin.
func demoPods(nodes int) []PodSpec {
	node := func(i int) string { return fmt.Sprintf("node%d", (i%nodes)+1) }
	port := []corev1.ContainerPort{{Name: "http", ContainerPort: DemoPort, Protocol: corev1.ProtocolTCP}}
	mk := func(k types.NamespacedName, i int, ports []corev1.ContainerPort) PodSpec {
		return PodSpec{Namespace: k.Namespace, Name: k.Name, Node: node(i), Labels: map[string]string{"app": k.Name}, Ports: ports}
	}
	return []PodSpec{mk(client1, 0, nil), mk(server1, 1, port), mk(client2, 2, nil), mk(server2, 0, port), mk(client3, 2, nil)}
}

// demoStep is one change and the reachability it should give.
type demoStep struct {
	title, explain string
	apply          func(ctx context.Context, l *Lab) error
	allowed        [][2]types.NamespacedName
}

func allow(pairs ...[2]types.NamespacedName) [][2]types.NamespacedName { return pairs }
func pair(c, s types.NamespacedName) [2]types.NamespacedName           { return [2]types.NamespacedName{c, s} }

var everyone = allow(pair(client1, server1), pair(client1, server2), pair(client3, server1),
	pair(client3, server2), pair(client2, server1), pair(client2, server2))

// RunDemo creates the demo namespaces and pods, then walks through the
// steps of the lab's mode, printing the matrix after each. It returns the
// number of cells that differed from what the step should give.
func (l *Lab) RunDemo(ctx context.Context, w io.Writer) (int, error) {
	if err := l.EnsureNamespaces(ctx, nil, "proj1", "proj2"); err != nil {
		return 0, err
	}
	if l.UsesVNIDs() {
		ids, err := l.WaitNetNamespaces(ctx, "proj1", "proj2")
		if err != nil {
			return 0, err
		}
		fmt.Fprintf(w, "\nNamespaces proj1 (VNID %d) and proj2 (VNID %d).\n", ids["proj1"], ids["proj2"])
	}
	var keys []types.NamespacedName
	for _, p := range demoPods(len(l.Nodes())) {
		if err := l.CreatePod(ctx, p); err != nil {
			return 0, err
		}
		keys = append(keys, types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
	}
	ips, err := l.WaitPodsRunning(ctx, 2*time.Minute, keys...)
	if err != nil {
		return 0, err
	}
	l.printPods(ctx, w, ips)
	steps := l.demoSteps()
	mismatches, err := l.runSteps(ctx, w, ips, steps)
	if err != nil {
		return mismatches, err
	}
	m, err := l.serviceStep(ctx, w, ips, len(steps), steps[len(steps)-1].allowed)
	return mismatches + m, err
}

// serviceStep puts each server behind a ClusterIP Service (selector
// app=<server>, port 8080; kube-controller-manager writes the
// EndpointSlices, every agent programs br0) and probes the clients against
// the ClusterIPs: the matrix must be the last step's, the policies (or
// VNIDs) deciding for the endpoint behind the virtual address.
func (l *Lab) serviceStep(ctx context.Context, w io.Writer, ips map[types.NamespacedName]netip.Addr, n int, allowed [][2]types.NamespacedName) (int, error) {
	vips := map[types.NamespacedName]netip.Addr{}
	for k, ip := range ips {
		vips[k] = ip
	}
	var names []string
	for _, s := range demoServers {
		vip, err := l.EnsureService(ctx, s.Namespace, s.Name, map[string]string{"app": s.Name}, DemoPort)
		if err != nil {
			return 0, err
		}
		vips[s] = vip
		names = append(names, fmt.Sprintf("%s → %s:%d", s, vip, DemoPort))
	}
	want := Allowed{}
	for _, p := range allowed {
		want[p] = true
	}
	m := l.ProbeUntil(ctx, want, 15*time.Second, demoClients, demoServers, vips, DemoPort)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	fmt.Fprintf(w, "\n[%d] the servers behind ClusterIP Services (%s)\n", n, strings.Join(names, ", "))
	fmt.Fprintln(w, "    br0 load-balances the virtual address (tables 21-24: select group, DNAT) before the policy tables: same matrix")
	return m.Render(w, want), nil
}

func (l *Lab) printPods(ctx context.Context, w io.Writer, ips map[types.NamespacedName]netip.Addr) {
	fmt.Fprintln(w, "Pods (servers listen on TCP 8080):")
	for _, p := range demoPods(len(l.Nodes())) {
		k := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
		fmt.Fprintf(w, "    %-16s %-15s on %s\n", k, ips[k], p.Node)
	}
}

func (l *Lab) demoSteps() []demoStep {
	switch l.cfg.PluginName {
	case networkv1.MultiTenantPluginName:
		return multitenantSteps()
	case networkv1.SingleTenantPluginName:
		return []demoStep{{title: "subnet mode", explain: "a flat network: every pod reaches every pod", allowed: everyone}}
	}
	return policySteps()
}

func (l *Lab) runSteps(ctx context.Context, w io.Writer, ips map[types.NamespacedName]netip.Addr, steps []demoStep) (int, error) {
	mismatches := 0
	for i, st := range steps {
		if st.apply != nil {
			if err := st.apply(ctx, l); err != nil {
				return mismatches, fmt.Errorf("demo step %q: %w", st.title, err)
			}
		}
		want := Allowed{}
		for _, p := range st.allowed {
			want[p] = true
		}
		m := l.ProbeUntil(ctx, want, 8*time.Second, demoClients, demoServers, ips, DemoPort)
		if ctx.Err() != nil {
			return mismatches, ctx.Err()
		}
		fmt.Fprintf(w, "\n[%d] %s\n    %s\n", i, st.title, st.explain)
		mismatches += m.Render(w, want)
	}
	fmt.Fprintln(w, "\n    ✓ connected   ✗ no answer (dropped)   refused: TCP reset   ! differs from what the policy should give")
	if mismatches > 0 {
		fmt.Fprintf(w, "\n%d cell(s) differ from what the policies should give.\n", mismatches)
		fmt.Fprintln(w, "The matrices show what the datapath really does; see the node logs and 'sdnctl flows'.")
	}
	return mismatches, nil
}

func policySteps() []demoStep {
	return []demoStep{
		{title: "no NetworkPolicy",
			explain: "networkpolicy mode isolates nothing until a policy selects a pod: every client reaches every server",
			allowed: everyone},
		{title: "deny-by-default in proj1 and proj2 (podSelector: {}, ingress: [])",
			explain: "every pod of both projects is isolated for ingress: all connections are dropped",
			apply:   applyPolicies(denyByDefault("proj1"), denyByDefault("proj2"))},
		{title: "allow-same-namespace in proj1 and proj2 (from: podSelector: {})",
			explain: "pods may talk within their project again (reg0 == reg1 in table 80); cross-project stays dropped",
			apply:   applyPolicies(allowSameNamespace("proj1"), allowSameNamespace("proj2")),
			allowed: allow(pair(client1, server1), pair(client3, server1), pair(client2, server2))},
		{title: "allow-server1-from-client1 in proj1, replacing allow-same-namespace there",
			explain: "allows add up, so the broad proj1 policy is deleted: only app=client1 may reach server1 now; client3 loses it",
			apply: func(ctx context.Context, l *Lab) error {
				if err := applyPolicies(allowServer1FromClient1())(ctx, l); err != nil {
					return err
				}
				return l.Kube.NetworkingV1().NetworkPolicies("proj1").Delete(ctx, "allow-same-namespace", metav1.DeleteOptions{})
			},
			allowed: allow(pair(client1, server1), pair(client2, server2))},
		{title: "allow-from-proj1-client1 in proj2 (server2 from namespaceSelector name=proj1)",
			explain: "server2 accepts every pod of proj1 (a namespace peer matches the VNID, so client3 too, whatever the name says)",
			apply:   applyPolicies(allowFromProj1()),
			allowed: allow(pair(client1, server1), pair(client2, server2), pair(client1, server2), pair(client3, server2))},
	}
}

func multitenantSteps() []demoStep {
	podNetwork := func(verb, to string, projects ...string) func(ctx context.Context, l *Lab) error {
		return func(ctx context.Context, l *Lab) error {
			clients := &sdnctl.Clients{Kube: l.Kube, Network: l.Network}
			if err := sdnctl.ChangePodNetwork(ctx, clients, verb, to, projects, io.Discard); err != nil {
				return fmt.Errorf("sdnctl pod-network %s %v: %w", verb, projects, err)
			}
			return nil
		}
	}
	same := allow(pair(client1, server1), pair(client3, server1), pair(client2, server2))
	return []demoStep{
		{title: "multitenant mode, projects isolated",
			explain: "each project has its own VNID: pods reach their own project only", allowed: same},
		{title: "sdnctl pod-network join-projects --to=proj1 proj2",
			explain: "proj2 takes proj1's VNID: one network, everyone reaches everyone",
			apply:   podNetwork(sdnctl.PodNetworkJoin, "proj1", "proj2"), allowed: everyone},
		{title: "sdnctl pod-network isolate-projects proj2",
			explain: "proj2 gets a VNID of its own again: cross-project traffic is dropped",
			apply:   podNetwork(sdnctl.PodNetworkIsolate, "", "proj2"), allowed: same},
		{title: "sdnctl pod-network make-projects-global proj1",
			explain: "proj1 gets VNID 0: it reaches and is reached by every project",
			apply:   podNetwork(sdnctl.PodNetworkGlobal, "", "proj1"), allowed: everyone},
	}
}

func applyPolicies(ps ...*networkingv1.NetworkPolicy) func(ctx context.Context, l *Lab) error {
	return func(ctx context.Context, l *Lab) error {
		for _, p := range ps {
			_, err := l.Kube.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating networkpolicy %s/%s: %w", p.Namespace, p.Name, err)
			}
		}
		return nil
	}
}

func policy(ns, name string, target map[string]string, peers ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
	p := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: target},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	if len(peers) > 0 {
		p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: peers}}
	}
	return p
}

func denyByDefault(ns string) *networkingv1.NetworkPolicy { return policy(ns, "deny-by-default", nil) }

func allowSameNamespace(ns string) *networkingv1.NetworkPolicy {
	return policy(ns, "allow-same-namespace", nil, networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}})
}

func allowServer1FromClient1() *networkingv1.NetworkPolicy {
	return policy("proj1", "allow-server1-from-client1", map[string]string{"app": "server1"},
		networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client1"}}})
}

func allowFromProj1() *networkingv1.NetworkPolicy {
	return policy("proj2", "allow-from-proj1-client1", map[string]string{"app": "server2"},
		networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"name": "proj1"}}})
}
