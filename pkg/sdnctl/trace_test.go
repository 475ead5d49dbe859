package sdnctl

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubefake "k8s.io/client-go/kubernetes/fake"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	networkfake "github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned/fake"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/testutil"
)

// The trace scenario: networkpolicy mode, node1 (10.128.0.0/23) and node2 (10.128.2.0/23).
//
//	proj1 (VNID 10, team=a): client 10.128.0.5 (ofport 3), server 10.128.0.6 (4) on node1
//	proj3 (VNID 12):         app 10.128.0.7 (5) on node1, no policies
//	proj2 (VNID 11, team=b): db-0 10.128.2.5 (3), db-1 10.128.2.6 (4) on node2
//
// proj1/allow-server: server ingress from client on 8080 (plain allow).
// proj1/restrict-egress: client egress [0] to server, [1] to 10.128.2.0/23 on 5432.
// proj2/deny-all; proj2/allow-db: db ingress from team=a client/server on 5432-5434
// (2 targets × 2 peers × 2 port blocks: a conjunction, id 11<<8).
//
// Services (traceServices): proj1/web 172.30.0.10:80 → server:8080, node port 30080;
// proj1/sticky 172.30.0.11:8080 → server:8080 with session affinity; proj2/db
// 172.30.0.20:80 → db-0 and db-1 on 5432 (policies allow 5432, not 80: they judge the
// packet after DNAT); proj3/empty 172.30.0.30:80 without endpoints; proj2/dns
// 172.30.0.21:53/UDP → db-0 and db-1 on 5353 (UDP: multipath instead of a group).
//
// EgressNetworkPolicy proj3/fw: [0] Allow 203.0.113.0/24, [1] Deny 0.0.0.0/0.
type tracePod struct {
	ns, name, ip, nodeName, app string
	ofport                      uint32
}

var tracePods = []tracePod{
	{"proj1", "client", "10.128.0.5", "node1", "client", 3},
	{"proj1", "server", "10.128.0.6", "node1", "server", 4},
	{"proj3", "app", "10.128.0.7", "node1", "app", 5},
	{"proj2", "db-0", "10.128.2.5", "node2", "db", 3},
	{"proj2", "db-1", "10.128.2.6", "node2", "db", 4},
}

var traceNodes = []pipeline.RemoteNode{
	{Name: "node1", UID: "uid-node1", HostIP: netip.MustParseAddr("192.168.126.10"), Subnet: netip.MustParsePrefix("10.128.0.0/23")},
	{Name: "node2", UID: "uid-node2", HostIP: netip.MustParseAddr("192.168.126.11"), Subnet: netip.MustParsePrefix("10.128.2.0/23")},
}

var traceVNIDs = map[string]uint32{"proj1": 10, "proj2": 11, "proj3": 12}

func tracePolicies() []*networkingv1.NetworkPolicy {
	tcpPort := func(p int32, end ...int32) networkingv1.NetworkPolicyPort {
		proto := corev1.ProtocolTCP
		v := intstr.FromInt32(p)
		np := networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
		if len(end) > 0 {
			np.EndPort = &end[0]
		}
		return np
	}
	app := func(apps ...string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: apps}}}
	}
	meta := func(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }
	in, eg := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	return []*networkingv1.NetworkPolicy{
		{ObjectMeta: meta("proj1", "allow-server"), Spec: networkingv1.NetworkPolicySpec{PodSelector: *app("server"), PolicyTypes: in,
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: app("client")}}, Ports: []networkingv1.NetworkPolicyPort{tcpPort(8080)}}}}},
		{ObjectMeta: meta("proj1", "restrict-egress"), Spec: networkingv1.NetworkPolicySpec{PodSelector: *app("client"), PolicyTypes: eg,
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: app("server")}}},
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.128.2.0/23"}}}, Ports: []networkingv1.NetworkPolicyPort{tcpPort(5432)}},
			}}},
		{ObjectMeta: meta("proj2", "deny-all"), Spec: networkingv1.NetworkPolicySpec{PolicyTypes: in}},
		{ObjectMeta: meta("proj2", "allow-db"), Spec: networkingv1.NetworkPolicySpec{PodSelector: *app("db"), PolicyTypes: in,
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}, PodSelector: app("client", "server")}},
				Ports: []networkingv1.NetworkPolicyPort{tcpPort(5432, 5434)}}}}},
	}
}

