package e2e

// The scenario table of the NetworkPolicy truth-table suite. Each scenario
// is a whole cluster state (policies, pod labels, namespace labels) relative
// to the base (pod=<name>, ns=<name>, no policies); scenarios run in order on
// one lab, so consecutive ones are also changes applied while traffic is
// probed. The expectations are not written here: the reference model
// (netpol_model_test.go) computes them.

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
)

var (
	tcp  = corev1.ProtocolTCP
	udp  = corev1.ProtocolUDP
	sctp = corev1.ProtocolSCTP

	allProtos = []corev1.Protocol{tcp, udp, sctp}
)

type npScenario struct {
	Name string
	// Policies of the state (nil: none).
	Policies func(c *npCluster) []*networkingv1.NetworkPolicy
	// PodLabels replaces the labels of the named pods ("x/a"); NSLabels the
	// test's own labels of the named namespaces (default ns=<name>).
	PodLabels map[string]map[string]string
	NSLabels  map[string]map[string]string
	// Protos and Ports probed (default TCP; 80 and 81).
	Protos []corev1.Protocol
	Ports  []uint16
	// Change marks a scenario that differs from the previous one by exactly
	// one object: the cells the change cannot affect are probed throughout
	// the transition and must never flip.
	Change bool
}

// state builds the scenario's cluster state from the base.
func (sc npScenario) state(c *npCluster) *npState {
	s := c.base.clone()
	for k, l := range sc.PodLabels {
		s.pod(podKeyOf(k)).Labels = l
	}
	for ns, l := range sc.NSLabels {
		s.NSLabels[ns] = c.nsLabels(ns, l)
	}
	if sc.Policies != nil {
		s.Policies = sc.Policies(c)
	}
	return s
}

func (sc npScenario) protos() []corev1.Protocol {
	if len(sc.Protos) == 0 {
		return []corev1.Protocol{tcp}
	}
	return sc.Protos
}

func (sc npScenario) ports() []uint16 {
	if len(sc.Ports) == 0 {
		return []uint16{80, 81}
	}
	return sc.Ports
}

// --- policy builders --------------------------------------------------------

type polOpt func(*networkingv1.NetworkPolicy)

func pol(ns, name string, target metav1.LabelSelector, opts ...polOpt) *networkingv1.NetworkPolicy {
	p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: target}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func policies(ps ...*networkingv1.NetworkPolicy) func(*npCluster) []*networkingv1.NetworkPolicy {
	return func(*npCluster) []*networkingv1.NetworkPolicy { return ps }
}

func typesOf(ts ...networkingv1.PolicyType) polOpt {
	return func(p *networkingv1.NetworkPolicy) { p.Spec.PolicyTypes = ts }
}

var (
	ingressT = networkingv1.PolicyTypeIngress
	egressT  = networkingv1.PolicyTypeEgress
)

func ingress(ports []networkingv1.NetworkPolicyPort, from ...networkingv1.NetworkPolicyPeer) polOpt {
	return func(p *networkingv1.NetworkPolicy) {
		p.Spec.Ingress = append(p.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{Ports: ports, From: from})
	}
}

func egress(ports []networkingv1.NetworkPolicyPort, to ...networkingv1.NetworkPolicyPeer) polOpt {
	return func(p *networkingv1.NetworkPolicy) {
		p.Spec.Egress = append(p.Spec.Egress, networkingv1.NetworkPolicyEgressRule{Ports: ports, To: to})
	}
}

// sel is a matchLabels selector from key, value pairs ({} with none).
func sel(kv ...string) metav1.LabelSelector {
	s := metav1.LabelSelector{}
	if len(kv) > 0 {
		s.MatchLabels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			s.MatchLabels[kv[i]] = kv[i+1]
		}
	}
	return s
}

func expr(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelector {
	return metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func selp(s metav1.LabelSelector) *metav1.LabelSelector { return &s }

func podPeer(s metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: selp(s)}
}

func nsPeer(s metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: selp(s)}
}

func nsPodPeer(ns, pod metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: selp(ns), PodSelector: selp(pod)}
}

func cidrPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func ports(ps ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort { return ps }

func port(proto corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(n)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

// tcpDefault is a port without a protocol (TCP by default).
func tcpDefault(n int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(n)
	return networkingv1.NetworkPolicyPort{Port: &v}
}

func named(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

func portRange(proto corev1.Protocol, lo, hi int32) networkingv1.NetworkPolicyPort {
	p := port(proto, lo)
	p.EndPort = &hi
	return p
}

func anyPort(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto}
}

func (c *npCluster) ip(k string) netip.Addr { return c.ips[podKeyOf(k)] }

func (c *npCluster) host(k string) string { return netip.PrefixFrom(c.ip(k), 32).String() }

// subnetOf is the node subnet (a /23) holding pod k's address.
func (c *npCluster) subnetOf(k string) string {
	p, _ := c.ip(k).Prefix(32 - lab.HostSubnetLength)
	return p.String()
}

func denyIngress(ns string) *networkingv1.NetworkPolicy {
	return pol(ns, "deny-ingress", sel(), typesOf(ingressT))
}

func denyEgress(ns string) *networkingv1.NetworkPolicy {
	return pol(ns, "deny-egress", sel(), typesOf(egressT))
}

var (
	podA = sel("pod", "a")
	podB = sel("pod", "b")
)

// npScenarios is the table. Comments name the upstream e2e case a scenario
// re-creates where there is one.
func npScenarios() []npScenario {
	fromY := pol("x", "allow-from-y", podA, ingress(nil, nsPeer(sel("ns", "y"))))
	fromZ := pol("x", "allow-from-y", podA, ingress(nil, nsPeer(sel("ns", "z")))) // same object, new spec
	fromBRole := pol("x", "allow-from-client", sel(), ingress(nil, nsPodPeer(sel(), sel("role", "client"))))
	return []npScenario{
		{Name: "no policies: everything connects, closed port refused", Protos: allProtos, Ports: []uint16{80, 81, 82}},
		{Name: "default deny ingress in x", Protos: allProtos, Policies: policies(denyIngress("x"))},
		{Name: "default deny egress in x", Protos: allProtos, Policies: policies(denyEgress("x"))},
		{Name: "default deny ingress and egress in x (one policy)",
			Policies: policies(pol("x", "deny-all", sel(), typesOf(ingressT, egressT)))},
		{Name: "default deny ingress in every namespace",
			Policies: policies(denyIngress("x"), denyIngress("y"), denyIngress("z"))},
		{Name: "deny ingress in x plus allow all ingress (union)",
			Policies: policies(denyIngress("x"), pol("x", "allow-all", sel(), ingress(nil)))},
		{Name: "deny egress in x plus allow all egress (union)",
			Policies: policies(denyEgress("x"), pol("x", "allow-all-egress", sel(), typesOf(egressT), egress(nil)))},
		// should enforce policy to allow traffic only from a pod in the same namespace based on PodSelector
		{Name: "podSelector: x/a from x/b only",
			Policies: policies(pol("x", "a-from-b", podA, ingress(nil, podPeer(podB))))},
		{Name: "podSelector matchExpressions In: x/a from pod in (b, c)",
			Policies: policies(pol("x", "a-from-bc", podA, ingress(nil, podPeer(expr("pod", metav1.LabelSelectorOpIn, "b", "c")))))},
		{Name: "podSelector NotIn and Exists",
			Policies: policies(pol("x", "not-b", podA, ingress(nil, podPeer(expr("pod", metav1.LabelSelectorOpNotIn, "b")))),
				pol("y", "exists", podB, ingress(nil, podPeer(expr("pod", metav1.LabelSelectorOpExists)))))},
		// should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector
		{Name: "namespaceSelector: x/a from namespace y", Policies: policies(fromY)},
		{Name: "namespaceSelector change in place: x/a from namespace z", Policies: policies(fromZ), Change: true},
		{Name: "namespaceSelector NotIn: x from every other namespace",
			Policies: policies(pol("x", "not-x", sel(), ingress(nil, nsPeer(expr("ns", metav1.LabelSelectorOpNotIn, "x")))))},
		{Name: "namespaceSelector {} with podSelector: x from every pod b",
			Policies: policies(pol("x", "all-b", sel(), ingress(nil, nsPodPeer(sel(), podB))))},
		// should enforce policy based on PodSelector and NamespaceSelector (both in one peer)
		{Name: "podSelector and namespaceSelector in one peer: x/a from y/b",
			Policies: policies(pol("x", "yb", podA, ingress(nil, nsPodPeer(sel("ns", "y"), podB))))},
		// should enforce policy based on PodSelector or NamespaceSelector (two peers)
		{Name: "two peers (or): x/a from namespace y or from x/b",
			Policies: policies(pol("x", "y-or-b", podA, ingress(nil, nsPeer(sel("ns", "y")), podPeer(podB))))},
		{Name: "two rules, one per protocol", Protos: []corev1.Protocol{tcp, udp},
			Policies: policies(pol("y", "two-rules", sel(), ingress(ports(port(tcp, 80)), nsPeer(sel("ns", "x"))),
				ingress(ports(port(udp, 81)), nsPeer(sel("ns", "z")))))},
		// should enforce policy to allow traffic only from pods ... on a specific port
		{Name: "numeric port: x ingress on TCP 80 from everyone",
			Policies: policies(pol("x", "port-80", sel(), ingress(ports(port(tcp, 80)))))},
		{Name: "numeric port without protocol (TCP default): x/a on 81 from namespace y", Protos: []corev1.Protocol{tcp, udp},
			Policies: policies(pol("x", "port-81", podA, ingress(ports(tcpDefault(81)), nsPeer(sel("ns", "y")))))},
		// should allow ingress access on one named port
		{Name: "named port serve-80-tcp into x", Protos: []corev1.Protocol{tcp, udp},
			Policies: policies(pol("x", "named-80", sel(), ingress(ports(named(tcp, "serve-80-tcp")))))},
		{Name: "named UDP port serve-81-udp into x from namespace z", Protos: []corev1.Protocol{tcp, udp},
			Policies: policies(pol("x", "named-81-udp", sel(), ingress(ports(named(udp, "serve-81-udp")), nsPeer(sel("ns", "z")))))},
		{Name: "named port with the wrong protocol matches nothing", Protos: []corev1.Protocol{tcp, udp},
			Policies: policies(pol("x", "named-mismatch", sel(), ingress(ports(named(udp, "serve-80-tcp")))))},
		{Name: "UDP only: x ingress on UDP 80", Protos: allProtos,
			Policies: policies(pol("x", "udp-80", sel(), ingress(ports(port(udp, 80)))))},
		{Name: "SCTP only: y ingress on SCTP 81", Protos: allProtos,
			Policies: policies(pol("y", "sctp-81", sel(), ingress(ports(port(sctp, 81)))))},
		{Name: "whole protocol (no port): z ingress any UDP", Protos: allProtos,
			Policies: policies(pol("z", "any-udp", sel(), ingress(ports(anyPort(udp)))))},
		// should enforce policy to allow ingress traffic from pods in all namespaces ... endPort
		{Name: "endPort 80-81 into x: both served ports, closed 82 refused", Ports: []uint16{80, 81, 82},
			Policies: policies(pol("x", "range-80-81", sel(), ingress(ports(portRange(tcp, 80, 81)))))},
		{Name: "endPort 81-90 into x from namespace z", Ports: []uint16{80, 81, 82},
			Policies: policies(pol("x", "range-81-90", sel(), ingress(ports(portRange(tcp, 81, 90)), nsPeer(sel("ns", "z")))))},
		{Name: "endPort range for UDP and SCTP into z", Protos: allProtos,
			Policies: policies(pol("z", "range-udp-sctp", sel(), ingress(ports(portRange(udp, 75, 80), portRange(sctp, 81, 100)))))},
		// should allow ingress access from a pod IP (ipBlock)
		{Name: "ipBlock: x/a from y/a's /32", Policies: func(c *npCluster) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{pol("x", "from-ya", podA, ingress(nil, cidrPeer(c.host("y/a"))))}
		}},
		// should enforce except clause while ingress access from a CIDR block
		{Name: "ipBlock with except: x from the cluster CIDR except y/a and z/b", Policies: func(c *npCluster) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{pol("x", "cidr-except", sel(), ingress(nil, cidrPeer(lab.ClusterCIDR, c.host("y/a"), c.host("z/b"))))}
		}},
		{Name: "ipBlock of a node subnet except one pod: ingress to y", Policies: func(c *npCluster) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{pol("y", "subnet-except", sel(), ingress(nil, cidrPeer(c.subnetOf("x/a"), c.host("x/a"))))}
		}},
		// should enforce except clause while egress access to server in CIDR block
		{Name: "egress ipBlock with except: x/a to the cluster CIDR except z's pods", Policies: func(c *npCluster) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{pol("x", "egress-cidr", podA, typesOf(egressT),
				egress(nil, cidrPeer(lab.ClusterCIDR, c.host("z/a"), c.host("z/b"), c.host("z/c"))))}
		}},
		// should enforce policy rule with policyTypes Egress only
		{Name: "policyTypes Egress only: x/a to namespace y, ingress untouched",
			Policies: policies(pol("x", "egress-to-y", podA, typesOf(egressT), egress(nil, nsPeer(sel("ns", "y")))))},
		{Name: "egress to a named port resolved on the destination", Protos: []corev1.Protocol{tcp, udp},
			Policies: policies(pol("y", "egress-named", sel(), typesOf(egressT), egress(ports(named(tcp, "serve-81-tcp")))))},
		{Name: "egress endPort range and SCTP", Protos: allProtos,
			Policies: policies(pol("z", "egress-range", sel(), typesOf(egressT), egress(ports(portRange(tcp, 79, 80), port(sctp, 81)))))},
		// should allow egress access on port 53 (deny all egress, then allow DNS)
		{Name: "deny all egress from x, then allow the DNS-like port 53", Protos: []corev1.Protocol{tcp, udp}, Ports: []uint16{53, 80},
			Policies: policies(denyEgress("x"), pol("x", "allow-dns", sel(), typesOf(egressT), egress(ports(port(udp, 53), port(tcp, 53)))))},
		// should enforce ingress policy allowing any port traffic to a server on a specific protocol / multiple egress policies
		{Name: "ingress and egress together: x/a from y, x/a to z", Protos: []corev1.Protocol{tcp, udp},
			Policies: policies(pol("x", "in-and-out", podA, typesOf(ingressT, egressT),
				ingress(nil, nsPeer(sel("ns", "y"))), egress(nil, nsPeer(sel("ns", "z")))))},
		// should enforce multiple, stacked policies with overlapping podSelectors
		{Name: "multiple policies (union): x/a from x/b, from namespace z on 81",
			Policies: policies(pol("x", "a-from-b", podA, ingress(nil, podPeer(podB))),
				pol("x", "a-from-z-81", podA, ingress(ports(port(tcp, 81)), nsPeer(sel("ns", "z")))))},
		{Name: "deny-all plus targeted allows in several namespaces", Protos: allProtos,
			Policies: policies(denyIngress("x"), denyEgress("y"), denyIngress("z"),
				pol("x", "from-y-80", sel(), ingress(ports(port(tcp, 80), port(udp, 80), port(sctp, 80)), nsPeer(sel("ns", "y")))),
				pol("y", "to-x", sel(), typesOf(egressT), egress(nil, nsPeer(sel("ns", "x")))),
				pol("z", "from-same-ns", sel(), ingress(nil, podPeer(sel()))))},
		{Name: "policy whose podSelector selects nothing has no effect",
			Policies: policies(pol("x", "selects-nothing", sel("pod", "nobody"), typesOf(ingressT, egressT)))},
		// should allow ingress access from updated pod / namespace (label changes)
		{Name: "allow from role=client in any namespace; no pod has it yet", Policies: policies(fromBRole)},
		{Name: "pod label added: z/c gets role=client", Policies: policies(fromBRole), Change: true,
			PodLabels: map[string]map[string]string{"z/c": {"pod": "c", "role": "client"}}},
		{Name: "pod label added: y/a gets role=client", Policies: policies(fromBRole), Change: true,
			PodLabels: map[string]map[string]string{"z/c": {"pod": "c", "role": "client"}, "y/a": {"pod": "a", "role": "client"}}},
		{Name: "pod label removed: z/c loses role=client", Policies: policies(fromBRole), Change: true,
			PodLabels: map[string]map[string]string{"y/a": {"pod": "a", "role": "client"}}},
		{Name: "policy by namespace label: x/a from ns=y", Policies: policies(fromY)},
		{Name: "namespace label changed: y becomes ns=yy", Policies: policies(fromY), Change: true,
			NSLabels: map[string]map[string]string{"y": {"ns": "yy"}}},
		{Name: "namespace label changed: z becomes ns=y", Policies: policies(fromY), Change: true,
			NSLabels: map[string]map[string]string{"y": {"ns": "yy"}, "z": {"ns": "y"}}},
		{Name: "namespace label restored: z is ns=z again", Policies: policies(fromY), Change: true,
			NSLabels: map[string]map[string]string{"y": {"ns": "yy"}}},
		{Name: "namespace label restored: y is ns=y again", Policies: policies(fromY), Change: true},
		{Name: "pod relabelled out of a target: x/a becomes pod=aa", Policies: policies(fromY), Change: true,
			PodLabels: map[string]map[string]string{"x/a": {"pod": "aa"}}},
		{Name: "pod relabelled back into the target", Policies: policies(fromY), Change: true},
		{Name: "policy deleted: everything connects again", Change: true, Protos: allProtos},
	}
}
