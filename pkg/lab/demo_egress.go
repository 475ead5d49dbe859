package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
)

// The egress-firewall part of the demo (VNID modes): proj1 may reach
// nothing outside the cluster but www.lab.example, shown by probes from the
// demo's clients to two addresses of the external host, and the allowed
// address follows the name when its record changes.

// DemoEgressName is the one name proj1 may reach in the demo.
const DemoEgressName = "www.lab.example"

var (
	demoExtA = netip.MustParseAddr("203.0.113.9")
	demoExtB = netip.MustParseAddr("203.0.113.10")
)

// egressStep is one change and which (client, address) pairs should connect.
type egressStep struct {
	title, explain string
	apply          func(ctx context.Context, l *Lab) error
	allowed        map[types.NamespacedName][]netip.Addr
}

func egressSteps() []egressStep {
	everyone := map[types.NamespacedName][]netip.Addr{
		client1: {demoExtA, demoExtB}, client3: {demoExtA, demoExtB}, client2: {demoExtA, demoExtB}}
	only := func(a netip.Addr) map[types.NamespacedName][]netip.Addr {
		return map[types.NamespacedName][]netip.Addr{client1: {a}, client3: {a}, client2: {demoExtA, demoExtB}}
	}
	return []egressStep{
		{title: "no EgressNetworkPolicy",
			explain: "traffic leaving the cluster network is allowed by default (table 100's final flow)",
			apply:   resetEgressDemo,
			allowed: everyone},
		{title: "EgressNetworkPolicy proj1/default: Allow dnsName " + DemoEgressName + ", Deny 0.0.0.0/0",
			explain: DemoEgressName + " is 203.0.113.9 (TTL 5 s): proj1 reaches it and nothing else outside; proj2 is not affected",
			apply:   applyEgressPolicy,
			allowed: only(demoExtA)},
		{title: DemoEgressName + " moves to 203.0.113.10",
			explain: "each agent re-resolves the name at its TTL (at least 5 s) and swaps the address in one bundle",
			apply:   func(ctx context.Context, l *Lab) error { return l.DNS.SetA(DemoEgressName, 5, demoExtB) },
			allowed: only(demoExtB)},
	}
}

// resetEgressDemo removes what an earlier run of the demo left.
func resetEgressDemo(ctx context.Context, l *Lab) error {
	err := l.Network.NetworkV1().EgressNetworkPolicies("proj1").Delete(ctx, "default", metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return l.DNS.SetA(DemoEgressName, 5, demoExtA)
}

func applyEgressPolicy(ctx context.Context, l *Lab) error {
	enp := &networkv1.EgressNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "proj1", Name: "default"},
		Spec: networkv1.EgressNetworkPolicySpec{Egress: []networkv1.EgressNetworkPolicyRule{
			{Type: networkv1.EgressNetworkPolicyRuleAllow, To: networkv1.EgressNetworkPolicyPeer{DNSName: DemoEgressName}},
			{Type: networkv1.EgressNetworkPolicyRuleDeny, To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: "0.0.0.0/0"}},
		}}}
	_, err := l.Network.NetworkV1().EgressNetworkPolicies("proj1").Create(ctx, enp, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating EgressNetworkPolicy proj1/default: %w", err)
	}
	return nil
}

// runEgressDemo walks through the egress steps, printing who reaches which
// external address (TCP 80) after each, and returns the number of cells
// that differ from what the step should give. RunDemo runs it before the
// NetworkPolicy steps, while the egress firewall is the clients' only
// restriction.
func (l *Lab) runEgressDemo(ctx context.Context, w io.Writer) (int, error) {
	if l.DNS == nil || l.Ext == nil || !l.UsesVNIDs() {
		return 0, nil
	}
	fmt.Fprintf(w, "\nThe outside world: external host %s (203.0.113.1-16, TCP 80), DNS server %s (zone %s)\n", l.Ext.IP.Addr(), DNSAddr, DNSZone)
	bad := 0
	for i, st := range egressSteps() {
		if err := st.apply(ctx, l); err != nil {
			return bad, fmt.Errorf("demo step %q: %w", st.title, err)
		}
		got := l.probeEgressUntil(ctx, st.allowed, 12*time.Second)
		if ctx.Err() != nil {
			return bad, ctx.Err()
		}
		fmt.Fprintf(w, "\n[E%d] %s\n    %s\n", i, st.title, st.explain)
		bad += renderEgress(w, got, st.allowed)
	}
	return bad, nil
}

// probeEgressUntil probes every client → address until the outcomes match
// want or within passes, and returns the last outcomes.
func (l *Lab) probeEgressUntil(ctx context.Context, want map[types.NamespacedName][]netip.Addr, within time.Duration) map[types.NamespacedName]map[netip.Addr]kubelet.Outcome {
	deadline := time.Now().Add(within)
	for {
		got := l.probeEgress(ctx)
		if egressMismatches(got, want) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (l *Lab) probeEgress(ctx context.Context) map[types.NamespacedName]map[netip.Addr]kubelet.Outcome {
	out := map[types.NamespacedName]map[netip.Addr]kubelet.Outcome{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range demoClients {
		out[c] = map[netip.Addr]kubelet.Outcome{}
		for _, a := range []netip.Addr{demoExtA, demoExtB} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o, _ := l.Probe(ctx, c, a, 80, corev1.ProtocolTCP, time.Second)
				mu.Lock()
				out[c][a] = o
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return out
}

func egressMismatches(got map[types.NamespacedName]map[netip.Addr]kubelet.Outcome, want map[types.NamespacedName][]netip.Addr) int {
	bad := 0
	for c, row := range got {
		for a, o := range row {
			if (o == kubelet.Connected) != containsAddr(want[c], a) {
				bad++
			}
		}
	}
	return bad
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// renderEgress prints the clients × addresses table; a cell that differs
// from want is marked "!". It returns the number of such cells.
func renderEgress(w io.Writer, got map[types.NamespacedName]map[netip.Addr]kubelet.Outcome, want map[types.NamespacedName][]netip.Addr) int {
	const width = 18
	fmt.Fprintf(w, "    %-*s%-*s%-*s\n", width, "from \\ to", width, demoExtA.String()+":80", width, demoExtB.String()+":80")
	bad := 0
	for _, c := range demoClients {
		fmt.Fprintf(w, "    %-*s", width, c.String())
		for _, a := range []netip.Addr{demoExtA, demoExtB} {
			txt := cellText(got[c][a], nil)
			if (got[c][a] == kubelet.Connected) != containsAddr(want[c], a) {
				txt += " !"
				bad++
			}
			fmt.Fprintf(w, "%-*s", width, txt)
		}
		fmt.Fprintln(w)
	}
	return bad
}
