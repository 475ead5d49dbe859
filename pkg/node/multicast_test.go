package node

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// mcModel is the test's own description of the multicast inputs of node1
// (multitenant): it feeds the fakes and is the oracle of the flows.
type mcModel struct {
	netids map[string]uint32 // namespace → VNID
	on     map[string]bool   // namespace → annotation "true"
	pods   map[string]mcPod  // present local pods by name
	node3  bool              // HostSubnet node3 exists
}

type mcPod struct {
	ns, ip string
	port   int
}

// mcPods are the pods the model can run on node1.
var mcPods = map[string]mcPod{
	"a": {"ns1", "10.128.0.2", 3}, "b": {"ns2", "10.128.0.3", 4},
	"c": {"ns3", "10.128.0.4", 5}, "d": {"ns1", "10.128.0.5", 6},
}

var node3 = pipeline.RemoteNode{Name: "node3", UID: "uid-node3", HostIP: netip.MustParseAddr("10.0.0.3"), Subnet: netip.MustParsePrefix("10.128.4.0/23")}

func newMCModel() *mcModel {
	return &mcModel{netids: map[string]uint32{"ns1": 11, "ns2": 12, "ns3": 13}, on: map[string]bool{},
		pods: map[string]mcPod{"a": mcPods["a"], "b": mcPods["b"], "c": mcPods["c"]}}
}

func (m *mcModel) podInfos() []pipeline.PodInfo {
	var out []pipeline.PodInfo
	for _, name := range slices.Sorted(maps.Keys(m.pods)) {
		p := m.pods[name]
		out = append(out, pipeline.PodInfo{Namespace: p.ns, Name: name, IP: netip.MustParseAddr(p.ip), OFPort: uint32(p.port), VNID: m.netids[p.ns]})
	}
	return out
}

func (m *mcModel) nodes() []pipeline.RemoteNode {
	if m.node3 {
		return []pipeline.RemoteNode{node2, node3}
	}
	return []pipeline.RemoteNode{node2}
}

