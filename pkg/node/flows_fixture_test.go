package node_test

import (
	"net/netip"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/node"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
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

func fxConfig(mode clusternetwork.Mode, cidrs ...netip.Prefix) node.FlowConfig {
	if len(cidrs) == 0 {
		cidrs = []netip.Prefix{fxClusterCIDR}
	}
	return node.FlowConfig{
		Mode:            mode,
		ClusterNetworks: cidrs,
		ServiceNetwork:  fxServiceCIDR,
		LocalSubnet:     fxLocalSubnet,
		NodeIP:          fxNodeIP,
		TunMAC:          ovs.MAC{0x0a, 0x58, 0x0a, 0x80, 0x00, 0x01},
	}
}

func fxPod(ns, name, ip string, port, vnid uint32) node.PodInfo {
	return node.PodInfo{Namespace: ns, Name: name, IP: netip.MustParseAddr(ip), OFPort: port, VNID: vnid}
}

// Local pods. VNIDs: 0 global, 10 and 11 two projects.
var (
	podWeb    = fxPod("shop", "web", "10.128.0.2", 3, 10)
	podDB     = fxPod("shop", "db", "10.128.0.3", 4, 10)
	podBlog   = fxPod("blog", "blog", "10.128.0.4", 5, 11)
	podRouter = fxPod("default", "router", "10.128.0.5", 6, 0)
)

func fxNode(name, uid, ip, subnet string) node.RemoteNode {
	return node.RemoteNode{Name: name, UID: uid, HostIP: netip.MustParseAddr(ip), Subnet: netip.MustParsePrefix(subnet)}
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
func fixedVNIDNode() node.RemoteNode {
	n := fxNode("f5", "6c1b6a6e-0b5d-4c55-9d59-0e3f4a1b2c03", "192.168.126.50", "10.132.0.0/23")
	vnid := uint32(7)
	n.FixedVNID = &vnid
	return n
}

// fxScenario is a node's complete desired flow state.
type fxScenario struct {
	name  string
	cfg   node.FlowConfig
	pods  []node.PodInfo
	nodes []node.RemoteNode
}

// flows renders everything the agent would install, as it would: base,
// per-object flows, tenant rules per VNID in use, table 111, version last.
func (s fxScenario) flows() []ovs.Flow {
	flows := node.BaseFlows(s.cfg)
	inUse := map[uint32]bool{}
	for _, p := range s.pods {
		flows = append(flows, node.PodFlows(s.cfg, p)...)
		if !inUse[p.VNID] {
			inUse[p.VNID] = true
			flows = append(flows, node.TenantFlows(s.cfg, p.VNID)...)
		}
	}
	var ips []netip.Addr
	for _, n := range s.nodes {
		flows = append(flows, node.RemoteNodeFlows(s.cfg, n)...)
		ips = append(ips, n.HostIP)
	}
	flows = append(flows, node.MulticastRemoteFlow(s.cfg, ips))
	flows = append(flows, s.policyFlows()...)
	return append(flows, node.VersionFlow(s.cfg))
}

// policyFlows are the compiled NetworkPolicy flows of a networkpolicy-mode
// scenario without policies: each namespace with local pods is allowed in
// both directions (what the agent installs for it).
func (s fxScenario) policyFlows() []ovs.Flow {
	if s.cfg.Mode != clusternetwork.ModeNetworkPolicy {
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
			pods:  []node.PodInfo{podWeb, podBlog},
			nodes: []node.RemoteNode{nodeB, nodeC},
		},
		{
			name:  "multitenant",
			cfg:   fxConfig(clusternetwork.ModeMultitenant),
			pods:  []node.PodInfo{podWeb, podDB, podBlog, podRouter},
			nodes: []node.RemoteNode{nodeB},
		},
		{
			name:  "subnet",
			cfg:   fxConfig(clusternetwork.ModeSubnet),
			pods:  []node.PodInfo{podWeb, podBlog},
			nodes: []node.RemoteNode{nodeB},
		},
		{
			name: "two_cluster_networks",
			cfg: fxConfig(clusternetwork.ModeNetworkPolicy,
				fxClusterCIDR, netip.MustParsePrefix("10.132.0.0/14")),
			pods:  []node.PodInfo{podWeb},
			nodes: []node.RemoteNode{nodeB, fixedVNIDNode()},
		},
	}
}

func scenarioNamed(name string) fxScenario {
	for _, s := range fxScenarios() {
		if s.name == name {
			return s
		}
	}
	panic("no scenario " + name)
}