// traceClients are fake API clients holding the scenario.
func traceClients() *Clients {
	var kubeObjs []runtime.Object
	nsLabels := map[string]map[string]string{"proj1": {"team": "a"}, "proj2": {"team": "b"}, "proj3": nil}
	var netObjs []runtime.Object
	for ns, vnid := range traceVNIDs {
		kubeObjs = append(kubeObjs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: nsLabels[ns]}})
		netObjs = append(netObjs, &networkv1.NetNamespace{ObjectMeta: metav1.ObjectMeta{Name: ns}, NetName: ns, NetID: vnid})
	}
	for _, p := range tracePods {
		kubeObjs = append(kubeObjs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: map[string]string{"app": p.app}},
			Spec:       corev1.PodSpec{NodeName: p.nodeName},
			Status:     corev1.PodStatus{PodIP: p.ip},
		})
	}
	for _, np := range tracePolicies() {
		kubeObjs = append(kubeObjs, np)
	}
	kubeObjs = append(kubeObjs, serviceObjects(traceServices)...)
	for _, n := range traceNodes {
		netObjs = append(netObjs, &networkv1.HostSubnet{ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: "uid-" + "x"},
			Host: n.Name, HostIP: n.HostIP.String(), Subnet: n.Subnet.String()})
	}
	netObjs = append(netObjs, traceEgressPolicy())
	return &Clients{Kube: kubefake.NewSimpleClientset(kubeObjs...), Network: networkfake.NewSimpleClientset(netObjs...)}
}

// traceInput is the compiler input of the scenario for one node.
func traceInput(nodeName string) networkpolicy.Input {
	nsLabels := map[string]map[string]string{"proj1": {"team": "a"}, "proj2": {"team": "b"}}
	var in networkpolicy.Input
	for ns, vnid := range traceVNIDs {
		in.Namespaces = append(in.Namespaces, networkpolicy.Namespace{Name: ns, VNID: vnid, Labels: nsLabels[ns]})
	}
	for _, p := range tracePods {
		in.Pods = append(in.Pods, networkpolicy.Pod{Namespace: p.ns, Name: p.name, Labels: map[string]string{"app": p.app},
			IP: netip.MustParseAddr(p.ip), Local: p.nodeName == nodeName})
	}
	in.Policies = tracePolicies()
	return in
}

// traceEgressPolicy is proj3's EgressNetworkPolicy.
func traceEgressPolicy() *networkv1.EgressNetworkPolicy {
	return &networkv1.EgressNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "proj3", Name: "fw"},
		Spec: networkv1.EgressNetworkPolicySpec{Egress: []networkv1.EgressNetworkPolicyRule{
			{Type: networkv1.EgressNetworkPolicyRuleAllow, To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: "203.0.113.0/24"}},
			{Type: networkv1.EgressNetworkPolicyRuleDeny, To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: "0.0.0.0/0"}},
		}}}
}

// traceEgressFlows are the egress firewall's flows of the scenario, rendered
// from the agent's own decisions.
func traceEgressFlows(c pipeline.FlowConfig) []ovs.Flow {
	var nns []*networkv1.NetNamespace
	for ns, vnid := range traceVNIDs {
		nns = append(nns, &networkv1.NetNamespace{ObjectMeta: metav1.ObjectMeta{Name: ns}, NetName: ns, NetID: vnid})
	}
	flows := egressfirewall.StaticFlows(c)
	for _, d := range egressfirewall.Evaluate(egressfirewall.BuildInput([]*networkv1.EgressNetworkPolicy{traceEgressPolicy()}, nns)) {
		flows = append(flows, egressfirewall.Flows(d, nil)...)
	}
	return flows
}

