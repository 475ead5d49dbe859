package networkpolicy

import (
	"net/netip"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

// Sources are the API objects one node's compilation reads. BuildInput is
// the one conversion from them to Input: the node agent and sdnctl both use
// it, so sdnctl explains what the agent compiles from the same objects.
type Sources struct {
	// Node is the node compiled for; its pods are the local pods.
	Node string
	// LocalSubnet is the node's HostSubnet: a remote pod whose status
	// address lies in it is stale (the address now belongs to a local pod)
	// and is ignored.
	LocalSubnet netip.Prefix
	// NetNamespaces give the namespaces and their VNIDs: a namespace
	// without one is not compiled (its pods have no flows yet).
	NetNamespaces []*networkv1.NetNamespace
	// Namespaces give the namespaces' labels.
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Policies   []*networkingv1.NetworkPolicy
	// LocalIPs, when not nil, are the addresses of the local pods as br0
	// knows them (key "namespace/name"): the agent's pod ports, known
	// before status.podIP is. A local pod missing from it is not in the
	// dataplane and is left out. When nil, local pods take their status
	// addresses (sdnctl without access to the node's OVSDB).
	LocalIPs map[string]netip.Addr
}

// BuildInput converts s. Finished (Succeeded, Failed) and host-network pods
// are left out: the compiler never selects them. A pod's address is its
// first IPv4 status address (status.podIPs, then status.podIP).
func BuildInput(s Sources) Input {
	var in Input
	labels := make(map[string]map[string]string, len(s.Namespaces))
	for _, ns := range s.Namespaces {
		labels[ns.Name] = ns.Labels
	}
	for _, nn := range s.NetNamespaces {
		in.Namespaces = append(in.Namespaces, Namespace{Name: nn.NetName, VNID: nn.NetID, Labels: labels[nn.NetName]})
	}
	for _, pod := range s.Pods {
		if p, ok := s.pod(pod); ok {
			in.Pods = append(in.Pods, p)
		}
	}
	in.Policies = s.Policies
	return in
}

func (s Sources) pod(pod *corev1.Pod) (Pod, bool) {
	v := ViewOf(pod)
	if v.Finished || v.HostNetwork {
		return Pod{}, false
	}
	p := Pod{Namespace: pod.Namespace, Name: pod.Name, Labels: pod.Labels, Ports: v.Ports}
	if v.Node == s.Node {
		p.Local = true
		if s.LocalIPs == nil {
			p.IP = v.IP
			return p, p.IP.Is4()
		}
		ip, ok := s.LocalIPs[pod.Namespace+"/"+pod.Name]
		p.IP = ip
		return p, ok && ip.Is4()
	}
	p.IP = v.IP
	return p, p.IP.Is4() && !s.LocalSubnet.Contains(p.IP)
}

// PodView is everything the compiler reads of a Pod.
type PodView struct {
	Labels      map[string]string
	Node        string
	HostNetwork bool
	Finished    bool
	IP          netip.Addr
	Ports       []ContainerPort
}

// ViewOf returns the compiler's view of pod.
func ViewOf(pod *corev1.Pod) PodView {
	v := PodView{Labels: pod.Labels, Node: pod.Spec.NodeName, HostNetwork: pod.Spec.HostNetwork, IP: statusIPv4(pod),
		Finished: pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name != "" && cp.ContainerPort > 0 && cp.ContainerPort < 1<<16 {
				v.Ports = append(v.Ports, ContainerPort{Name: cp.Name, Protocol: cp.Protocol, Port: uint16(cp.ContainerPort)})
			}
		}
	}
	return v
}

// Relevant reports whether a change from old to pod can change a
// compilation (not status-only churn).
func Relevant(old, pod *corev1.Pod) bool {
	return old == nil || pod == nil || !reflect.DeepEqual(ViewOf(old), ViewOf(pod))
}

// statusIPv4 is the pod's first IPv4 address in its status, or the zero
// Addr.
func statusIPv4(pod *corev1.Pod) netip.Addr {
	ips := []string{pod.Status.PodIP}
	for _, ip := range pod.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}
