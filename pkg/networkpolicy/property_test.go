package networkpolicy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
)

// gen builds random clusters small enough that random probes hit the
// interesting cases (selected, not selected, named ports, ranges, excepts).
type gen struct{ r *rand.Rand }

func (g gen) pick(s ...string) string { return s[g.r.IntN(len(s))] }
func (g gen) chance(p float64) bool   { return g.r.Float64() < p }

func (g gen) labels(keys map[string][]string) map[string]string {
	out := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(keys)) { // sorted: reproducible per seed
		if vals := keys[k]; g.chance(0.7) {
			out[k] = vals[g.r.IntN(len(vals))]
		}
	}
	return out
}

var (
	nsLabelKeys  = map[string][]string{"team": {"a", "b"}, "env": {"prod", "dev"}}
	podLabelKeys = map[string][]string{"app": {"web", "db", "api"}, "role": {"x", "y"}}
	portNames    = []ContainerPort{
		{Name: "http", Port: 80}, {Name: "http", Port: 8080}, {Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
		{Name: "metrics", Port: 9090}, {Name: "metrics", Port: 9091}, {Name: "sctp", Protocol: corev1.ProtocolSCTP, Port: 7777},
	}
	probePorts = []uint16{80, 53, 8080, 9090, 9091, 8050, 55, 7777, 1234}
)

func (g gen) cluster() Input {
	var in Input
	vnids := g.r.Perm(12)
	for i := range 3 + g.r.IntN(4) {
		v := uint32(vnids[i]) + 9 // 9 stands for VNID 0 below
		if v == 9 {
			v = 0
		}
		in.Namespaces = append(in.Namespaces, Namespace{Name: fmt.Sprintf("ns%d", i), Labels: g.labels(nsLabelKeys), VNID: v})
	}
	ips := g.r.Perm(200)
	for i := range 8 + g.r.IntN(16) {
		p := Pod{Namespace: in.Namespaces[g.r.IntN(len(in.Namespaces))].Name, Name: fmt.Sprintf("pod%d", i),
			Labels: g.labels(podLabelKeys), Local: g.chance(0.5),
			IP: netip.AddrFrom4([4]byte{10, 128, 0, byte(ips[i] + 2)})}
		switch {
		case g.chance(0.1):
			p.HostNetwork, p.IP = true, netip.AddrFrom4([4]byte{192, 168, 1, byte(10 + i)})
		case g.chance(0.08):
			p.IP = netip.Addr{}
		}
		seen := map[string]bool{}
		for _, cp := range portNames {
			if !seen[cp.Name] && g.chance(0.3) {
				seen[cp.Name] = true // container port names are unique in a pod
				p.Ports = append(p.Ports, cp)
			}
		}
		in.Pods = append(in.Pods, p)
	}
	for i := range 2 + g.r.IntN(9) {
		in.Policies = append(in.Policies, g.policy(fmt.Sprintf("np%d", i), in.Namespaces[g.r.IntN(len(in.Namespaces))].Name))
	}
	return in
}

func (g gen) selector(keys map[string][]string) *metav1.LabelSelector {
	switch g.r.IntN(6) {
	case 0, 1:
		return &metav1.LabelSelector{}
	case 2:
		return &metav1.LabelSelector{MatchLabels: g.labels(keys)}
	case 3:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: g.pick("app", "team"), Operator: metav1.LabelSelectorOpIn, Values: []string{g.pick("web", "a"), g.pick("db", "prod")}}}}
	case 4:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: g.pick("role", "env", "app"), Operator: metav1.LabelSelectorOperator(g.pick("Exists", "DoesNotExist"))}}}
	}
	if g.chance(0.3) {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Bogus"}}}
	}
	return &metav1.LabelSelector{MatchLabels: map[string]string{g.pick("app", "team"): g.pick("web", "db", "a", "b")}}
}

