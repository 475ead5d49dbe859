package networkpolicy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Edge cases, each a piece of a policy. Some are invalid for the compiler,
// some look invalid and are not (IPv6 blocks match nothing, host bits are
// masked, an empty port name resolves to nothing).
var (
	edgeCIDRs = []string{"10.0.0.0/33", "10.010.0.0/16", "010.0.0.0/8", "not-a-cidr", "", "fd00::/64",
		"::ffff:10.0.0.0/104", "10.0.0.1/8", "10.0.0.0/08", " 10.0.0.0/8", "10.0.0.0"}
	edgeExcepts = []string{"10.0.0.0/33", "010.0.0.0/24", "fd00::/80", "10.0.0.128/25", "garbage"}
	edgeReqs    = []metav1.LabelSelectorRequirement{
		{Key: "app", Operator: "Bogus"},
		{Key: "app", Operator: metav1.LabelSelectorOpIn},
		{Key: "bad key!", Operator: metav1.LabelSelectorOpExists},
		{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"bad value!"}},
		{Key: "app", Operator: metav1.LabelSelectorOpExists, Values: []string{"x"}},
		{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"web"}},
	}
	edgeLabels = []map[string]string{{"bad key!": "x"}, {"app": "bad value!"}, {"app": strings.Repeat("v", 64)}, {"app": "web"}}
	edgeProtos = []corev1.Protocol{"ICMP", "tcp", "", corev1.ProtocolSCTP}
)

// corrupt replaces one random part of np with an edge case.
func corrupt(g gen, np *networkingv1.NetworkPolicy) {
	switch g.r.IntN(6) {
	case 0:
		np.Spec.PodSelector = *edgeSelector(g)
	case 1, 2:
		rule := edgeRule(g, np)
		if rule == nil {
			return
		}
		peer := networkingv1.NetworkPolicyPeer{}
		switch g.r.IntN(4) {
		case 0:
			peer.IPBlock = &networkingv1.IPBlock{CIDR: edgeCIDRs[g.r.IntN(len(edgeCIDRs))]}
			if g.chance(0.5) {
				peer.IPBlock.CIDR = "10.0.0.0/16"
				peer.IPBlock.Except = []string{edgeExcepts[g.r.IntN(len(edgeExcepts))]}
			}
		case 1:
			peer.NamespaceSelector = edgeSelector(g)
		case 2:
			peer.PodSelector, peer.NamespaceSelector = edgeSelector(g), &metav1.LabelSelector{}
		}
		*rule.peers = append(*rule.peers, peer)
	default:
		if rule := edgeRule(g, np); rule != nil {
			*rule.ports = append(*rule.ports, edgePort(g))
		}
	}
}

type ruleRef struct {
	peers *[]networkingv1.NetworkPolicyPeer
	ports *[]networkingv1.NetworkPolicyPort
}

// edgeRule returns a random existing rule of np, adding one if it has none.
func edgeRule(g gen, np *networkingv1.NetworkPolicy) *ruleRef {
	if g.chance(0.5) {
		if len(np.Spec.Ingress) == 0 {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{})
		}
		r := &np.Spec.Ingress[g.r.IntN(len(np.Spec.Ingress))]
		return &ruleRef{&r.From, &r.Ports}
	}
	if len(np.Spec.Egress) == 0 {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{})
	}
	r := &np.Spec.Egress[g.r.IntN(len(np.Spec.Egress))]
	return &ruleRef{&r.To, &r.Ports}
}

func edgeSelector(g gen) *metav1.LabelSelector {
	if g.chance(0.5) {
		return &metav1.LabelSelector{MatchLabels: edgeLabels[g.r.IntN(len(edgeLabels))]}
	}
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{edgeReqs[g.r.IntN(len(edgeReqs))]}}
}

func edgePort(g gen) networkingv1.NetworkPolicyPort {
	p := networkingv1.NetworkPolicyPort{}
	if g.chance(0.5) {
		proto := edgeProtos[g.r.IntN(len(edgeProtos))]
		p.Protocol = &proto
	}
	ints := []int32{0, 1, 80, 65535, 65536, -1}
	switch g.r.IntN(5) {
	case 0:
		v := intstr.FromInt32(ints[g.r.IntN(len(ints))])
		p.Port = &v
	case 1:
		v, end := intstr.FromInt32(ints[g.r.IntN(len(ints))]), ints[g.r.IntN(len(ints))]
		p.Port, p.EndPort = &v, &end
	case 2:
		end := int32(90)
		p.EndPort = &end
	case 3:
		v, end := intstr.FromString(g.pick("http", "")), int32(90)
		p.Port = &v
		if g.chance(0.5) {
			p.EndPort = &end
		}
	}
	return p
}

// validateCluster is a cluster in which every policy of namespace "ns" is
// compiled: the namespace has a unique VNID and a local pod.
func validateCluster(policies []*networkingv1.NetworkPolicy) Input {
	return Input{
		Namespaces: []Namespace{{Name: "ns", VNID: 10}, {Name: "other", VNID: 11, Labels: map[string]string{"team": "a"}}},
		Pods: []Pod{
			{Namespace: "ns", Name: "local", IP: netip.MustParseAddr("10.128.0.2"), Local: true, Labels: map[string]string{"app": "web"}},
			{Namespace: "other", Name: "remote", IP: netip.MustParseAddr("10.128.2.2"), Ports: []ContainerPort{{Name: "http", Port: 80}}},
		},
		Policies: policies,
	}
}