var traceServices = []fxService{
	{ns: "proj1", name: "web", ip: "172.30.0.10", proto: corev1.ProtocolTCP, port: 80, target: 8080, nodePort: 30080,
		eps: []fxEndpoint{{"10.128.0.6", "node1"}}},
	{ns: "proj1", name: "sticky", ip: "172.30.0.11", proto: corev1.ProtocolTCP, port: 8080, target: 8080, affinity: 60,
		eps: []fxEndpoint{{"10.128.0.6", "node1"}}},
	{ns: "proj2", name: "db", ip: "172.30.0.20", proto: corev1.ProtocolTCP, port: 80, target: 5432,
		eps: []fxEndpoint{{"10.128.2.5", "node2"}, {"10.128.2.6", "node2"}}},
	{ns: "proj3", name: "empty", ip: "172.30.0.30", proto: corev1.ProtocolTCP, port: 80, target: 80},
	{ns: "proj2", name: "dns", ip: "172.30.0.21", proto: corev1.ProtocolUDP, port: 53, target: 5353,
		eps: []fxEndpoint{{"10.128.2.5", "node2"}, {"10.128.2.6", "node2"}}},
}

// traceConfig is the FlowConfig of a node of the scenario.
func traceConfig(self pipeline.RemoteNode) pipeline.FlowConfig {
	return pipeline.FlowConfig{Mode: clusternetwork.ModeNetworkPolicy, ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/14")},
		ServiceNetwork: netip.MustParsePrefix("172.30.0.0/16"), LocalSubnet: self.Subnet, NodeIP: self.HostIP}
}

// traceNodeFlows is everything the agent installs on one node of the scenario,
// Services aside.
func traceNodeFlows(t testing.TB, self pipeline.RemoteNode) ([]ovs.Flow, []pipeline.PodInfo) {
	c := traceConfig(self)
	flows := append(pipeline.BaseFlows(c), c.Isolation().StaticFlows(c)...)
	var pods []pipeline.PodInfo
	for _, p := range tracePods {
		if p.nodeName == self.Name {
			pi := pipeline.PodInfo{Namespace: p.ns, Name: p.name, IP: netip.MustParseAddr(p.ip), OFPort: p.ofport, VNID: traceVNIDs[p.ns]}
			pods = append(pods, pi)
			flows = append(flows, pipeline.PodFlows(c, pi)...)
		}
	}
	for _, n := range traceNodes {
		if n.Name != self.Name {
			flows = append(flows, pipeline.RemoteNodeFlows(c, n)...)
		}
	}
	owners, errs := networkpolicy.Compile(traceInput(self.Name))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	flows = append(flows, networkpolicy.Flatten(owners)...)
	flows = append(flows, traceEgressFlows(c)...)
	flows = append(flows, pipeline.VersionFlow(c))
	if err := ovs.ValidatePipeline(flows); err != nil {
		t.Fatalf("%s: %v", self.Name, err)
	}
	return flows, pods
}

// traceNodeState is everything the agent installs on one node of the scenario: the
// flows of traceNodeFlows, the service proxy's and the Services' flows and groups.
func traceNodeState(t testing.TB, self pipeline.RemoteNode) ([]ovs.Flow, []ovs.GroupEntry, []pipeline.PodInfo) {
	flows, pods := traceNodeFlows(t, self)
	c := traceConfig(self)
	svcFlows, groups := serviceState(t, c, self.Name, traceServices)
	flows = append(append(flows, pipeline.ServiceProxyFlows(c)...), svcFlows...)
	if err := ovs.ValidatePipeline(flows); err != nil {
		t.Fatalf("%s: %v", self.Name, err)
	}
	if err := ovs.ValidateGroups(groups, flows); err != nil {
		t.Fatalf("%s: %v", self.Name, err)
	}
	return flows, groups, pods
}

