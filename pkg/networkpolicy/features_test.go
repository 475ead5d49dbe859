package networkpolicy

import (
	"errors"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
)

// The feature fixture: prod (VNID 10), db (11), dev (12), default (0).
func featureCluster() Input {
	pod := func(ns, name, ip, app string, local bool, ports ...ContainerPort) Pod {
		return Pod{Namespace: ns, Name: name, IP: netip.MustParseAddr(ip), Labels: map[string]string{"app": app}, Local: local, Ports: ports}
	}
	return Input{
		Namespaces: []Namespace{
			{Name: "prod", VNID: 10, Labels: map[string]string{"team": "web", "env": "prod"}},
			{Name: "db", VNID: 11, Labels: map[string]string{"team": "db", "env": "prod"}},
			{Name: "dev", VNID: 12, Labels: map[string]string{"env": "dev"}},
			{Name: "default", VNID: 0, Labels: map[string]string{"env": "prod"}},
		},
		Pods: []Pod{
			pod("prod", "web1", "10.128.0.10", "web", true, ContainerPort{Name: "http", Port: 8080}),
			pod("prod", "web2", "10.128.0.11", "web", true, ContainerPort{Name: "http", Port: 8081}),
			pod("prod", "admin", "10.128.0.12", "admin", true),
			pod("db", "pg", "10.128.0.20", "pg", true, ContainerPort{Name: "pg", Port: 5432}),
			pod("db", "pg-remote", "10.128.1.21", "pg", false, ContainerPort{Name: "pg", Port: 5432}),
			pod("dev", "tool", "10.128.1.30", "tool", false),
			pod("default", "router", "10.128.0.40", "router", true),
			{Namespace: "prod", Name: "hostnet", IP: netip.MustParseAddr("192.168.0.2"), HostNetwork: true, Labels: map[string]string{"app": "admin"}},
		},
	}
}

var (
	ingressTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressTypes  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	tcp, udp     = corev1.ProtocolTCP, corev1.ProtocolUDP
	sctp         = corev1.ProtocolSCTP
)

type ruleSpec struct {
	peers []networkingv1.NetworkPolicyPeer
	ports []networkingv1.NetworkPolicyPort
}

func policy(ns, name string, types []networkingv1.PolicyType, rules ...ruleSpec) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	np.Spec.PolicyTypes = types
	for _, r := range rules {
		if types[0] == networkingv1.PolicyTypeIngress {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: r.peers, Ports: r.ports})
		} else {
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: r.peers, Ports: r.ports})
		}
	}
	return np
}

func selecting(np *networkingv1.NetworkPolicy, app string) *networkingv1.NetworkPolicy {
	np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	return np
}

func ingressRule(ports []networkingv1.NetworkPolicyPort, peers ...networkingv1.NetworkPolicyPeer) ruleSpec {
	return ruleSpec{peers: peers, ports: ports}
}

var egressRule = ingressRule

func peerPods(app string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}
}

func peerNS(l map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: l}}
}

