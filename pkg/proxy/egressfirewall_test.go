package proxy

import (
	"net/netip"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// fwBridge is rxBridge with shop (VNID 10) under an EgressNetworkPolicy of
// the given rules, as the agent's egress-firewall feature installs it.
func fwBridge(t *testing.T, rules []networkv1.EgressNetworkPolicyRule, ports ...ServicePort) ([]ovs.Flow, []ovs.GroupEntry) {
	t.Helper()
	flows, groups := rxBridge(ports...)
	enp := &networkv1.EgressNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "fw"},
		Spec: networkv1.EgressNetworkPolicySpec{Egress: rules}}
	nn := &networkv1.NetNamespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}, NetName: "shop", NetID: rxClient.VNID}
	flows = append(flows, egressfirewall.StaticFlows(rxCfg)...)
	for _, d := range egressfirewall.Evaluate(egressfirewall.BuildInput([]*networkv1.EgressNetworkPolicy{enp}, []*networkv1.NetNamespace{nn})) {
		flows = append(flows, egressfirewall.Flows(d, nil)...)
	}
	return flows, groups
}

func denyAll() []networkv1.EgressNetworkPolicyRule {
	return []networkv1.EgressNetworkPolicyRule{{Type: networkv1.EgressNetworkPolicyRuleDeny,
		To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: "0.0.0.0/0"}}}
}

// TestTraceServicesSkipEgressFirewall: with Deny 0.0.0.0/0 on shop, its
// pods still reach the ClusterIP (both endpoints), NodePorts still reach
// and answer, a VIP without endpoints still goes to the host: traffic to
// the service network never enters EgressFirewall (100).
func TestTraceServicesSkipEgressFirewall(t *testing.T) {
	empty := rxWeb()
	empty.Name, empty.ID, empty.ClusterIP, empty.Endpoints = "empty", 0x100009, netip.MustParseAddr("172.30.0.99"), nil
	flows, groups := fwBridge(t, denyAll(), rxWeb(), empty)
	nodePortReply := tcp(rxLocal.OFPort, rxLocal.IP, rxTarget, rxGateway, 50000)
	nodePortReply.CtReply, nodePortReply.CtMark = true, 1|2
	nodePortReply.CtDNAT = ovs.NATBinding{From: netip.AddrPortFrom(pipeline.NodePortVIP, 30080), To: netip.AddrPortFrom(rxLocal.IP, rxTarget)}
	nodePortReply.CtSNAT = ovs.NATBinding{From: netip.AddrPortFrom(rxOutside, 50000), To: netip.AddrPortFrom(rxGateway, 50000), Zone: ovs.SNATZone}
	local, remote := tcp(rxClient.OFPort, rxClient.IP, 40000, rxVIP, 80), tcp(rxClient.OFPort, rxClient.IP, 40000, rxVIP, 80)
	remote.Bucket = 1
	for _, tc := range []struct {
		name string
		p    ovs.Packet
		want string
	}{
		{"ClusterIP, local endpoint", local, "Output(4)"},
		{"ClusterIP, remote endpoint", remote, "Tunnel(192.168.126.11, 0xa)"},
		{"ClusterIP without endpoints: to the host", tcp(rxClient.OFPort, rxClient.IP, 40000, empty.ClusterIP, 80), "Output(2)"},
		{"NodePort from outside", tcp(pipeline.OFPortTun0, rxOutside, 50000, pipeline.NodePortVIP, 30080), "Output(4)"},
		{"NodePort reply", nodePortReply, "Output(2)"},
	} {
		tr := trace(t, flows, groups, tc.p)
		if tr.Verdict.String() != tc.want || slices.Contains(tr.Tables, ovs.TableEgressFirewall) {
			t.Errorf("%s: %s, want %s without EgressFirewall\n%s", tc.name, tr.Verdict, tc.want, tr)
		}
	}
	// The control: shop's own traffic to the outside is denied.
	if tr := trace(t, flows, groups, tcp(rxClient.OFPort, rxClient.IP, 40000, rxOutside, 80)); tr.Verdict.Kind != ovs.VerdictDrop || tr.Verdict.Table != ovs.TableEgressFirewall {
		t.Errorf("shop → outside: %s, want a drop in EgressFirewall\n%s", tr.Verdict, tr)
	}
}

// TestTraceServiceExternalEndpoint: a Service whose endpoint is outside the
// cluster network is DNATed in ServiceLB, so the egress firewall judges the
// endpoint's address: denied with Deny 0.0.0.0/0, allowed when a rule
// allows it. A Service cannot carry a pod past its firewall.
func TestTraceServiceExternalEndpoint(t *testing.T) {
	ext := rxWeb()
	ext.Name, ext.ID, ext.NodePort, ext.Endpoints = "ext", 0x10000a, 0, []Endpoint{{IP: rxOutside, Port: rxTarget}}
	p := tcp(rxClient.OFPort, rxClient.IP, 40000, rxVIP, 80)
	flows, groups := fwBridge(t, denyAll(), ext)
	if tr := trace(t, flows, groups, p); tr.Verdict.Kind != ovs.VerdictDrop || tr.Verdict.Table != ovs.TableEgressFirewall {
		t.Errorf("deny all: %s, want a drop in EgressFirewall\n%s", tr.Verdict, tr)
	}
	allow := append([]networkv1.EgressNetworkPolicyRule{{Type: networkv1.EgressNetworkPolicyRuleAllow,
		To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: rxOutside.String() + "/32"}}}, denyAll()...)
	flows, groups = fwBridge(t, allow, ext)
	tr := trace(t, flows, groups, p)
	if tr.Verdict.String() != "Output(2)" || tr.OutputPackets[0].Dst != rxOutside || !slices.Contains(tr.Tables, ovs.TableEgressFirewall) {
		t.Errorf("allowed endpoint: %s, want Output(2) to %s through EgressFirewall\n%s", tr.Verdict, rxOutside, tr)
	}
}