// startTraceNode runs a private OVS with node's br0, vxlan0, tun0 and pod ports.
func startTraceNode(t *testing.T, self pipeline.RemoteNode) *ovstest.Instance {
	in := ovstest.Start(t)
	br := in.AddBridge("br0")
	flows, groups, pods := traceNodeState(t, self)
	if err := br.ReplaceAll(context.Background(), groups, flows); err != nil {
		t.Fatal(err)
	}
	in.Vsctl("add-port", "br0", "vxlan0", "--", "set", "interface", "vxlan0", "type=vxlan",
		"options:remote_ip=flow", "options:key=flow", "ofport_request=1")
	in.Vsctl("add-port", "br0", "tun0", "--", "set", "interface", "tun0", "type=internal", "ofport_request=2")
	for _, p := range pods {
		addPodPort(t, in, "veth-"+p.Name, p)
	}
	return in
}

// traceCases are the end-to-end cases: arguments and the words the output must hold.
var traceCases = []struct {
	name string
	args []string
	want []string
}{
	{"local-allowed", []string{"proj1/client", "proj1/server", "--port", "8080"}, []string{
		"source port: ofport 3 (OVSDB port veth-client)",
		"NetworkPolicy egress: allowed by NetworkPolicy proj1/restrict-egress rule egress[0]",
		"NetworkPolicy ingress: allowed by NetworkPolicy proj1/allow-server rule ingress[0]",
		"=> delivered to pod proj1/server (ofport 4) on node1",
	}},
	{"local-isolated", []string{"proj1/client", "10.128.0.6", "--port", "9090"}, []string{
		"=> dropped in PolicyIngress(80) on node1: NetworkPolicy ingress: dropped: pod proj1/server is isolated for ingress by NetworkPolicy proj1/allow-server, and no ingress rule allows this packet",
	}},
	{"remote-conjunction", []string{"proj1/client", "proj2/db-0", "--port", "5432"}, []string{
		"NetworkPolicy egress: allowed by NetworkPolicy proj1/restrict-egress rule egress[1]",
		"=> sent through the VXLAN tunnel to node node2 (192.168.126.11) with VNID 10",
		"node2: ovs-appctl ofproto/trace br0 'in_port=1,tun_src=192.168.126.10,tun_dst=192.168.126.11,tun_id=0xa,tcp,",
		"NetworkPolicy ingress: allowed by NetworkPolicy proj2/allow-db rule ingress[0] (conjunction 2816)",
		"=> delivered to pod proj2/db-0 (ofport 3) on node2",
	}},
	{"egress-isolated", []string{"proj1/client", "proj2/db-0", "--port", "80"}, []string{
		"=> dropped in PolicyEgress(27) on node1: NetworkPolicy egress: dropped: pod proj1/client is isolated for egress by NetworkPolicy proj1/restrict-egress, and no egress rule allows this packet",
	}},
	{"remote-isolated", []string{"proj3/app", "proj2/db-1", "--port", "5433"}, []string{
		"NetworkPolicy egress: allowed: namespace proj3 has no egress NetworkPolicy (not isolated)",
		"=> dropped in PolicyIngress(80) on node2: NetworkPolicy ingress: dropped: pod proj2/db-1 is isolated for ingress by NetworkPolicy proj2/allow-db, proj2/deny-all, and no ingress rule allows this packet",
	}},
	{"not-selected", []string{"proj1/server", "proj3/app", "--protocol", "udp", "--port", "53"}, []string{
		"NetworkPolicy egress: allowed: no egress NetworkPolicy selects pod proj1/server (namespace proj1 has egress policies proj1/restrict-egress, none selecting it)",
		"NetworkPolicy ingress: allowed: namespace proj3 has no ingress NetworkPolicy (not isolated)",
		"=> delivered to pod proj3/app (ofport 5) on node1",
	}},
	{"egress-firewall-allowed", []string{"proj3/app", "203.0.113.9", "--port", "443"}, []string{
		"destination: 203.0.113.9 (outside the pod network)",
		"EgressNetworkPolicy: allowed by EgressNetworkPolicy proj3/fw egress[0]: Allow 203.0.113.0/24",
		"=> leaves the cluster network through tun0 (the node's routing and SNAT); EgressNetworkPolicy: allowed by EgressNetworkPolicy proj3/fw egress[0]",
	}},
	{"egress-firewall-denied", []string{"proj3/app", "192.0.2.7", "--protocol", "udp", "--port", "123"}, []string{
		"=> dropped in EgressFirewall(100) on node1: EgressNetworkPolicy: denied by EgressNetworkPolicy proj3/fw egress[1]: Deny 0.0.0.0/0",
	}},
	{"egress-firewall-none", []string{"proj1/server", "192.0.2.7", "--port", "80"}, []string{
		"EgressNetworkPolicy: allowed: no EgressNetworkPolicy applies to VNID 10",
		"=> leaves the cluster network through tun0",
	}},
	{"egress-firewall-node-dns", []string{"proj3/app", "192.168.126.10", "--protocol", "udp", "--port", "53"}, []string{
		"DNS to the node's own IP: never subject to EgressNetworkPolicy",
		"=> delivered to tun0",
	}},
	// Services: node1's half by sdnctl's tracer over the dumped flows and groups, the
	// endpoint's node by ofproto/trace.
	{"service-remote", []string{"proj1/client", "172.30.0.20:80", "--endpoint", "10.128.2.5"}, []string{
		"bucket 0: 10.128.2.5:5432 on node node2 (pod proj2/db-0)",
		"bucket 1: 10.128.2.6:5432 on node node2 (pod proj2/db-1)",
		"DNAT 172.30.0.20:80 -> 10.128.2.5:5432",
		"NetworkPolicy egress: allowed by NetworkPolicy proj1/restrict-egress rule egress[1]",
		"node2: ovs-appctl ofproto/trace br0 'in_port=1,tun_src=192.168.126.10,tun_dst=192.168.126.11,tun_id=0xa,tcp,dl_src=0a:58:0a:80:00:05,dl_dst=0a:58:0a:80:02:05,nw_src=10.128.0.5,nw_dst=10.128.2.5,nw_ttl=64,tcp_src=40000,tcp_dst=5432'",
		"NetworkPolicy ingress: allowed by NetworkPolicy proj2/allow-db rule ingress[0] (conjunction 2816)",
		"=> delivered to pod proj2/db-0 (ofport 3) on node2",
	}},
	{"service-local", []string{"proj1/client", "172.30.0.10"}, []string{
		"bucket 0: 10.128.0.6:8080 local (pod proj1/server)",
		"NetworkPolicy ingress: allowed by NetworkPolicy proj1/allow-server rule ingress[0]",
		"=> delivered to pod proj1/server (ofport 4) on node1",
	}},
	{"service-nodeport-remote", []string{"198.18.0.254", "192.168.126.11:30080"}, []string{
		"host:        node node2 DNATs 192.168.126.11:30080 to the node-port address 169.254.169.3:30080",
		"SNAT to 10.128.2.1",
		"=> sent through the VXLAN tunnel to node node1 (192.168.126.10) with VNID 0",
		"node1: ovs-appctl ofproto/trace br0 'in_port=1,tun_src=192.168.126.11,tun_dst=192.168.126.10,tun_id=0x0,tcp,dl_dst=0a:58:0a:80:00:06,nw_src=10.128.2.1,nw_dst=10.128.0.6,nw_ttl=64,tcp_src=40000,tcp_dst=8080'",
		// The Service's traffic policy Cluster hides the client behind node2's gateway,
		// which proj1/allow-server does not admit.
		"=> dropped in PolicyIngress(80) on node1: NetworkPolicy ingress: dropped: pod proj1/server is isolated for ingress by NetworkPolicy proj1/allow-server",
	}},
}

