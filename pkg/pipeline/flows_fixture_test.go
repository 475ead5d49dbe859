package pipeline_test

import (
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// Fixtures for the flow renderer tests: one node "node-a" with subnet
// 10.128.0.0/23 in cluster network 10.128.0.0/14, and its neighbours.

var (
	fxClusterCIDR = netip.MustParsePrefix("10.128.0.0/14")
	fxServiceCIDR = netip.MustParsePrefix("172.30.0.0/16")
	fxLocalSubnet = netip.MustParsePrefix("10.128.0.0/23")
	fxNodeIP      = netip.MustParseAddr("192.168.126.10")
	fxGateway     = netip.MustParseAddr("10.128.0.1")
	fxExternal    = netip.MustParseAddr("8.8.8.8")
	fxService     = netip.MustParseAddr("172.30.0.10")
	fxUnknownNode = netip.MustParseAddr("192.168.126.99")
)

func fxConfig(mode clusternetwork.Mode, cidrs ...netip.Prefix) pipeline.FlowConfig {
	if len(cidrs) == 0 {
		cidrs = []netip.Prefix{fxClusterCIDR}
	}
	return pipeline.FlowConfig{
		Mode:            mode,
		ClusterNetworks: cidrs,
		ServiceNetwork:  fxServiceCIDR,
		LocalSubnet:     fxLocalSubnet,
		NodeIP:          fxNodeIP,
	}
}

func fxPod(ns, name, ip string, port, vnid uint32) pipeline.PodInfo {
	return pipeline.PodInfo{Namespace: ns, Name: name, IP: netip.MustParseAddr(ip), OFPort: port, VNID: vnid}
}

// Local pods. VNIDs: 0 global, 10 and 11 two projects.
var (
	podWeb    = fxPod("shop", "web", "10.128.0.2", 3, 10)
	podDB     = fxPod("shop", "db", "10.128.0.3", 4, 10)
	podBlog   = fxPod("blog", "blog", "10.128.0.4", 5, 11)
	podRouter = fxPod("default", "router", "10.128.0.5", 6, 0)
)

func fxNode(name, uid, ip, subnet string) pipeline.RemoteNode {
	return pipeline.RemoteNode{Name: name, UID: uid, HostIP: netip.MustParseAddr(ip), Subnet: netip.MustParsePrefix(subnet)}
}

var (
	nodeB = fxNode("node-b", "6c1b6a6e-0b5d-4c55-9d59-0e3f4a1b2c01", "192.168.126.11", "10.128.2.0/23")
	nodeC = fxNode("node-c", "6c1b6a6e-0b5d-4c55-9d59-0e3f4a1b2c02", "192.168.126.12", "10.129.0.0/23")
	// remote pods on node-b and node-c
	remoteOnB = netip.MustParseAddr("10.128.2.7")
	remoteOnC = netip.MustParseAddr("10.129.0.9")
)

// fixedVNIDNode is an external host with the fixed-vnid-host annotation,
// in a second cluster network.
func fixedVNIDNode() pipeline.RemoteNode {
	n := fxNode("f5", "6c1b6a6e-0b5d-4c55-9d59-0e3f4a1b2c03", "192.168.126.50", "10.132.0.0/23")
	vnid := uint32(7)
	n.FixedVNID = &vnid
	return n
}

// fxScenario is a node's complete desired flow state.
type fxScenario struct {
	name  string
	cfg   pipeline.FlowConfig
	pods  []pipeline.PodInfo
	nodes []pipeline.RemoteNode
	// multicast are the multicast-enabled VNIDs (modes with VNIDs only).
	multicast []uint32
}

// flows renders everything the agent would install, as it would: base,
// isolation statics, per-object flows, tenant rules per VNID in use, table
// 111, version last.
func (s fxScenario) flows() []ovs.Flow {
	iso := s.cfg.Isolation()
	flows := append(pipeline.BaseFlows(s.cfg), iso.StaticFlows(s.cfg)...)
	flows = append(flows, pipeline.ServiceProxyFlows(s.cfg)...)
	inUse := map[uint32]bool{}
	for _, p := range s.pods {
		flows = append(flows, pipeline.PodFlows(s.cfg, p)...)
		if !inUse[p.VNID] {
			inUse[p.VNID] = true
			flows = append(flows, iso.TenantFlows(p.VNID)...)
		}
	}
	for _, n := range s.nodes {
		flows = append(flows, pipeline.RemoteNodeFlows(s.cfg, n)...)
	}
	flows = append(flows, s.multicastFlows()...)
	flows = append(flows, s.policyFlows()...)
	flows = append(flows, s.egressFirewallFlows()...)
	return append(flows, pipeline.VersionFlow(s.cfg))
}

// egressFirewallFlows are the egress firewall's flows in the VNID modes:
// its static flows and, for the first pod's VNID, the policy allow
// 203.0.113.0/24, deny 0.0.0.0/0.
func (s fxScenario) egressFirewallFlows() []ovs.Flow {
	if !s.cfg.Isolation().UsesVNIDs() {
		return nil
	}
	p := s.pods[0]
	enp := &networkv1.EgressNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: "fw"},
		Spec: networkv1.EgressNetworkPolicySpec{Egress: []networkv1.EgressNetworkPolicyRule{
			{Type: networkv1.EgressNetworkPolicyRuleAllow, To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: "203.0.113.0/24"}},
			{Type: networkv1.EgressNetworkPolicyRuleDeny, To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: "0.0.0.0/0"}},
		}}}
	nn := &networkv1.NetNamespace{ObjectMeta: metav1.ObjectMeta{Name: p.Namespace}, NetName: p.Namespace, NetID: p.VNID}
	flows := egressfirewall.StaticFlows(s.cfg)
	for _, d := range egressfirewall.Evaluate(egressfirewall.BuildInput([]*networkv1.EgressNetworkPolicy{enp}, []*networkv1.NetNamespace{nn})) {
		flows = append(flows, egressfirewall.Flows(d, nil)...)
	}
	return flows
}

