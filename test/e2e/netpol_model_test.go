package e2e

// The reference model of the NetworkPolicy truth-table suite: a slow,
// direct reading of networking.k8s.io/v1 semantics, written for these tests
// and independent of pkg/networkpolicy (which compiles to flows). It answers,
// for one connection attempt from a pod to a pod's address, whether the
// source's egress policies and the destination's ingress policies allow it,
// and so what a probe must observe: Connected, Refused (allowed, but nothing
// listens) or TimedOut (denied: a silent drop).

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
)

// npPod is a pod as the model sees it.
type npPod struct {
	Key    types.NamespacedName
	Node   string
	IP     netip.Addr
	Labels map[string]string
	Ports  []corev1.ContainerPort
}

// npState is the cluster state a scenario describes: namespaces with their
// labels, pods with their labels, and the policies.
type npState struct {
	NSLabels map[string]map[string]string
	Pods     []*npPod
	Policies []*networkingv1.NetworkPolicy
}

// npCell is one probe: a new connection from a pod to a pod's IP, or, with
// Service, to the ClusterIP of the destination pod's own Service (whose one
// endpoint is that pod, on the same port). The model gives both the same
// verdict: after DNAT a Service connection is a connection to its endpoint,
// and NetworkPolicy applies to it as to the pod's IP; a pod reaching itself
// through its Service is allowed, as is a pod reaching its own address.
type npCell struct {
	From, To types.NamespacedName
	Port     uint16
	Proto    corev1.Protocol
	Service  bool
}

func (c npCell) String() string {
	to := c.To.String()
	if c.Service {
		to = "svc/" + to
	}
	return fmt.Sprintf("%s → %s %d/%s", c.From, to, c.Port, c.Proto)
}

func (s *npState) pod(k types.NamespacedName) *npPod {
	for _, p := range s.Pods {
		if p.Key == k {
			return p
		}
	}
	return nil
}

// verdicts returns whether the source side (egress) and the destination
// side (ingress) allow the cell. A pod talking to its own address never
// leaves its network namespace (loopback), so policies do not apply.
func (s *npState) verdicts(c npCell) (egress, ingress bool) {
	from, to := s.pod(c.From), s.pod(c.To)
	if from == nil || to == nil {
		panic(fmt.Sprintf("model: cell %s names an unknown pod", c))
	}
	if c.From == c.To {
		return true, true
	}
	return s.allows(from, to, networkingv1.PolicyTypeEgress, c),
		s.allows(to, from, networkingv1.PolicyTypeIngress, c)
}

// expect is what a probe of the cell must observe.
func (s *npState) expect(c npCell) kubelet.Outcome {
	eg, in := s.verdicts(c)
	return outcomeFor(eg && in, serves(s.pod(c.To), c.Port, c.Proto))
}

func outcomeFor(allowed, served bool) kubelet.Outcome {
	switch {
	case !allowed:
		return kubelet.TimedOut
	case !served:
		return kubelet.Refused
	}
	return kubelet.Connected
}

// serves: the kubelet stand-in runs a server for every declared containerPort.
func serves(p *npPod, port uint16, proto corev1.Protocol) bool {
	for _, cp := range p.Ports {
		if cp.ContainerPort == int32(port) && protoOf(cp.Protocol) == proto {
			return true
		}
	}
	return false
}

func protoOf(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// allows decides one direction at one end. subject is the pod whose
// policies are read (the source for egress, the destination for ingress),
// peer the pod at the other end; named ports always resolve on the
// destination pod.
func (s *npState) allows(subject, peer *npPod, dir networkingv1.PolicyType, c npCell) bool {
	dst := s.pod(c.To)
	isolated := false
	for _, pol := range s.Policies {
		if pol.Namespace != subject.Key.Namespace || !hasType(pol, dir) {
			continue
		}
		if !selectorMatches(&pol.Spec.PodSelector, subject.Labels) {
			continue
		}
		isolated = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range pol.Spec.Ingress {
				if s.peersMatch(pol.Namespace, r.From, peer) && portsMatch(r.Ports, c, dst) {
					return true
				}
			}
		} else {
			for _, r := range pol.Spec.Egress {
				if s.peersMatch(pol.Namespace, r.To, peer) && portsMatch(r.Ports, c, dst) {
					return true
				}
			}
		}
	}
	return !isolated
}