// TestTraceOVS runs `sdnctl trace` against two private OVS bridges loaded with the
// agent's and the compiler's flows, with the API faked. With -update it stores the raw
// ofproto/trace outputs in testdata/trace for the parser tests.
func TestTraceOVS(t *testing.T) {
	in1, in2 := startTraceNode(t, traceNodes[0]), startTraceNode(t, traceNodes[1])
	flags := []string{"--local-node", "none", "--ovs-rundir", "node1=" + in1.Dir, "--ovs-rundir", "node2=" + in2.Dir}
	for _, tc := range traceCases {
		t.Run(tc.name, func(t *testing.T) {
			if testutil.Update() {
				traceCapture = func(nodeName, _, out string) {
					path := filepath.Join("testdata", "trace", tc.name+"-"+nodeName+".txt")
					if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
						t.Error(err)
					}
				}
				defer func() { traceCapture = nil }()
			}
			got := runTrace(t, append(tc.args, flags...)...)
			if got.code != ExitOK {
				t.Fatalf("exit %d: %s\n%s", got.code, got.stderr, got.stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(got.stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, got.stdout)
				}
			}
		})
	}

	// Without node2's OVS the second half is skipped with the command to run there; run
	// "there" (node2's OVS only), the destination half is traced alone.
	got := runTrace(t, "proj1/client", "proj2/db-0", "--port", "5432", "--local-node", "none", "--ovs-rundir", "node1="+in1.Dir)
	if got.code != ExitOK || !strings.Contains(got.stdout, "node2: not traced: sdnctl cannot reach this node's OVS. Run on node node2:\n  sdnctl trace proj1/client proj2/db-0 --protocol tcp --port 5432") {
		t.Errorf("node2 unreachable: exit %d\n%s%s", got.code, got.stdout, got.stderr)
	}
	got = runTrace(t, "proj1/client", "proj2/db-0", "--port", "5432", "--local-node", "none", "--ovs-rundir", "node2="+in2.Dir)
	if got.code != ExitOK || !strings.Contains(got.stdout, "node1: not traced") ||
		!strings.Contains(got.stdout, "rule ingress[0] (conjunction 2816)") {
		t.Errorf("node1 unreachable: exit %d\n%s%s", got.code, got.stdout, got.stderr)
	}

	// A Service whose entry node is out of reach: with --endpoint, the endpoint's node
	// traces the connection after DNAT (sdnctl run there).
	got = runTrace(t, "proj1/client", "172.30.0.20:80", "--endpoint", "10.128.2.6", "--local-node", "none", "--ovs-rundir", "node2="+in2.Dir)
	for _, w := range []string{
		"node1: not traced: sdnctl cannot reach this node's OVS. Run on node node1:\n  sdnctl trace proj1/client 172.30.0.20:80 --protocol tcp\n",
		"node2: the packet after DNAT to 10.128.2.6:5432 (its port from the API), arriving from node node1",
		"=> delivered to pod proj2/db-1 (ofport 4) on node2",
	} {
		if got.code != ExitOK || !strings.Contains(got.stdout, w) {
			t.Errorf("service, node1 unreachable: exit %d, output lacks %q:\n%s%s", got.code, w, got.stdout, got.stderr)
		}
	}

	// Sockets named one by one: the ofport comes from the PodAntiSpoof flows when OVSDB
	// is not given.
	got = runTrace(t, "proj1/client", "proj1/server", "--port", "8080", "--local-node", "none",
		"--appctl-target", "node1="+filepath.Join(in1.Dir, "ovs-vswitchd.ctl"), "--node-target", "node1="+in1.Target("br0"))
	if got.code != ExitOK || !strings.Contains(got.stdout, "source port: ofport 3 (PodAntiSpoof flow of 10.128.0.5)") ||
		!strings.Contains(got.stdout, "=> delivered to pod proj1/server (ofport 4) on node1") {
		t.Errorf("--appctl-target/--node-target: exit %d\n%s%s", got.code, got.stdout, got.stderr)
	}
}