// multicastFlows are what the agent's multicast feature renders: in modes
// with VNIDs, the replication flow and each enabled VNID's flows with the
// local pods of that VNID as receivers.
func (s fxScenario) multicastFlows() []ovs.Flow {
	if !s.cfg.Isolation().UsesVNIDs() {
		return nil
	}
	var ips []netip.Addr
	for _, n := range s.nodes {
		ips = append(ips, n.HostIP)
	}
	flows := []ovs.Flow{pipeline.MulticastRemoteFlow(s.cfg, ips)}
	for _, v := range s.multicast {
		var receivers []pipeline.PodInfo
		for _, p := range s.pods {
			if p.VNID == v {
				receivers = append(receivers, p)
			}
		}
		flows = append(flows, pipeline.MulticastVNIDFlows(s.cfg, v, receivers)...)
	}
	return flows
}

// policyFlows are the compiled NetworkPolicy flows of a networkpolicy-mode
// scenario without policies: each namespace with local pods is allowed in
// both directions (what the agent installs for it).
func (s fxScenario) policyFlows() []ovs.Flow {
	if !s.cfg.Isolation().EnforcesNetworkPolicy() {
		return nil
	}
	var in networkpolicy.Input
	seen := map[string]bool{}
	for _, p := range s.pods {
		if !seen[p.Namespace] {
			seen[p.Namespace] = true
			in.Namespaces = append(in.Namespaces, networkpolicy.Namespace{Name: p.Namespace, VNID: p.VNID})
		}
		in.Pods = append(in.Pods, networkpolicy.Pod{Namespace: p.Namespace, Name: p.Name, IP: p.IP, Local: true})
	}
	owners, _ := networkpolicy.Compile(in)
	return networkpolicy.Flatten(owners)
}

// fxScenarios are the goldens of testdata/flows_<name>.flows.
func fxScenarios() []fxScenario {
	return []fxScenario{
		{
			name:  "networkpolicy",
			cfg:   fxConfig(clusternetwork.ModeNetworkPolicy),
			pods:  []pipeline.PodInfo{podWeb, podBlog},
			nodes: []pipeline.RemoteNode{nodeB, nodeC},
			// 10 has a local pod; 12 none (admission in 110 only).
			multicast: []uint32{10, 12},
		},
		{
			name:  "multitenant",
			cfg:   fxConfig(clusternetwork.ModeMultitenant),
			pods:  []pipeline.PodInfo{podWeb, podDB, podBlog, podRouter},
			nodes: []pipeline.RemoteNode{nodeB},
			// web and db share VNID 10; router is VNID 0; blog's 11 is off.
			multicast: []uint32{0, 10},
		},
		{
			name:  "subnet",
			cfg:   fxConfig(clusternetwork.ModeSubnet),
			pods:  []pipeline.PodInfo{podWeb, podBlog},
			nodes: []pipeline.RemoteNode{nodeB},
			// Ignored: subnet mode has no VNIDs and no multicast.
			multicast: []uint32{0},
		},
		{
			name:  "networkpolicy_userspace",
			cfg:   userspace(fxConfig(clusternetwork.ModeNetworkPolicy)),
			pods:  []pipeline.PodInfo{podWeb, podBlog},
			nodes: []pipeline.RemoteNode{nodeB, nodeC},
		},
		{
			name:      "multitenant_userspace",
			cfg:       userspace(fxConfig(clusternetwork.ModeMultitenant)),
			pods:      []pipeline.PodInfo{podWeb, podDB, podBlog, podRouter},
			nodes:     []pipeline.RemoteNode{nodeB},
			multicast: []uint32{0, 10},
		},
		{
			name:  "networkpolicy_kube_proxy",
			cfg:   kubeProxy(fxConfig(clusternetwork.ModeNetworkPolicy)),
			pods:  []pipeline.PodInfo{podWeb, podBlog},
			nodes: []pipeline.RemoteNode{nodeB, nodeC},
		},
		{
			name: "two_cluster_networks",
			cfg: fxConfig(clusternetwork.ModeNetworkPolicy,
				fxClusterCIDR, netip.MustParsePrefix("10.132.0.0/14")),
			pods:  []pipeline.PodInfo{podWeb},
			nodes: []pipeline.RemoteNode{nodeB, fixedVNIDNode()},
		},
	}
}

func userspace(c pipeline.FlowConfig) pipeline.FlowConfig {
	c.Userspace = true
	return c
}

func kubeProxy(c pipeline.FlowConfig) pipeline.FlowConfig {
	c.ProxyMode = pipeline.ProxyKubeProxy
	return c
}

func scenarioNamed(name string) fxScenario {
	for _, s := range fxScenarios() {
		if s.name == name {
			return s
		}
	}
	panic("no scenario " + name)
}
