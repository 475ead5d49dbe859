package e2e

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
)

// modelCluster is the truth-table cluster without a lab: pod j of namespace
// i has address 10.128.i.(j+10).
func modelCluster() *npCluster {
	c := &npCluster{sysLabel: map[string]map[string]string{}, ips: map[types.NamespacedName]netip.Addr{}}
	base := &npState{NSLabels: map[string]map[string]string{}}
	for i, ns := range npNamespaces {
		c.sysLabel[ns] = map[string]string{"kubernetes.io/metadata.name": ns}
		base.NSLabels[ns] = c.nsLabels(ns, map[string]string{"ns": ns})
		for j, name := range npPodNames {
			k := types.NamespacedName{Namespace: ns, Name: name}
			ip := netip.AddrFrom4([4]byte{10, 128, byte(i), byte(10 + j)})
			c.ips[k] = ip
			base.Pods = append(base.Pods, &npPod{Key: k, Node: fmt.Sprintf("node%d", (i+j)%3+1), IP: ip,
				Labels: map[string]string{"pod": name}, Ports: npServedPorts()})
		}
	}
	c.base, c.cur = base, base.clone()
	return c
}

// TestNPModelFacts pins the reference model to hand-checked facts of
// NetworkPolicy semantics, so that a wrong model cannot make the lab suite
// agree with a wrong datapath.
func TestNPModelFacts(t *testing.T) {
	c := modelCluster()
	byName := map[string]npScenario{}
	for _, sc := range npScenarios() {
		byName[sc.Name] = sc
	}
	cell := func(from, to string, port uint16, proto corev1.Protocol) npCell {
		return npCell{From: podKeyOf(from), To: podKeyOf(to), Port: port, Proto: proto}
	}
	C, R, X := kubelet.Connected, kubelet.Refused, kubelet.TimedOut
	facts := []struct {
		scenario string
		cell     npCell
		want     kubelet.Outcome
	}{
		{"no policies: everything connects, closed port refused", cell("x/a", "y/b", 80, sctp), C},
		{"no policies: everything connects, closed port refused", cell("x/a", "y/b", 82, tcp), R},
		{"default deny ingress in x", cell("y/a", "x/b", 80, udp), X},
		{"default deny ingress in x", cell("x/a", "x/a", 80, tcp), C}, // loopback
		{"default deny ingress in x", cell("x/a", "y/a", 81, sctp), C},
		{"default deny egress in x", cell("x/a", "y/a", 81, sctp), X},
		{"default deny egress in x", cell("y/a", "x/a", 81, sctp), C},
		{"deny ingress in x plus allow all ingress (union)", cell("z/c", "x/a", 81, tcp), C},
		{"podSelector: x/a from x/b only", cell("x/b", "x/a", 80, tcp), C},
		{"podSelector: x/a from x/b only", cell("y/b", "x/a", 80, tcp), X}, // podSelector alone: own namespace
		{"podSelector: x/a from x/b only", cell("y/b", "x/b", 80, tcp), C},
		{"podSelector NotIn and Exists", cell("x/c", "x/a", 80, tcp), C},
		{"podSelector NotIn and Exists", cell("x/b", "x/a", 80, tcp), X},
		{"podSelector and namespaceSelector in one peer: x/a from y/b", cell("y/b", "x/a", 81, tcp), C},
		{"podSelector and namespaceSelector in one peer: x/a from y/b", cell("y/a", "x/a", 81, tcp), X},
		{"podSelector and namespaceSelector in one peer: x/a from y/b", cell("x/b", "x/a", 81, tcp), X},
		{"two peers (or): x/a from namespace y or from x/b", cell("x/b", "x/a", 81, tcp), C},
		{"two peers (or): x/a from namespace y or from x/b", cell("y/c", "x/a", 81, tcp), C},
		{"two peers (or): x/a from namespace y or from x/b", cell("z/b", "x/a", 81, tcp), X},
		{"numeric port without protocol (TCP default): x/a on 81 from namespace y", cell("y/a", "x/a", 81, udp), X},
		{"named port serve-80-tcp into x", cell("z/a", "x/c", 80, tcp), C},
		{"named port serve-80-tcp into x", cell("z/a", "x/c", 81, tcp), X},
		{"named port with the wrong protocol matches nothing", cell("z/a", "x/c", 80, udp), X},
		{"UDP only: x ingress on UDP 80", cell("y/a", "x/a", 80, sctp), X},
		{"UDP only: x ingress on UDP 80", cell("y/a", "x/a", 80, udp), C},
		{"endPort 80-81 into x: both served ports, closed 82 refused", cell("y/a", "x/a", 82, tcp), X},
		{"endPort 81-90 into x from namespace z", cell("z/a", "x/a", 82, tcp), R},
		{"endPort 81-90 into x from namespace z", cell("z/a", "x/a", 80, tcp), X},
		{"ipBlock with except: x from the cluster CIDR except y/a and z/b", cell("y/a", "x/c", 80, tcp), X},
		{"ipBlock with except: x from the cluster CIDR except y/a and z/b", cell("y/b", "x/c", 80, tcp), C},
		{"egress ipBlock with except: x/a to the cluster CIDR except z's pods", cell("x/a", "z/c", 80, tcp), X},
		{"egress ipBlock with except: x/a to the cluster CIDR except z's pods", cell("x/b", "z/c", 80, tcp), C},
		{"egress to a named port resolved on the destination", cell("y/a", "z/a", 81, tcp), C},
		{"egress to a named port resolved on the destination", cell("y/a", "z/a", 81, udp), X},
		{"deny all egress from x, then allow the DNS-like port 53", cell("x/a", "z/a", 53, udp), C},
		{"deny all egress from x, then allow the DNS-like port 53", cell("x/a", "z/a", 80, udp), X},
		{"ingress and egress together: x/a from y, x/a to z", cell("x/a", "z/a", 80, tcp), C},
		{"ingress and egress together: x/a from y, x/a to z", cell("z/a", "x/a", 80, tcp), X},
		{"ingress and egress together: x/a from y, x/a to z", cell("x/a", "y/a", 80, tcp), X},
		{"multiple policies (union): x/a from x/b, from namespace z on 81", cell("z/a", "x/a", 81, tcp), C},
		{"multiple policies (union): x/a from x/b, from namespace z on 81", cell("z/a", "x/a", 80, tcp), X},
		{"policy whose podSelector selects nothing has no effect", cell("z/a", "x/a", 80, tcp), C},
		{"pod label added: z/c gets role=client", cell("z/c", "x/b", 80, tcp), C},
		{"pod label added: z/c gets role=client", cell("z/b", "x/b", 80, tcp), X},
		{"namespace label changed: y becomes ns=yy", cell("y/a", "x/a", 80, tcp), X},
		{"namespace label changed: z becomes ns=y", cell("z/a", "x/a", 80, tcp), C},
		{"pod relabelled out of a target: x/a becomes pod=aa", cell("z/a", "x/a", 80, tcp), C},
	}
	for _, f := range facts {
		sc, ok := byName[f.scenario]
		if !ok {
			t.Errorf("no scenario %q", f.scenario)
			continue
		}
		if got := sc.state(c).expect(f.cell); got != f.want {
			t.Errorf("%s: %s: model says %v, want %v", f.scenario, f.cell, got, f.want)
		}
	}
}