func runTrace(t *testing.T, args ...string) runResult {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), append([]string{"trace"}, args...), Options{Out: &out, ErrOut: &errOut, Clients: traceClients()})
	return runResult{stdout: out.String(), stderr: errOut.String(), code: code}
}

// TestTraceErrors: usage and resolution errors, before any OVS is touched.
func TestTraceErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"proj1/client"}, "error: accepts 2 arg(s), received 1\n"},
		{[]string{"proj1/client", "proj1/server", "--protocol", "icmp"}, "error: --protocol must be tcp, udp or sctp, got \"icmp\"\nSee 'sdnctl trace -h' for help and examples\n"},
		{[]string{"proj1/nope", "proj1/server"}, "error: pod proj1/nope not found\n"},
		{[]string{"client", "proj1/server"}, "error: \"client\" is neither NAMESPACE/POD nor an IP address\n"},
		{[]string{"8.8.8.8", "1.1.1.1"}, "error: neither 8.8.8.8 nor 1.1.1.1 is a pod: one end must be a pod\n"},
	} {
		got := runTrace(t, append(tc.args, "--local-node", "none")...)
		if got.code != ExitFailure || got.stderr != tc.want {
			t.Errorf("sdnctl trace %v: exit %d, stderr %q, want %q", tc.args, got.code, got.stderr, tc.want)
		}
	}
	// A node nobody can reach: both halves are skipped with instructions, exit 0.
	got := runTrace(t, "proj1/client", "proj2/db-0", "--port", "5432", "--local-node", "none")
	if got.code != ExitOK || !strings.Contains(got.stdout, "node1: not traced") || !strings.Contains(got.stdout, "node2: not traced") {
		t.Errorf("nothing reachable: exit %d\n%s%s", got.code, got.stdout, got.stderr)
	}
}

