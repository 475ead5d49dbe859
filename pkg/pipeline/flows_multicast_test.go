package pipeline_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

var group = mustAddr("239.1.1.1")

// multicastCase is one datagram and every output it must produce, in
// order: tunnels (sorted by node address), then local pod ports (sorted).
type multicastCase struct {
	name   string
	packet ovs.Packet
	want   []string // nil: no output at all
	dropIn ovs.Table
}

func runMulticastCases(t *testing.T, flows []ovs.Flow, cases []multicastCase) {
	t.Helper()
	if err := ovs.ValidatePipeline(flows); err != nil {
		t.Fatalf("pipeline does not validate: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ovs.TraceFlows(flows, tc.packet)
			if err != nil {
				t.Fatalf("trace: %v\n%s", err, tr)
			}
			var got []string
			for _, o := range tr.Outputs {
				got = append(got, o.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("outputs %v, want %v; trace:\n%s", got, tc.want, tr)
			}
			if tc.want == nil && tr.Verdict.String() != dropIn(tc.dropIn) {
				t.Errorf("verdict %s, want %s", tr.Verdict, dropIn(tc.dropIn))
			}
		})
	}
}

// mcastFromPod is a UDP datagram from a local pod to the group.
func mcastFromPod(p pipeline.PodInfo, port uint16) ovs.Packet {
	return fromPod(p, group, ovs.ProtoUDP, port)
}

// mcastFromTunnel is a UDP datagram to the group from a pod at src on the
// node tunSrc, VXLAN key vnid.
func mcastFromTunnel(tunSrc, src netip.Addr, vnid uint32, port uint16) ovs.Packet {
	return ovs.Packet{InPort: pipeline.OFPortVXLAN, Proto: ovs.ProtoUDP, Src: src, Dst: group, TpDst: port, TunSrc: tunSrc, TunID: uint64(vnid)}
}

// TestTraceMulticastMultitenant: web and db share VNID 10 (like joined
// projects), blog has VNID 11 (not enabled), router VNID 0 (enabled).
func TestTraceMulticastMultitenant(t *testing.T) {
	s := scenarioNamed("multitenant") // web 3, db 4 (VNID 10); blog 5 (11); router 6 (0); node-b
	tunB := tunnel(nodeB.HostIP, 10)
	runMulticastCases(t, s.flows(), []multicastCase{
		{name: "VNID 10 sender: remote nodes and the other pod of its VNID, not itself",
			packet: mcastFromPod(podWeb, 5000), want: []string{tunB, output(podDB.OFPort)}},
		{name: "the other sender of VNID 10",
			packet: mcastFromPod(podDB, 5000), want: []string{tunB, output(podWeb.OFPort)}},
		{name: "VNID 11 is not enabled: dropped at the sender",
			packet: mcastFromPod(podBlog, 5000), dropIn: ovs.TableMulticastFromLocal},
		{name: "VNID 0 enabled: to the remote nodes; no other local pod of VNID 0",
			packet: mcastFromPod(podRouter, 5000), want: []string{tunnel(nodeB.HostIP, 0)}},
		{name: "from node-b, VNID 10: every local pod of VNID 10",
			packet: mcastFromTunnel(nodeB.HostIP, remoteOnB, 10, 5000), want: []string{output(podWeb.OFPort), output(podDB.OFPort)}},
		{name: "from node-b, VNID 0: the router",
			packet: mcastFromTunnel(nodeB.HostIP, remoteOnB, 0, 5000), want: []string{output(podRouter.OFPort)}},
		{name: "from node-b, VNID 11 (not enabled here): dropped",
			packet: mcastFromTunnel(nodeB.HostIP, remoteOnB, 11, 5000), dropIn: ovs.TableMulticastToLocal},
		{name: "from an unknown node: dropped",
			packet: mcastFromTunnel(fxUnknownNode, remoteOnB, 10, 5000), dropIn: ovs.TableVXLANIngress},
		{name: "from the host: dropped",
			packet: ovs.Packet{InPort: pipeline.OFPortTun0, Proto: ovs.ProtoUDP, Src: fxGateway, Dst: group, TpDst: 5000}, dropIn: ovs.TableClassifier},
	})
}

