package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
)

// npCase is one NetworkPolicy edge case: what kube-apiserver v1.34 does with
// it and whether the compiler (networkpolicy.Validate) rejects it.
type npCase struct {
	name          string
	spec          networkingv1.NetworkPolicySpec
	apiAccepts    bool
	compilerField string // "" = the compiler accepts it
}

func ingressFrom(peers ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicySpec {
	return networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{From: peers}}}
}

func ingressPorts(ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicySpec {
	return networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: ports}}}
}

func block(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func npPort(proto string, port *intstr.IntOrString, end *int32) networkingv1.NetworkPolicyPort {
	p := networkingv1.NetworkPolicyPort{Port: port, EndPort: end}
	if proto != "" {
		pr := corev1.Protocol(proto)
		p.Protocol = &pr
	}
	return p
}

func intPort(v int32) *intstr.IntOrString    { p := intstr.FromInt32(v); return &p }
func namedPort(s string) *intstr.IntOrString { p := intstr.FromString(s); return &p }
func i32(v int32) *int32                     { return &v }

func nsSelector(reqs ...metav1.LabelSelectorRequirement) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: reqs}}
}

// npCases are the inputs the compiler might reject. Only the ones the API
// server accepts can ever reach the compiler.
func npCases() []npCase {
	const cidr = "spec.ingress[0].from[0].ipBlock.cidr"
	return []npCase{
		{"valid", ingressFrom(block("10.0.0.0/8", "10.1.0.0/16")), true, ""},
		{"cidr with leading zeros", ingressFrom(block("10.010.0.0/16")), true, cidr},
		{"cidr first octet with leading zero", ingressFrom(block("010.0.0.0/8")), true, cidr},
		{"except with leading zeros", ingressFrom(block("10.0.0.0/8", "10.001.0.0/16")), true, "spec.ingress[0].from[0].ipBlock.except"},
		{"cidr prefix length with leading zero", ingressFrom(block("10.0.0.0/08")), true, cidr},
		{"cidr with host bits", ingressFrom(block("10.0.0.1/8")), true, ""},
		{"IPv4-mapped IPv6 cidr", ingressFrom(block("::ffff:10.0.0.0/104")), true, ""},
		{"IPv6 cidr", ingressFrom(block("fd00::/64")), true, ""},
		{"cidr /33", ingressFrom(block("10.0.0.0/33")), false, cidr},
		{"cidr without length", ingressFrom(block("10.0.0.0")), false, cidr},
		{"except outside cidr", ingressFrom(block("10.0.0.0/16", "10.1.0.0/24")), false, ""},
		{"except equal to cidr", ingressFrom(block("10.0.0.0/16", "10.0.0.0/16")), false, ""},
		{"empty peer", ingressFrom(networkingv1.NetworkPolicyPeer{}), false, "spec.ingress[0].from[0]"},
		{"unknown selector operator", ingressFrom(nsSelector(metav1.LabelSelectorRequirement{Key: "a", Operator: "Bogus"})), false, "spec.ingress[0].from[0].namespaceSelector"},
		{"In without values", ingressFrom(nsSelector(metav1.LabelSelectorRequirement{Key: "a", Operator: metav1.LabelSelectorOpIn})), false, "spec.ingress[0].from[0].namespaceSelector"},
		{"invalid label value", ingressFrom(nsSelector(metav1.LabelSelectorRequirement{Key: "a", Operator: metav1.LabelSelectorOpIn, Values: []string{"bad value!"}})), false, "spec.ingress[0].from[0].namespaceSelector"},
		{"protocol ICMP", ingressPorts(npPort("ICMP", intPort(80), nil)), false, "spec.ingress[0].ports[0]"},
		{"protocol lower case", ingressPorts(npPort("tcp", intPort(80), nil)), false, "spec.ingress[0].ports[0]"},
		{"port 0", ingressPorts(npPort("TCP", intPort(0), nil)), false, "spec.ingress[0].ports[0]"},
		{"port 65536", ingressPorts(npPort("TCP", intPort(65536), nil)), false, "spec.ingress[0].ports[0]"},
		{"endPort below port", ingressPorts(npPort("TCP", intPort(90), i32(80))), false, "spec.ingress[0].ports[0]"},
		{"endPort without port", ingressPorts(npPort("TCP", nil, i32(80))), false, "spec.ingress[0].ports[0]"},
		{"endPort with named port", ingressPorts(npPort("TCP", namedPort("http"), i32(80))), false, "spec.ingress[0].ports[0]"},
		{"SCTP range", ingressPorts(npPort("SCTP", intPort(1000), i32(2000))), true, ""},
	}
}