// TestTraceParseCaptured parses the ofproto/trace outputs of real OVS 3.1 bridges stored
// by TestTraceOVS -update: path, policy flow, verdict, conntrack passes.
func TestTraceParseCaptured(t *testing.T) {
	ingress, egress := ovs.TablePolicyIngress, ovs.TablePolicyEgress
	for _, tc := range []struct {
		file     string
		verdict  string
		policy   ovs.Table
		priority uint16
		match    string
		drop     bool
	}{
		{"local-allowed-node1", "Output(4)", ingress, 195, "tcp,reg1=0xa,reg3=0xa800006,nw_src=10.128.0.5,tp_dst=8080", false},
		{"local-isolated-node1", "Drop(PolicyIngress(80))", ingress, 60, "reg1=0xa", true},
		{"remote-conjunction-node1", "Tunnel(192.168.126.11, 0xa)", egress, 195, "tcp,reg0=0xa,nw_src=10.128.0.5,nw_dst=10.128.2.0/23,tp_dst=5432", false},
		{"remote-conjunction-node2", "Output(3)", ingress, 190, "conj_id=2816,reg1=0xb", false},
		{"egress-isolated-node1", "Drop(PolicyEgress(27))", egress, 60, "reg0=0xa", true},
		{"remote-isolated-node2", "Drop(PolicyIngress(80))", ingress, 60, "reg1=0xb", true},
		{"not-selected-node1", "Output(5)", ingress, 60, "reg1=0xc", false},
		// The halves of Service traces after their entry node: the packet as DNATed (and
		// SNATed to node2's gateway for the node port) arriving through the tunnel.
		{"service-remote-node2", "Output(3)", ingress, 190, "conj_id=2816,reg1=0xb", false},
		{"service-nodeport-remote-node1", "Drop(PolicyIngress(80))", ingress, 60, "reg1=0xa", true},
		// sdn-lab (userspace datapath): the native tunnel goes out through br-phy and
		// ofproto/trace follows it into br-phy's NORMAL rule, which is not br0's pipeline.
		{"native-tunnel-br-phy-node1", "Tunnel(198.18.0.12, 0x65adc1)", egress, 60, "reg0=0x65adc1", false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join("testdata", "trace", tc.file+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			tr, err := parseOFTrace(string(text))
			if err != nil {
				t.Fatal(err)
			}
			if got := tr.Verdict.String(); got != tc.verdict {
				t.Errorf("verdict %s, want %s", got, tc.verdict)
			}
			if last := tr.Steps[len(tr.Steps)-1]; last.Table != tr.Verdict.Table {
				t.Errorf("last step in %s, but the verdict is in %s: steps %+v", last.Table.Named(), tr.Verdict.Table.Named(), tr.Steps)
			}
			if tr.Steps[0].Table != ovs.TableClassifier || tr.Steps[0].Priority != 1000 || tr.Steps[0].Pass != 0 {
				t.Errorf("first step %+v, want the classifier's ct()", tr.Steps[0])
			}
			// ct(table=0) recirculates; so does ConntrackCommit's ct(commit,table=31) for a
			// packet leaving the node through the tunnel. A packet delivered on its node is
			// committed after ingress policy (IngressCommit, ct(commit) without recirculation).
			wantPass := 1
			if strings.HasPrefix(tc.verdict, "Tunnel(") {
				wantPass = 2
			}
			if last := tr.Steps[len(tr.Steps)-1]; last.Pass != wantPass {
				t.Errorf("last step in pass %d, want %d", last.Pass, wantPass)
			}
			var found bool
			for _, s := range tr.Steps {
				if s.Table != tc.policy {
					continue
				}
				found = true
				if s.Priority != tc.priority || s.Match != tc.match || !s.FlowOK || s.Flow.IsDrop() != tc.drop {
					t.Errorf("policy step %+v, want priority %d match %q drop %v", s, tc.priority, tc.match, tc.drop)
				}
				if s.Cookie&ovs.OwnerMask == 0 || ovs.CookieCategoryOf(s.Cookie) != ovs.CookiePolicy {
					t.Errorf("policy step cookie %#x is not a policy cookie", s.Cookie)
				}
			}
			if !found {
				t.Errorf("no step in %s", tc.policy.Named())
			}
			for _, s := range tr.Steps {
				if strings.HasPrefix(strings.Join(s.Actions, ","), "ct(") && slices.Contains(s.displayActions(), "drop") {
					t.Errorf("ct() step shows OVS's drop: %v", s.displayActions())
				}
			}
		})
	}
	if _, err := parseOFTrace("ovs-appctl: cannot connect to \"/x.ctl\" (No such file or directory)\n"); err == nil {
		t.Error("an appctl error parsed as a trace")
	}
}

