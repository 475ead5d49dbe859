package networkpolicy

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The reference evaluator: NetworkPolicy semantics written the slow,
// obvious way, straight from the API types, sharing no code with the
// compiler. It is the oracle of the property test.
//
// Conventions it shares with the compiler by definition (documented in the
// package comment): pods without an IPv4 IP and host-network pods are never
// selected; a named port is resolved on the destination pod (the target in
// ingress; in egress only a destination pod matched by a selector peer, or
// any pod when the rule has no peers); a policy with an invalid part
// allows nothing in that direction but still isolates what it selects (all
// pods of its namespace when its podSelector is invalid).

// endpoint is one end of a connection: a pod, or a bare address.
type endpoint struct {
	pod *Pod
	ip  netip.Addr
}

func selectable(p *Pod) bool { return p != nil && !p.HostNetwork && p.IP.Is4() }

func refNamespace(in Input, name string) *Namespace {
	for i := range in.Namespaces {
		if in.Namespaces[i].Name == name {
			return &in.Namespaces[i]
		}
	}
	return nil
}

// refAllowed is the verdict of one side: ingress of dst or egress of src.
func refAllowed(in Input, d direction, src, dst endpoint, proto corev1.Protocol, port uint16) bool {
	self := dst.pod
	if d == egress {
		self = src.pod
	}
	isolated, allowed := false, false
	for _, np := range in.Policies {
		if np.Namespace != self.Namespace || !affects(np, d) {
			continue
		}
		valid := refValid(np, d)
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err == nil && !sel.Matches(labels.Set(self.Labels)) {
			continue
		}
		isolated = true
		if !valid {
			continue
		}
		for i := range ruleCount(np, d) {
			peers, ports := ruleAt(np, d, i)
			if refRule(in, np.Namespace, d, peers, ports, src, dst, proto, port) {
				allowed = true
			}
		}
	}
	return !isolated || allowed
}

func refRule(in Input, policyNS string, d direction, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort,
	src, dst endpoint, proto corev1.Protocol, port uint16) bool {
	other := src
	if d == egress {
		other = dst
	}
	bySelector, byIP := false, false
	for _, peer := range peers {
		if peer.IPBlock != nil {
			byIP = byIP || refInBlock(peer.IPBlock, other.ip)
		} else if refSelects(in, policyNS, peer, other.pod) {
			bySelector = true
		}
	}
	anyPeer := len(peers) == 0
	if !anyPeer && !bySelector && !byIP {
		return false
	}
	if len(ports) == 0 {
		return true
	}
	namedOK := d == ingress || bySelector || anyPeer && selectable(dst.pod)
	for _, p := range ports {
		want := corev1.ProtocolTCP
		if p.Protocol != nil {
			want = *p.Protocol
		}
		if want != proto {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.String:
			if namedOK && refNamedPort(dst.pod, p.Port.StrVal, proto) == port {
				return true
			}
		default:
			end := p.Port.IntVal
			if p.EndPort != nil {
				end = *p.EndPort
			}
			if int32(port) >= p.Port.IntVal && int32(port) <= end {
				return true
			}
		}
	}
	return false
}

func refSelects(in Input, policyNS string, peer networkingv1.NetworkPolicyPeer, p *Pod) bool {
	if !selectable(p) {
		return false
	}
	if peer.NamespaceSelector == nil {
		if p.Namespace != policyNS {
			return false
		}
	} else {
		ns := refNamespace(in, p.Namespace)
		sel, _ := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
		if ns == nil || !sel.Matches(labels.Set(ns.Labels)) {
			return false
		}
	}
	if peer.PodSelector == nil {
		return true
	}
	sel, _ := metav1.LabelSelectorAsSelector(peer.PodSelector)
	return sel.Matches(labels.Set(p.Labels))
}

func refInBlock(b *networkingv1.IPBlock, ip netip.Addr) bool {
	cidr, _ := netip.ParsePrefix(b.CIDR)
	if !cidr.Contains(ip) {
		return false
	}
	for _, e := range b.Except {
		if ex, _ := netip.ParsePrefix(e); ex.Contains(ip) {
			return false
		}
	}
	return true
}

// refNamedPort returns the port number pod gives name for proto, 0 if none.
func refNamedPort(pod *Pod, name string, proto corev1.Protocol) uint16 {
	if !selectable(pod) {
		return 0
	}
	for _, cp := range pod.Ports {
		p := cp.Protocol
		if p == "" {
			p = corev1.ProtocolTCP
		}
		if cp.Name == name && p == proto {
			return cp.Port
		}
	}
	return 0
}

// refValid reports whether every part of np used in direction d is valid.
func refValid(np *networkingv1.NetworkPolicy, d direction) bool {
	if _, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); err != nil {
		return false
	}
	for i := range ruleCount(np, d) {
		peers, ports := ruleAt(np, d, i)
		for _, p := range peers {
			if !refValidPeer(p) {
				return false
			}
		}
		for _, p := range ports {
			if !refValidPort(p) {
				return false
			}
		}
	}
	return true
}

func refValidPeer(p networkingv1.NetworkPolicyPeer) bool {
	if p.IPBlock != nil {
		if _, err := netip.ParsePrefix(p.IPBlock.CIDR); err != nil {
			return false
		}
		for _, e := range p.IPBlock.Except {
			if _, err := netip.ParsePrefix(e); err != nil {
				return false
			}
		}
		return true
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		return false
	}
	for _, s := range []*metav1.LabelSelector{p.PodSelector, p.NamespaceSelector} {
		if _, err := metav1.LabelSelectorAsSelector(s); s != nil && err != nil {
			return false
		}
	}
	return true
}

func refValidPort(p networkingv1.NetworkPolicyPort) bool {
	if p.Protocol != nil && !slices.Contains([]corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}, *p.Protocol) {
		return false
	}
	if p.Port == nil {
		return p.EndPort == nil
	}
	if p.Port.Type == intstr.String {
		return p.EndPort == nil
	}
	end := p.Port.IntVal
	if p.EndPort != nil {
		end = *p.EndPort
	}
	return p.Port.IntVal >= 1 && end >= p.Port.IntVal && end <= 65535
}