// TestNetworkPolicyValidationVsAPIServer sends every case to a real
// kube-apiserver (server-side dry run) and checks both verdicts. It names
// the invalid inputs that pass the API server's own validation: those are
// the NetworkPolicies the controller must report.
func TestNetworkPolicyValidationVsAPIServer(t *testing.T) {
	c := startCluster(t)
	c.createNamespace(t, "np")
	var reachCompiler []string
	for i, tc := range npCases() {
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "np", Name: fmt.Sprintf("case-%d", i)}, Spec: tc.spec}
		_, err := c.kube.NetworkingV1().NetworkPolicies("np").Create(context.Background(), np, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if (err == nil) != tc.apiAccepts {
			t.Errorf("%s: kube-apiserver accepted=%v (err %v), want %v", tc.name, err == nil, err, tc.apiAccepts)
		}
		field := ""
		if verr, ok := networkpolicy.Validate(np).(*networkpolicy.ValidationError); ok {
			field = verr.Fields[0].Field
		}
		if field != tc.compilerField {
			t.Errorf("%s: compiler rejects field %q, want %q", tc.name, field, tc.compilerField)
		}
		if err == nil && field != "" {
			reachCompiler = append(reachCompiler, tc.name)
		}
	}
	t.Logf("invalid for the compiler but accepted by kube-apiserver: %s", strings.Join(reachCompiler, "; "))
}

func (c *cluster) createPolicy(t *testing.T, ns, name string, spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
	t.Helper()
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	np, err := c.kube.NetworkingV1().NetworkPolicies(ns).Create(context.Background(), np, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating NetworkPolicy %s/%s: %v", ns, name, err)
	}
	return np
}

func (c *cluster) updatePolicy(t *testing.T, np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	t.Helper()
	np, err := c.kube.NetworkingV1().NetworkPolicies(np.Namespace).Update(context.Background(), np, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("updating NetworkPolicy %s/%s: %v", np.Namespace, np.Name, err)
	}
	return np
}

// TestInvalidNetworkPolicyEvents: a policy the compiler rejects (in a
// namespace where no node has a pod) gets exactly one Warning Event per spec
// generation naming the field, from the controller — also after a restart
// — and the gauge follows; valid policies and metadata changes get none.
func TestInvalidNetworkPolicyEvents(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.NetworkPolicyPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9})
	c.createNamespace(t, "proj")
	rc := c.startController(t, "np", nil)
	bad := c.createPolicy(t, "proj", "bad", ingressFrom(block("10.010.0.0/16")))
	c.createPolicy(t, "proj", "good", ingressFrom(block("10.0.0.0/8")))
	invalid := func(want float64) func() string {
		return func() string {
			if v, _ := rc.metricIfRegistered(t, "ovs_sdn_controller_networkpolicies_invalid"); v != want {
				return fmt.Sprintf("networkpolicies_invalid = %v, want %v", v, want)
			}
			return ""
		}
	}
	eventually(t, 15*time.Second, invalid(1))
	const field = "spec.ingress[0].from[0].ipBlock.cidr: ipBlock cidr"
	eventually(t, 5*time.Second, func() string {
		if n := countEvents(c.eventsFor(t, "NetworkPolicy", "bad"), "Warning NetworkPolicyInvalid", field, "(ingress)"); n != 1 {
			return fmt.Sprintf("%d NetworkPolicyInvalid Events on bad, want 1: %q", n, c.eventsFor(t, "NetworkPolicy", "bad"))
		}
		return ""
	})

	// A label (no new generation) adds nothing; a new invalid spec adds one.
	bad.Labels = map[string]string{"touched": "yes"}
	bad = c.updatePolicy(t, bad)
	bad.Spec = ingressPorts(npPort("TCP", intPort(80), nil))
	bad.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{block("010.0.0.0/8")}}}
	bad.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	bad = c.updatePolicy(t, bad)
	eventually(t, 10*time.Second, func() string {
		if n := countEvents(c.eventsFor(t, "NetworkPolicy", "bad"), "spec.egress[0].to[0].ipBlock.cidr", "(egress)"); n != 1 {
			return fmt.Sprintf("no Event for generation %d: %q", bad.Generation, c.eventsFor(t, "NetworkPolicy", "bad"))
		}
		return ""
	})

	// A new leader repeats nothing.
	rc.stop(t)
	rc = c.startController(t, "np-2", nil)
	eventually(t, 15*time.Second, invalid(1))
	time.Sleep(time.Second)
	if ev := c.eventsFor(t, "NetworkPolicy", "bad"); countEvents(ev, "NetworkPolicyInvalid") != 2 {
		t.Errorf("want 2 NetworkPolicyInvalid Events (generations 1 and 3) after a restart, got %q", ev)
	}
	if ev := c.eventsFor(t, "NetworkPolicy", "good"); len(ev) != 0 {
		t.Errorf("Events on a valid policy: %q", ev)
	}

	// Fixed, then deleted: the gauge follows.
	bad.Spec.Egress = nil
	c.updatePolicy(t, bad)
	eventually(t, 10*time.Second, invalid(0))
	c.createPolicy(t, "proj", "bad2", ingressFrom(block("10.0.0.0/08")))
	eventually(t, 10*time.Second, invalid(1))
	if err := c.kube.NetworkingV1().NetworkPolicies("proj").Delete(context.Background(), "bad2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, invalid(0))
}