func (g gen) policy(name, ns string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	np.Spec.PodSelector = *g.selector(podLabelKeys)
	switch g.r.IntN(4) {
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 3:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	for range g.r.IntN(3) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: g.peers(), Ports: g.ports()})
	}
	for range g.r.IntN(3) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: g.peers(), Ports: g.ports()})
	}
	return np
}

func (g gen) peers() []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for range g.r.IntN(3) {
		var p networkingv1.NetworkPolicyPeer
		switch g.r.IntN(5) {
		case 0:
			p.IPBlock = g.ipBlock()
		case 1:
			p.NamespaceSelector = g.selector(nsLabelKeys)
		case 2:
			p.PodSelector = g.selector(podLabelKeys)
		case 3:
			p.NamespaceSelector, p.PodSelector = g.selector(nsLabelKeys), g.selector(podLabelKeys)
		default:
			p.NamespaceSelector = &metav1.LabelSelector{MatchLabels: g.labels(nsLabelKeys)}
		}
		out = append(out, p)
	}
	return out
}

func (g gen) ipBlock() *networkingv1.IPBlock {
	if g.chance(0.04) {
		return &networkingv1.IPBlock{CIDR: "10.128.0.0/33"}
	}
	base := [][4]byte{{10, 128, 0, 0}, {192, 168, 1, 0}, {0, 0, 0, 0}}[g.r.IntN(3)]
	bits := 24 + g.r.IntN(6)
	if base[0] == 0 {
		bits = 0
	}
	cidr := netip.PrefixFrom(netip.AddrFrom4(base), bits)
	if bits > 0 {
		cidr = netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], base[2], byte(g.r.IntN(256))}), bits).Masked()
	}
	b := &networkingv1.IPBlock{CIDR: cidr.String()}
	for range g.r.IntN(3) {
		a := cidr.Addr().As4()
		if bits == 0 {
			a = [4]byte{10, 128, 0, 0}
		}
		a[3] = byte(g.r.IntN(256))
		ex := netip.PrefixFrom(netip.AddrFrom4(a), max(bits+1, 25)+g.r.IntN(6)).Masked()
		b.Except = append(b.Except, ex.String())
	}
	return b
}

func (g gen) ports() []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	protos := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
	for range g.r.IntN(3) {
		var p networkingv1.NetworkPolicyPort
		if g.chance(0.7) {
			proto := protos[g.r.IntN(3)]
			p.Protocol = &proto
		}
		switch g.r.IntN(6) {
		case 0:
		case 1, 2:
			port := intstr.FromInt32(int32(probePorts[g.r.IntN(len(probePorts))]))
			p.Port = &port
		case 3:
			port, end := intstr.FromInt32(int32(g.pick("8000", "50", "9000")[0]-'0')*1000+int32(g.r.IntN(60))), int32(9091)
			if port.IntVal < 1000 {
				port, end = intstr.FromInt32(50), 60
			}
			p.Port, p.EndPort = &port, &end
		default:
			port := intstr.FromString(g.pick("http", "dns", "metrics", "sctp", "nope"))
			p.Port = &port
		}
		if g.chance(0.03) {
			bad := corev1.Protocol("ICMP")
			p.Protocol = &bad
		}
		out = append(out, p)
	}
	return out
}

// endpoints returns every possible connection end: selectable pods, the
// gateway, host-network pods' and other bare addresses.
func endpoints(in Input) []endpoint {
	out := []endpoint{{ip: gateway}, {ip: netip.MustParseAddr("192.168.1.77")}, {ip: netip.MustParseAddr("10.128.0.250")}, {ip: netip.MustParseAddr("8.8.8.8")}}
	for i := range in.Pods {
		p := &in.Pods[i]
		switch {
		case selectable(p):
			out = append(out, endpoint{pod: p, ip: p.IP})
		case p.IP.IsValid():
			out = append(out, endpoint{ip: p.IP})
		}
	}
	return out
}