// enabled is reference §5.3: a VNID is on when every namespace holding it
// has the annotation.
func (m *mcModel) enabled() []uint32 {
	all := map[uint32]bool{}
	for ns, id := range m.netids {
		if _, seen := all[id]; !seen {
			all[id] = true
		}
		all[id] = all[id] && m.on[ns]
	}
	var out []uint32
	for id, on := range all {
		if on {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// flows is everything node1 must hold.
func (m *mcModel) flows() []ovs.Flow {
	pods := m.podInfos()
	flows := expectedFlows(m.nodes(), pods)
	for _, id := range m.enabled() {
		var receivers []pipeline.PodInfo
		for _, p := range pods {
			if p.VNID == id {
				receivers = append(receivers, p)
			}
		}
		flows = append(flows, pipeline.MulticastVNIDFlows(fc1, id, receivers)...)
	}
	return flows
}

func (m *mcModel) ports() []SwitchPort {
	var out []SwitchPort
	for _, name := range slices.Sorted(maps.Keys(m.pods)) {
		p := m.pods[name]
		out = append(out, podPort(p.ns, name, p.ip, p.port))
	}
	return out
}

func mcNetNamespace(name string, id uint32, on bool) *networkv1.NetNamespace {
	nn := netNamespace(name, id)
	if on {
		nn.Annotations = map[string]string{networkv1.MulticastEnabledAnnotation: "true"}
	}
	return nn
}

// mcEnv is a multitenant agent on node1 driven by an mcModel.
type mcEnv struct {
	*agentEnv
	m *mcModel
}

func newMCEnv(t *testing.T, m *mcModel) *mcEnv {
	objs := []runtime.Object{testClusterNetwork(), hostSubnet("node1", "10.0.0.1", "10.128.0.0/23"), hostSubnet("node2", "10.0.0.2", "10.128.2.0/23")}
	for ns, id := range m.netids {
		objs = append(objs, mcNetNamespace(ns, id, m.on[ns]))
	}
	e := newAgentEnv(t, ovs.NewFakeBridge(), newFakeSwitch(m.ports()...), objs...)
	e.start()
	me := &mcEnv{agentEnv: e, m: m}
	me.check("start")
	return me
}

// check waits until the bridge holds the model's flows and the metric
// counts its enabled VNIDs.
func (e *mcEnv) check(what string) {
	e.t.Helper()
	e.expect(what, e.m.flows())
	e.eventually(what+": metric", func() string {
		got, want := testutil.ToFloat64(e.agent.m.multicastVNIDs), float64(len(e.m.enabled()))
		if got != want {
			return fmt.Sprintf("ovs_sdn_multicast_enabled_vnids = %v, want %v", got, want)
		}
		return ""
	})
}

func (e *mcEnv) setNetNamespace(ns string, id uint32, on bool) {
	e.t.Helper()
	e.m.netids[ns], e.m.on[ns] = id, on
	if _, err := e.client.NetworkV1().NetNamespaces().Update(context.Background(), mcNetNamespace(ns, id, on), metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *mcEnv) setPod(name string, present bool) {
	if present {
		e.m.pods[name] = mcPods[name]
	} else {
		delete(e.m.pods, name)
	}
	e.sw.setPorts(e.m.ports()...)
}

func (e *mcEnv) setNode3(present bool) {
	e.t.Helper()
	ctx := context.Background()
	var err error
	switch {
	case present && !e.m.node3:
		_, err = e.client.NetworkV1().HostSubnets().Create(ctx, hostSubnet("node3", "10.0.0.3", "10.128.4.0/23"), metav1.CreateOptions{})
	case !present && e.m.node3:
		err = e.client.NetworkV1().HostSubnets().Delete(ctx, "node3", metav1.DeleteOptions{})
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.m.node3 = present
}

// TestMulticastFollowsTheAnnotation walks the cases of SPEC §4.8 one by one.
func TestMulticastFollowsTheAnnotation(t *testing.T) {
	e := newMCEnv(t, newMCModel())
	e.setNetNamespace("ns1", 11, true)
	e.check("ns1 enabled: VNID 11 admitted, delivered to a")
	e.setPod("d", true)
	e.check("pod d of ns1 added: a receiver more")
	e.setNetNamespace("ns2", 11, false)
	e.check("ns2 joined VNID 11 without the annotation: VNID 11 off for both")
	e.setNetNamespace("ns2", 11, true)
	e.check("ns2 annotated too: VNID 11 on, receivers a, b, d")
	e.setNode3(true)
	e.check("node3 added: replicated to it")
	e.setNetNamespace("ns2", 12, true)
	e.check("ns2 isolated again: VNIDs 11 and 12 on")
	e.setPod("b", false)
	e.check("pod b gone: VNID 12 admitted, no receiver here")
	e.setNode3(false)
	e.setNetNamespace("ns1", 11, false)
	e.check("ns1 disabled, node3 gone: nothing of VNID 11, no stale replication")
	e.setNetNamespace("ns3", 0, true)
	e.check("ns3 global (VNID 0) and annotated: VNID 0 on")
}

// TestMulticastRandomWalk applies random changes and compares the bridge
// with the model after each (STYLE L11: works from empty, and on update).
func TestMulticastRandomWalk(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	e := newMCEnv(t, newMCModel())
	namespaces := []string{"ns1", "ns2", "ns3"}
	vnids := []uint32{0, 11, 12, 13}
	for i := range 40 {
		var what string
		switch r.IntN(4) {
		case 0:
			ns := namespaces[r.IntN(3)]
			e.setNetNamespace(ns, e.m.netids[ns], !e.m.on[ns])
			what = fmt.Sprintf("toggle the annotation of %s", ns)
		case 1:
			ns, id := namespaces[r.IntN(3)], vnids[r.IntN(4)]
			e.setNetNamespace(ns, id, e.m.on[ns])
			what = fmt.Sprintf("%s to VNID %d", ns, id)
		case 2:
			name := slices.Sorted(maps.Keys(mcPods))[r.IntN(len(mcPods))]
			_, present := e.m.pods[name]
			e.setPod(name, !present)
			what = fmt.Sprintf("pod %s present=%v", name, !present)
		default:
			e.setNode3(!e.m.node3)
			what = fmt.Sprintf("node3 present=%v", e.m.node3)
		}
		e.check(fmt.Sprintf("step %d (seed %d): %s", i, seed, what))
	}
	if got := testutil.CollectAndCount(e.agent.m.realization); got == 0 {
		t.Error("no realization observed")
	}
}

// TestMulticastMeetsNetworkPolicyOnTheAgent traces multicast through the
// flows the agent put on the bridge in networkpolicy mode: a receiver
// isolated for ingress gets a datagram only from a sender its policies
// allow, with the decision following the policy as it changes.
func TestMulticastMeetsNetworkPolicyOnTheAgent(t *testing.T) {
	pe := newPolicyEnv(t, newPolModel()) // ns1: a (app=web, port 3), b (app=db, port 4); ns2: c
	if _, err := pe.client.NetworkV1().NetNamespaces().Update(context.Background(), mcNetNamespace("ns1", 11, true), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	tunnel2 := ovs.Verdict{Kind: ovs.VerdictTunnel, TunDst: netip.MustParseAddr("10.0.0.2"), TunID: 11}.String()
	toB := ovs.Verdict{Kind: ovs.VerdictOutput, Port: polB.OFPort}.String()
	toA := ovs.Verdict{Kind: ovs.VerdictOutput, Port: polA.OFPort}.String()
	outputs := func(from pipeline.PodInfo) []string {
		tr, err := ovs.TraceFlows(pe.rb.Flows(), ovs.Packet{InPort: from.OFPort, Proto: ovs.ProtoUDP, Src: from.IP,
			Dst: netip.MustParseAddr("239.1.1.1"), TpDst: 5000})
		if err != nil {
			t.Fatalf("trace: %v\n%s", err, tr)
		}
		var got []string
		for _, o := range tr.Outputs {
			got = append(got, o.String())
		}
		return got
	}
	expectOutputs := func(what string, from pipeline.PodInfo, want ...string) {
		t.Helper()
		pe.eventually(what, func() string {
			if got := outputs(from); !slices.Equal(got, want) {
				return fmt.Sprintf("outputs %v, want %v", got, want)
			}
			return ""
		})
	}
	expectOutputs("no policy: a's datagram reaches node2 and b", polA, tunnel2, toB)
	pe.createPolicy(npAllowFrom("ns1", "db", npSel("app", "db"), networkingv1.NetworkPolicyPeer{PodSelector: npSel("app", "client")}))
	pe.expectPolicy("db isolated, nobody in ns1 allowed", polA, polB, polC)
	expectOutputs("b isolated: a's datagram no longer reaches it", polA, tunnel2)
	expectOutputs("a is not isolated: b's datagram reaches it", polB, tunnel2, toA)
	pe.updatePolicy(npAllowFrom("ns1", "db", npSel("app", "db"), networkingv1.NetworkPolicyPeer{PodSelector: npSel("app", "web")}))
	pe.expectPolicy("db allows web", polA, polB, polC)
	expectOutputs("b allows web: a's datagram reaches it again", polA, tunnel2, toB)
}
