package sdnctl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
)

// apiView is what the API says about the cluster, read once per command:
// pods, namespaces, NetworkPolicies, HostSubnets and NetNamespaces.
type apiView struct {
	pods          []*corev1.Pod
	namespaces    []*corev1.Namespace
	policies      []*networkingv1.NetworkPolicy
	subnets       []networkv1.HostSubnet // by name
	netNamespaces []*networkv1.NetNamespace
	vnids         map[string]uint32
	// egressPolicies are the EgressNetworkPolicies (egress.go).
	egressPolicies []*networkv1.EgressNetworkPolicy
	// services and endpointSlices are read by trace only (loadServices).
	services       []*corev1.Service
	endpointSlices []*discoveryv1.EndpointSlice
}

// loadAPIView lists everything a policy explanation or a trace reads.
func loadAPIView(ctx context.Context, c *cli, what string) (*apiView, error) {
	clients, err := c.Clients()
	if err != nil {
		return nil, err
	}
	if clients.Kube == nil || clients.Network == nil {
		return nil, errors.New(what + " needs the Kubernetes and network.openshift.io APIs")
	}
	v := &apiView{vnids: map[string]uint32{}}
	pods, err := clients.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range pods.Items {
		v.pods = append(v.pods, &pods.Items[i])
	}
	nss, err := clients.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range nss.Items {
		v.namespaces = append(v.namespaces, &nss.Items[i])
	}
	nps, err := clients.Kube.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range nps.Items {
		v.policies = append(v.policies, &nps.Items[i])
	}
	hss, err := clients.Network.NetworkV1().HostSubnets().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	v.subnets = hss.Items
	slices.SortFunc(v.subnets, func(a, b networkv1.HostSubnet) int { return strings.Compare(a.Name, b.Name) })
	netnss, err := clients.Network.NetworkV1().NetNamespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range netnss.Items {
		nn := &netnss.Items[i]
		v.netNamespaces = append(v.netNamespaces, nn)
		v.vnids[nn.NetName] = nn.NetID
		if nn.NetName == "" {
			v.vnids[nn.Name] = nn.NetID
		}
	}
	if v.egressPolicies, err = listEgressPolicies(ctx, clients); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *apiView) subnet(nodeName string) (networkv1.HostSubnet, bool) {
	for _, hs := range v.subnets {
		if hs.Host == nodeName || hs.Name == nodeName {
			return hs, true
		}
	}
	return networkv1.HostSubnet{}, false
}

func (v *apiView) nodeByIP(ip netip.Addr) (networkv1.HostSubnet, bool) {
	for _, hs := range v.subnets {
		if hs.HostIP == ip.String() {
			return hs, true
		}
	}
	return networkv1.HostSubnet{}, false
}

// explainer compiles the NetworkPolicies for nodeName exactly as that
// node's agent does (networkpolicy.BuildInput, the agent's own conversion)
// and returns the compilation's explainer. localIPs are the node's pod
// ports ("ns/name" → IP, as the agent reads them from OVSDB); nil falls
// back to the pods' status addresses.
func (v *apiView) explainer(nodeName string, localIPs map[string]netip.Addr) *networkpolicy.Explainer {
	s := networkpolicy.Sources{Node: nodeName, NetNamespaces: v.netNamespaces, Namespaces: v.namespaces,
		Pods: v.pods, Policies: v.policies, LocalIPs: localIPs}
	if hs, ok := v.subnet(nodeName); ok {
		s.LocalSubnet, _ = netip.ParsePrefix(hs.Subnet)
	}
	return networkpolicy.NewExplainer(networkpolicy.BuildInput(s))
}

// localIPs reads a node's pod ports ("ns/name" → IP) from its OVSDB, the
// way its agent does.
func localIPs(ctx context.Context, b OVSBackend, endpoint, bridge string) (map[string]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	ports, err := b.Ports(ctx, endpoint, bridge)
	if err != nil {
		return nil, fmt.Errorf("reading the ports of %s from %s: %w", bridge, endpoint, err)
	}
	out := map[string]netip.Addr{}
	for _, p := range ports {
		ns, name := p.ExternalIDs[ovsdb.ExternalIDPodNamespace], p.ExternalIDs[ovsdb.ExternalIDPodName]
		if ip, err := netip.ParseAddr(p.ExternalIDs[ovsdb.ExternalIDIP]); err == nil && ns != "" && name != "" && p.OFPort > 0 {
			out[ns+"/"+name] = ip
		}
	}
	return out, nil
}