// TestNPModelInvariantAcross: a cell the change cannot affect in any mix of
// old and new egress/ingress verdicts is invariant; one that can is not.
func TestNPModelInvariantAcross(t *testing.T) {
	c := modelCluster()
	in := func(p ...*networkingv1.NetworkPolicy) *npState {
		s := c.base.clone()
		s.Policies = p
		return s
	}
	// Old: x denies egress to y, y allows everything. New: x allows egress,
	// y denies ingress from x. x→y is denied before and after, but a node
	// that has the new egress and the old ingress lets it through.
	a := in(pol("x", "e", sel(), typesOf(egressT), egress(nil, nsPeer(sel("ns", "z")))))
	b := in(denyIngressFrom("y", "x"))
	xy := npCell{From: podKeyOf("x/a"), To: podKeyOf("y/b"), Port: 80, Proto: tcp}
	if a.expect(xy) != kubelet.TimedOut || b.expect(xy) != kubelet.TimedOut {
		t.Fatalf("setup: %v %v", a.expect(xy), b.expect(xy))
	}
	if invariantAcross(a, b, xy) {
		t.Errorf("x→y is not invariant across the change")
	}
	zy := npCell{From: podKeyOf("z/a"), To: podKeyOf("y/b"), Port: 80, Proto: tcp}
	if !invariantAcross(a, b, zy) {
		t.Errorf("z→y is invariant across the change")
	}
}

func denyIngressFrom(ns, from string) *networkingv1.NetworkPolicy {
	return pol(ns, "not-from-"+from, sel(), ingress(nil, nsPeer(expr("ns", metav1.LabelSelectorOpNotIn, from))))
}

// TestNPScenarioTable: at least 40 scenarios, unique names, each "Change"
// scenario really is one object away from the previous one.
func TestNPScenarioTable(t *testing.T) {
	c := modelCluster()
	scs := npScenarios()
	if len(scs) < 40 {
		t.Errorf("%d scenarios, want ≥ 40", len(scs))
	}
	seen := map[string]bool{}
	prev := c.base
	for _, sc := range scs {
		if seen[sc.Name] {
			t.Errorf("duplicate scenario %q", sc.Name)
		}
		seen[sc.Name] = true
		s := sc.state(c)
		if sc.Change {
			if n := objectsChanged(prev, s); n != 1 {
				t.Errorf("%q is marked as a change but changes %d objects", sc.Name, n)
			}
		}
		prev = s
	}
}

func objectsChanged(a, b *npState) int {
	n := 0
	for _, ns := range npNamespaces {
		if labelPatch(a.NSLabels[ns], b.NSLabels[ns]) != nil {
			n++
		}
	}
	for _, p := range b.Pods {
		if labelPatch(a.pod(p.Key).Labels, p.Labels) != nil {
			n++
		}
	}
	type key struct{ ns, name string }
	old := map[key]*networkingv1.NetworkPolicy{}
	for _, p := range a.Policies {
		old[key{p.Namespace, p.Name}] = p
	}
	for _, p := range b.Policies {
		k := key{p.Namespace, p.Name}
		if o, ok := old[k]; !ok || !reflect.DeepEqual(o.Spec, p.Spec) {
			n++
		}
		delete(old, k)
	}
	return n + len(old)
}