// TestValidateAgreesWithCompiler: for random policies, most with an edge
// case planted, Validate rejects exactly the policies Compiler.Errors()
// reports, with the same error for the first rejected direction, and the
// field walk locates every rejection.
func TestValidateAgreesWithCompiler(t *testing.T) {
	rejected, accepted := 0, 0
	for seed := range 300 {
		g := gen{rand.New(rand.NewPCG(uint64(seed), 17))}
		var policies []*networkingv1.NetworkPolicy
		for i := range 1 + g.r.IntN(8) {
			np := g.policy(fmt.Sprintf("np%d", i), "ns")
			for range g.r.IntN(3) {
				corrupt(g, np)
			}
			policies = append(policies, np)
		}
		reported := map[string]error{}
		for _, e := range NewCompiler(validateCluster(policies)).Errors() {
			reported[e.Name] = e.Err
		}
		for _, np := range policies {
			err := Validate(np)
			var verr *ValidationError
			if err != nil && !errors.As(err, &verr) {
				t.Fatalf("seed %d %s: Validate returned %T, want *ValidationError", seed, np.Name, err)
			}
			want, isReported := reported[np.Name]
			switch {
			case isReported != (err != nil):
				t.Fatalf("seed %d %s: compiler error %v, Validate %v\npolicy: %+v", seed, np.Name, want, err, np.Spec)
			case err != nil && verr.Fields[0].Err.Error() != want.Error():
				t.Fatalf("seed %d %s: compiler says %q, Validate's first direction %q", seed, np.Name, want, verr.Fields[0].Err)
			case err != nil:
				for _, f := range verr.Fields {
					if f.Field == "spec" { // the walk did not find what compilePolicy rejected
						t.Fatalf("seed %d %s: no field located for %s error %v\npolicy: %+v", seed, np.Name, f.Direction, f.Err, np.Spec)
					}
				}
				rejected++
			default:
				accepted++
			}
		}
	}
	t.Logf("%d policies rejected, %d accepted, all as the compiler decided", rejected, accepted)
	if rejected < 100 || accepted < 100 {
		t.Fatalf("generator too one-sided: %d rejected, %d accepted", rejected, accepted)
	}
}

func TestValidateFieldPaths(t *testing.T) {
	bad := func(s string) *corev1.Protocol { p := corev1.Protocol(s); return &p }
	cases := []struct {
		name       string
		np         *networkingv1.NetworkPolicy
		want       []string // "direction field", in order
		errPattern string
	}{
		{"valid", policy("ns", "p", ingressTypes, ingressRule(ports(port(tcp, 80)), peerBlock("10.0.0.0/8", "10.1.0.0/16"))), nil, ""},
		{"cidr", policy("ns", "p", ingressTypes, ingressRule(nil, peerPods("web"), peerBlock("10.010.0.0/16"))),
			[]string{"ingress spec.ingress[0].from[1].ipBlock.cidr"}, "ipBlock cidr"},
		{"except", policy("ns", "p", egressTypes, egressRule(nil, peerBlock("10.0.0.0/8", "010.1.0.0/16"))),
			[]string{"egress spec.egress[0].to[0].ipBlock.except"}, "ipBlock except"},
		{"protocol", policy("ns", "p", ingressTypes, ingressRule(nil), ingressRule([]networkingv1.NetworkPolicyPort{{Protocol: bad("ICMP")}})),
			[]string{"ingress spec.ingress[1].ports[0]"}, "unsupported protocol"},
		{"namespaceSelector", policy("ns", "p", egressTypes, egressRule(nil, networkingv1.NetworkPolicyPeer{
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}})),
			[]string{"egress spec.egress[0].to[0].namespaceSelector"}, "invalid selector"},
		{"empty peer", policy("ns", "p", ingressTypes, ingressRule(nil, networkingv1.NetworkPolicyPeer{})),
			[]string{"ingress spec.ingress[0].from[0]"}, "neither ipBlock"},
		{"podSelector fails both directions", func() *networkingv1.NetworkPolicy {
			np := policy("ns", "p", []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress})
			np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"bad key!": "x"}}
			return np
		}(), []string{"ingress spec.podSelector", "egress spec.podSelector"}, "invalid selector"},
		{"egress rules of an ingress-only policy are not compiled", func() *networkingv1.NetworkPolicy {
			np := policy("ns", "p", ingressTypes)
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{}}}}
			return np
		}(), nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.np)
			var got []string
			var verr *ValidationError
			if errors.As(err, &verr) {
				for _, f := range verr.Fields {
					got = append(got, f.Direction+" "+f.Field)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("Validate fields %q, want %q (err %v)", got, tc.want, err)
			}
			if err != nil && (!strings.Contains(err.Error(), tc.errPattern) || !strings.Contains(err.Error(), "networkpolicy ns/p: ")) {
				t.Errorf("error %q lacks %q", err, tc.errPattern)
			}
		})
	}
}