// hasType applies the defaulting of spec.policyTypes: Ingress always, Egress
// when there are egress rules.
func hasType(pol *networkingv1.NetworkPolicy, t networkingv1.PolicyType) bool {
	if len(pol.Spec.PolicyTypes) > 0 {
		return slices.Contains(pol.Spec.PolicyTypes, t)
	}
	return t == networkingv1.PolicyTypeIngress || len(pol.Spec.Egress) > 0
}

// selectorMatches: nil matches nothing (as a peer field it is "not set",
// which callers handle), an invalid selector matches nothing.
func selectorMatches(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return false
	}
	ls, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return ls.Matches(labels.Set(l))
}

// peersMatch: no peers means everyone; otherwise any peer.
func (s *npState) peersMatch(policyNS string, peers []networkingv1.NetworkPolicyPeer, p *npPod) bool {
	if len(peers) == 0 {
		return true
	}
	for _, peer := range peers {
		if s.peerMatches(policyNS, peer, p) {
			return true
		}
	}
	return false
}

func (s *npState) peerMatches(policyNS string, peer networkingv1.NetworkPolicyPeer, p *npPod) bool {
	if peer.IPBlock != nil {
		return inIPBlock(peer.IPBlock, p.IP)
	}
	switch {
	case peer.NamespaceSelector == nil && peer.PodSelector == nil:
		return false
	case peer.NamespaceSelector == nil:
		return p.Key.Namespace == policyNS && selectorMatches(peer.PodSelector, p.Labels)
	case peer.PodSelector == nil:
		return selectorMatches(peer.NamespaceSelector, s.NSLabels[p.Key.Namespace])
	}
	return selectorMatches(peer.NamespaceSelector, s.NSLabels[p.Key.Namespace]) &&
		selectorMatches(peer.PodSelector, p.Labels)
}

func inIPBlock(b *networkingv1.IPBlock, ip netip.Addr) bool {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !cidr.Contains(ip) {
		return false
	}
	for _, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil || ex.Contains(ip) {
			return false
		}
	}
	return true
}

// portsMatch: no ports means every port of every protocol.
func portsMatch(ports []networkingv1.NetworkPolicyPort, c npCell, dst *npPod) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if portMatches(p, c, dst) {
			return true
		}
	}
	return false
}

func portMatches(p networkingv1.NetworkPolicyPort, c npCell, dst *npPod) bool {
	proto := corev1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	if proto != c.Proto {
		return false
	}
	if p.Port == nil {
		return true
	}
	if p.Port.Type == intstr.String { // a named port: the destination's containerPort of that name and protocol
		for _, cp := range dst.Ports {
			if cp.Name == p.Port.StrVal && protoOf(cp.Protocol) == proto {
				return cp.ContainerPort == int32(c.Port)
			}
		}
		return false
	}
	lo := p.Port.IntVal
	hi := lo
	if p.EndPort != nil {
		hi = *p.EndPort
	}
	return int32(c.Port) >= lo && int32(c.Port) <= hi
}

// npExpectation is a scenario's expected outcome of every probed cell.
type npExpectation map[npCell]kubelet.Outcome

func (s *npState) expectAll(cells []npCell) npExpectation {
	e := npExpectation{}
	for _, c := range cells {
		e[c] = s.expect(c)
	}
	return e
}

// invariantAcross reports whether the cell's outcome is the same in a and b
// and in every mix of them in which one end has realized the change and the
// other not (egress is enforced at the source's node, ingress at the
// destination's).
func invariantAcross(a, b *npState, c npCell) bool {
	ea, ia := a.verdicts(c)
	eb, ib := b.verdicts(c)
	first := ea && ia
	for _, v := range []bool{ea && ib, eb && ia, eb && ib} {
		if v != first {
			return false
		}
	}
	return serves(a.pod(c.To), c.Port, c.Proto) == serves(b.pod(c.To), c.Port, c.Proto)
}

func sortedCells(cells map[npCell]bool) []npCell {
	out := make([]npCell, 0, len(cells))
	for c := range cells {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