// TestTraceMulticastNoRemoteNodes: with no remote node the replication flow
// only continues to local delivery.
func TestTraceMulticastNoRemoteNodes(t *testing.T) {
	s := scenarioNamed("multitenant")
	s.nodes = nil
	runMulticastCases(t, s.flows(), []multicastCase{
		{name: "local only", packet: mcastFromPod(podWeb, 5000), want: []string{output(podDB.OFPort)}},
	})
}

// The networkpolicy multicast scenario: namespace shop (VNID 10) has web
// (port 3), db (port 4) and cache (port 7) here, web-b on node-b and other
// on node-c; blog (VNID 11) has a pod here too.
var (
	podCache   = fxPod("shop", "cache", "10.128.0.7", 7, 10)
	shopLabels = map[string]string{"shop/web": "web", "shop/db": "db", "shop/cache": "cache", "shop/web-b": "web", "shop/other": "other", "blog/blog": "blog"}
)

func npMulticastFlows(policies ...*networkingv1.NetworkPolicy) []ovs.Flow {
	s := fxScenario{name: "np-multicast", cfg: fxConfig(clusternetwork.ModeNetworkPolicy),
		pods: []pipeline.PodInfo{podWeb, podDB, podCache, podBlog}, nodes: []pipeline.RemoteNode{nodeB, nodeC}, multicast: []uint32{10}}
	in := networkpolicy.Input{
		Namespaces: []networkpolicy.Namespace{{Name: "shop", VNID: 10}, {Name: "blog", VNID: 11}},
		Pods: []networkpolicy.Pod{
			{Namespace: "shop", Name: "web-b", IP: remoteOnB}, {Namespace: "shop", Name: "other", IP: remoteOnC},
		},
		Policies: policies,
	}
	for _, p := range s.pods {
		in.Pods = append(in.Pods, networkpolicy.Pod{Namespace: p.Namespace, Name: p.Name, IP: p.IP, Local: true})
	}
	for i := range in.Pods {
		p := &in.Pods[i]
		p.Labels = map[string]string{"app": shopLabels[p.Namespace+"/"+p.Name]}
	}
	owners, errs := networkpolicy.Compile(in)
	if len(errs) > 0 {
		panic(errs[0])
	}
	// Everything the agent installs, with the compiled policy instead of
	// the scenario's policy-free compilation.
	iso := s.cfg.Isolation()
	flows := append(pipeline.BaseFlows(s.cfg), iso.StaticFlows(s.cfg)...)
	for _, p := range s.pods {
		flows = append(flows, pipeline.PodFlows(s.cfg, p)...)
	}
	for _, n := range s.nodes {
		flows = append(flows, pipeline.RemoteNodeFlows(s.cfg, n)...)
	}
	flows = append(flows, s.multicastFlows()...)
	flows = append(flows, networkpolicy.Flatten(owners)...)
	return append(flows, pipeline.VersionFlow(s.cfg))
}

// dbFromWebUDP5000 isolates db for ingress and allows UDP 5000 from the
// pods labelled app=web of its namespace.
func dbFromWebUDP5000() *networkingv1.NetworkPolicy {
	udp, port := corev1.ProtocolUDP, intstr.FromInt32(5000)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-from-web"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &port}},
			}},
		},
	}
}