func vnidOf(in Input, e endpoint) uint32 {
	if e.pod == nil {
		return 0 // the host and the world enter through tun0 with reg0 = 0
	}
	return refNamespace(in, e.pod.Namespace).VNID
}

var protoMap = map[corev1.Protocol]ovs.Proto{corev1.ProtocolTCP: ovs.ProtoTCP, corev1.ProtocolUDP: ovs.ProtoUDP, corev1.ProtocolSCTP: ovs.ProtoSCTP}

// TestCompiledFlowsAgreeWithReference compiles random clusters and checks,
// for every (source, destination, protocol, port) through every table that
// sees it, that the traced verdict equals the reference evaluator's.
func TestCompiledFlowsAgreeWithReference(t *testing.T) {
	clusters, checked := 300, 0
	verdicts := map[bool]int{}
	conjLevels := map[uint16]int{}
	if testing.Short() {
		clusters = 60
	}
	for seed := range clusters {
		g := gen{rand.New(rand.NewPCG(uint64(seed), 7))}
		in := g.cluster()
		c := NewCompiler(Input{})
		c.alwaysConj = seed%3 != 0
		c.Update(in, namesOf(in)...)
		owners := c.Owners()
		flows := harness(Flatten(owners), seed%2 == 1)
		for _, f := range flows {
			if len(f.Match) > 0 && f.Match[len(f.Match)-1].Key() == "conj_id" {
				conjLevels[f.Priority]++
			}
		}
		if err := ovs.ValidatePipeline(flows); err != nil {
			t.Fatalf("seed %d: invalid pipeline: %v\n%s", seed, err, ovstest.RenderGolden(Flatten(owners)))
		}
		eps := endpoints(in)
		for range 150 {
			src, dst := eps[g.r.IntN(len(eps))], eps[g.r.IntN(len(eps))]
			proto := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[g.r.IntN(3)]
			pr := probe{srcVNID: vnidOf(in, src), dstVNID: vnidOf(in, dst), src: src.ip, dst: dst.ip, proto: protoMap[proto], port: probePorts[g.r.IntN(len(probePorts))]}
			if src.pod != nil && src.pod.Local && src.pod != dst.pod {
				want := refAllowed(in, egress, src, dst, proto, pr.port)
				if got := egressAllowed(t, flows, pr); got != want {
					t.Fatalf("seed %d: egress %s/%s → %s %v/%d: flows say %v, reference %v\n%s", seed, src.pod.Namespace, src.pod.Name, dst.ip, proto, pr.port, got, want, ovstest.RenderGolden(Flatten(owners)))
				}
				checked++
				verdicts[want]++
			}
			if dst.pod != nil && dst.pod.Local && src.pod != dst.pod {
				want := src.ip == gateway || refAllowed(in, ingress, src, dst, proto, pr.port)
				if got := ingressAllowed(t, flows, pr); got != want {
					t.Fatalf("seed %d: ingress %s → %s/%s %v/%d: flows say %v, reference %v\n%s", seed, src.ip, dst.pod.Namespace, dst.pod.Name, proto, pr.port, got, want, ovstest.RenderGolden(Flatten(owners)))
				}
				verdicts[want]++
				pr.reply = true
				if !ingressAllowed(t, flows, pr) {
					t.Fatalf("seed %d: reply %s → %s dropped", seed, src.ip, dst.ip)
				}
				checked++
			}
		}
	}
	t.Logf("%d clusters, %d verdicts compared (%d allow, %d deny); conjunctions per priority: %v", clusters, checked, verdicts[true], verdicts[false], conjLevels)
	if verdicts[true] < checked/10 || verdicts[false] < checked/10 || len(conjLevels) < 2 {
		t.Errorf("the generator no longer exercises both verdicts and several conjunction levels")
	}
}

func namesOf(in Input) []string {
	var out []string
	for _, ns := range in.Namespaces {
		out = append(out, ns.Name)
	}
	return out
}