// TestTraceParseCapturedEgress parses the captured traces to addresses outside the cluster
// network: the table-100 step right after EgressPrelim, and the verdict.
func TestTraceParseCapturedEgress(t *testing.T) {
	for _, tc := range []struct {
		file     string
		verdict  string
		priority uint16
		match    string
	}{
		{"egress-firewall-allowed-node1", "Output(2)", 2, "ip,reg0=0xc,nw_dst=203.0.113.0/24"},
		{"egress-firewall-denied-node1", "Drop(EgressFirewall(100))", 1, "ip,reg0=0xc"},
		{"egress-firewall-none-node1", "Output(2)", 0, ""},
	} {
		text, err := os.ReadFile(filepath.Join("testdata", "trace", tc.file+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		tr, err := parseOFTrace(string(text))
		if err != nil {
			t.Fatal(err)
		}
		if got := tr.Verdict.String(); got != tc.verdict {
			t.Errorf("%s: verdict %s, want %s", tc.file, got, tc.verdict)
		}
		i := slices.IndexFunc(tr.Steps, func(s traceStep) bool { return s.Table == ovs.TableEgressFirewall })
		if i < 0 {
			t.Fatalf("%s: no step in EgressFirewall(100): %+v", tc.file, tr.Steps)
		}
		s := tr.Steps[i]
		if s.Priority != tc.priority || s.Match != tc.match || !s.FlowOK || s.Pass != tr.Steps[i-1].Pass || tr.Steps[i-1].Table != ovs.TableEgressPrelim {
			t.Errorf("%s: table-100 step %+v (after %s), want priority %d match %q right after EgressPrelim", tc.file, s, tr.Steps[i-1].Table.Named(), tc.priority, tc.match)
		}
	}
}