func peerBlock(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func port(proto corev1.Protocol, p any, end ...int32) networkingv1.NetworkPolicyPort {
	np := networkingv1.NetworkPolicyPort{Protocol: &proto}
	switch p := p.(type) {
	case int:
		v := intstr.FromInt32(int32(p))
		np.Port = &v
	case string:
		v := intstr.FromString(p)
		np.Port = &v
	}
	if len(end) > 0 {
		np.EndPort = &end[0]
	}
	return np
}

func ports(p ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort { return p }

// fact is one traced policy fact: from (pod name or IP) to (pod name or
// IP), checked in the tables of the local ends.
type fact struct {
	from, to string
	proto    ovs.Proto
	port     uint16
	allow    bool
}

func TestFeatures(t *testing.T) {
	cases := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		wantErr  bool
		facts    []fact
	}{
		{name: "no_policy", facts: []fact{
			{"tool", "web1", ovs.ProtoTCP, 80, true}, {"web1", "8.8.8.8", ovs.ProtoUDP, 53, true}}},
		{name: "deny_all_ingress", policies: []*networkingv1.NetworkPolicy{policy("prod", "deny", ingressTypes)},
			facts: []fact{{"admin", "web1", ovs.ProtoTCP, 80, false}, {"web1", "pg", ovs.ProtoTCP, 5432, true},
				{"10.128.0.1", "web1", ovs.ProtoTCP, 8080, true}, // the node gateway always passes
				{"pg", "admin", ovs.ProtoTCP, 1, false}}},
		{name: "pod_selector", policies: []*networkingv1.NetworkPolicy{
			selecting(policy("prod", "web", ingressTypes, ingressRule(ports(port(tcp, 8080)), peerPods("admin"))), "web")},
			facts: []fact{{"admin", "web1", ovs.ProtoTCP, 8080, true}, {"admin", "web1", ovs.ProtoTCP, 80, false},
				{"tool", "web1", ovs.ProtoTCP, 8080, false}, {"192.168.0.2", "web2", ovs.ProtoTCP, 8080, false},
				{"web1", "admin", ovs.ProtoUDP, 9, true}}},
		{name: "namespace_selector", policies: []*networkingv1.NetworkPolicy{
			selecting(policy("prod", "web", ingressTypes, ingressRule(ports(port(tcp, 8080)), peerNS(map[string]string{"env": "prod"}))), "web")},
			facts: []fact{{"pg-remote", "web1", ovs.ProtoTCP, 8080, true}, {"admin", "web2", ovs.ProtoTCP, 8080, true},
				{"router", "web1", ovs.ProtoTCP, 8080, true}, {"192.168.9.9", "web1", ovs.ProtoTCP, 8080, false},
				{"tool", "web1", ovs.ProtoTCP, 8080, false}}},
		{name: "namespace_and_pod_selector", policies: []*networkingv1.NetworkPolicy{
			policy("prod", "from-pg", ingressTypes, ingressRule(nil, networkingv1.NetworkPolicyPeer{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "db"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pg"}}}))},
			facts: []fact{{"pg", "web1", ovs.ProtoTCP, 1, true}, {"pg-remote", "admin", ovs.ProtoSCTP, 2, true},
				{"tool", "web1", ovs.ProtoTCP, 1, false}, {"admin", "web1", ovs.ProtoTCP, 1, false}}},
		{name: "ipblock_except", policies: []*networkingv1.NetworkPolicy{
			policy("prod", "lan", ingressTypes, ingressRule(nil, peerBlock("192.168.0.0/16", "192.168.5.0/24", "192.168.6.128/25")))},
			facts: []fact{{"192.168.6.1", "web1", ovs.ProtoTCP, 1, true}, {"192.168.5.5", "web1", ovs.ProtoTCP, 1, false},
				{"192.168.6.200", "web1", ovs.ProtoTCP, 1, false}, {"10.1.1.1", "web1", ovs.ProtoTCP, 1, false}}},
		{name: "protocols_and_ranges", policies: []*networkingv1.NetworkPolicy{
			policy("prod", "ports", ingressTypes, ingressRule(ports(port(udp, 53), port(sctp, 7777), port(tcp, 30000, 30010))))},
			facts: []fact{{"tool", "web1", ovs.ProtoUDP, 53, true}, {"tool", "web1", ovs.ProtoTCP, 53, false},
				{"tool", "web1", ovs.ProtoSCTP, 7777, true}, {"tool", "web1", ovs.ProtoTCP, 30000, true},
				{"tool", "web1", ovs.ProtoTCP, 30010, true}, {"tool", "web1", ovs.ProtoTCP, 30011, false},
				{"tool", "web1", ovs.ProtoTCP, 29999, false}}},
		{name: "named_ports", policies: []*networkingv1.NetworkPolicy{
			policy("prod", "http", ingressTypes, ingressRule(ports(port(tcp, "http"))))},
			facts: []fact{{"tool", "web1", ovs.ProtoTCP, 8080, true}, {"tool", "web1", ovs.ProtoTCP, 8081, false},
				{"tool", "web2", ovs.ProtoTCP, 8081, true}, {"tool", "admin", ovs.ProtoTCP, 8080, false}}},
		{name: "egress", policies: []*networkingv1.NetworkPolicy{
			selecting(policy("prod", "web-out", egressTypes,
				egressRule(ports(port(tcp, "pg")), peerNS(map[string]string{"team": "db"})),
				egressRule(ports(port(udp, 53)))), "web")},
			facts: []fact{{"web1", "pg", ovs.ProtoTCP, 5432, true}, {"web1", "pg-remote", ovs.ProtoTCP, 5432, true},
				{"web1", "pg", ovs.ProtoTCP, 80, false}, {"web2", "8.8.8.8", ovs.ProtoUDP, 53, true},
				{"web2", "8.8.8.8", ovs.ProtoTCP, 443, false}, {"admin", "8.8.8.8", ovs.ProtoTCP, 443, true},
				{"web1", "172.30.0.10", ovs.ProtoTCP, 443, true}}}, // services pass; checked after DNAT
		{name: "union_conjunction", policies: []*networkingv1.NetworkPolicy{
			selecting(policy("prod", "a", ingressTypes, ingressRule(ports(port(tcp, 80), port(tcp, 443)),
				peerNS(map[string]string{"team": "db"}), peerNS(map[string]string{"env": "dev"}), peerPods("admin"))), "web"),
			selecting(policy("prod", "b", ingressTypes, ingressRule(ports(port(tcp, 443), port(udp, 443)),
				peerPods("admin"), peerBlock("192.168.0.0/24"), peerBlock("192.168.1.0/24"))), "web")},
			facts: []fact{{"pg", "web1", ovs.ProtoTCP, 80, true}, {"tool", "web2", ovs.ProtoTCP, 443, true},
				{"admin", "web1", ovs.ProtoUDP, 443, true}, {"192.168.1.9", "web2", ovs.ProtoUDP, 443, true},
				{"192.168.1.9", "web2", ovs.ProtoTCP, 80, false}, {"tool", "web2", ovs.ProtoUDP, 443, false}}},
		{name: "bad_policy", wantErr: true, policies: []*networkingv1.NetworkPolicy{
			selecting(policy("prod", "broken", ingressTypes, ingressRule(nil, peerBlock("10.0.0.0/33"))), "web"),
			selecting(policy("prod", "fine", ingressTypes, ingressRule(nil, peerPods("admin"))), "admin")},
			facts: []fact{{"tool", "web1", ovs.ProtoTCP, 1, false}, {"admin", "admin", ovs.ProtoTCP, 1, true},
				{"tool", "admin", ovs.ProtoTCP, 1, false}, {"web1", "admin", ovs.ProtoTCP, 1, false}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := featureCluster()
			in.Policies = tc.policies
			owners, errs := Compile(in)
			if (len(errs) > 0) != tc.wantErr {
				t.Fatalf("errors = %v, want error: %v", errs, tc.wantErr)
			}
			var pe *PolicyError
			if tc.wantErr && (!errors.As(errs[0], &pe) || pe.Name != "broken") {
				t.Fatalf("error %v should name policy broken", errs[0])
			}
			compiled := Flatten(owners)
			ovstest.AssertGolden(t, "feature_"+tc.name, compiled)
			flows := harness(compiled, false)
			if err := ovs.ValidatePipeline(flows); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.facts {
				checkFact(t, in, flows, f)
			}
		})
	}
}

func checkFact(t *testing.T, in Input, flows []ovs.Flow, f fact) {
	t.Helper()
	resolve := func(s string) endpoint {
		for i := range in.Pods {
			if in.Pods[i].Name == s {
				return endpoint{pod: &in.Pods[i], ip: in.Pods[i].IP}
			}
		}
		return endpoint{ip: netip.MustParseAddr(s)}
	}
	src, dst := resolve(f.from), resolve(f.to)
	p := probe{srcVNID: vnidOf(in, src), dstVNID: vnidOf(in, dst), src: src.ip, dst: dst.ip, proto: f.proto, port: f.port}
	got := true
	if src.pod != nil && src.pod.Local {
		got = egressAllowed(t, flows, p)
	}
	if dst.pod != nil && dst.pod.Local {
		got = got && ingressAllowed(t, flows, p)
	}
	if got != f.allow {
		t.Errorf("%s → %s %v/%d: allowed = %v, want %v", f.from, f.to, f.proto, f.port, got, f.allow)
	}
}