// TestTraceMulticastNetworkPolicyIngress: a pod isolated for ingress
// receives multicast only from the senders (and on the ports) its policies
// allow; pods no policy selects receive from every sender of the VNID.
func TestTraceMulticastNetworkPolicyIngress(t *testing.T) {
	tunB, tunC := tunnel(nodeB.HostIP, 10), tunnel(nodeC.HostIP, 10)
	web, db, cache := output(podWeb.OFPort), output(podDB.OFPort), output(podCache.OFPort)
	runMulticastCases(t, npMulticastFlows(dbFromWebUDP5000()), []multicastCase{
		{name: "web → udp/5000: db allows it, cache is not isolated",
			packet: mcastFromPod(podWeb, 5000), want: []string{tunB, tunC, db, cache}},
		{name: "cache → udp/5000: db does not allow cache",
			packet: mcastFromPod(podCache, 5000), want: []string{tunB, tunC, web}},
		{name: "web → udp/6000: db allows only 5000",
			packet: mcastFromPod(podWeb, 6000), want: []string{tunB, tunC, cache}},
		{name: "remote web-b → udp/5000: allowed into db",
			packet: mcastFromTunnel(nodeB.HostIP, remoteOnB, 10, 5000), want: []string{web, db, cache}},
		{name: "remote other → udp/5000: not into db",
			packet: mcastFromTunnel(nodeC.HostIP, remoteOnC, 10, 5000), want: []string{web, cache}},
		{name: "blog's VNID is not enabled",
			packet: mcastFromPod(podBlog, 5000), dropIn: ovs.TableMulticastFromLocal},
	})
	// Unicast meets the same decision through reg3 (loaded in LocalPod).
	runPacketFlowTests(t, npMulticastFlows(dbFromWebUDP5000()), []packetFlowTest{
		{name: "unicast web → db udp/5000", packet: fromPod(podWeb, podDB.IP, ovs.ProtoUDP, 5000), want: db,
			regs: map[ovs.RegField]uint32{ovs.DstPodIPField: ovs.IPv4Value(podDB.IP)}},
		{name: "unicast cache → db udp/5000", packet: fromPod(podCache, podDB.IP, ovs.ProtoUDP, 5000), want: dropIn(ovs.TablePolicyIngress)},
	})
}

// TestTraceMulticastNetworkPolicyEgress: the sender's egress policy applies
// too (table 27 comes before 110): the group is an IP destination, so an
// egress-isolated pod sends multicast only to groups an ipBlock allows.
func TestTraceMulticastNetworkPolicyEgress(t *testing.T) {
	isolate := func(to ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cache-egress"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "cache"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			}}
		if len(to) > 0 {
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: to}}
		}
		return np
	}
	tunB, tunC := tunnel(nodeB.HostIP, 10), tunnel(nodeC.HostIP, 10)
	runMulticastCases(t, npMulticastFlows(isolate()), []multicastCase{
		{name: "egress-isolated sender: dropped before 110", packet: mcastFromPod(podCache, 5000), dropIn: ovs.TablePolicyEgress},
		{name: "another sender is not affected", packet: mcastFromPod(podWeb, 5000),
			want: []string{tunB, tunC, output(podDB.OFPort), output(podCache.OFPort)}},
	})
	groups := networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "239.0.0.0/8"}}
	runMulticastCases(t, npMulticastFlows(isolate(groups)), []multicastCase{
		{name: "egress to 239.0.0.0/8 allowed", packet: mcastFromPod(podCache, 5000),
			want: []string{tunB, tunC, output(podWeb.OFPort), output(podDB.OFPort)}},
	})
}

func TestMulticastVNIDFlows(t *testing.T) {
	c := fxConfig(clusternetwork.ModeMultitenant)
	if got := pipeline.MulticastVNIDFlows(c, 12, nil); len(got) != 1 || got[0].Table != ovs.TableMulticastFromLocal {
		t.Errorf("without local pods: %v, want the table-110 admission only", got)
	}
	flows := pipeline.MulticastVNIDFlows(c, 10, []pipeline.PodInfo{podDB, podWeb})
	if len(flows) != 2 {
		t.Fatalf("flows = %v", flows)
	}
	want := "actions=load:0xa->NXM_NX_REG1[],load:0x3->NXM_NX_REG2[],load:0xa800002->NXM_NX_REG3[],resubmit(,80)," +
		"load:0x4->NXM_NX_REG2[],load:0xa800003->NXM_NX_REG3[],resubmit(,80)"
	if got := flows[1].String(); !strings.HasSuffix(got, want) || !strings.Contains(got, "table=120,") || !strings.Contains(got, "reg0=0xa") {
		t.Errorf("table 120 flow = %s, want receivers in port order: …%s", got, want)
	}
	m := ovs.MatchOwner(ovs.CookieMulticast, "multicast/vnid/10")
	for _, f := range flows {
		if !m.Matches(f.Cookie) {
			t.Errorf("flow %s: cookie %#x, want owner multicast/vnid/10", f, f.Cookie)
		}
	}
	if a, b := pipeline.MulticastVNIDOwner(10).Cookie(), pipeline.MulticastVNIDOwner(11).Cookie(); a == b {
		t.Error("two VNIDs share a cookie")
	}
	if got := pipeline.MulticastVNIDOwner(10).Display(); got != "multicast vnid 10" {
		t.Errorf("Display = %q", got)
	}
}
