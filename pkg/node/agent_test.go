package node

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"fmt"
	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned/fake"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/iptables"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"net"
)

// fakeSwitch is an in-memory SwitchDB.
type fakeSwitch struct {
	mu        sync.Mutex
	ports     []SwitchPort
	onChange  []func()
	gone      chan struct{}
	ensured   int // EnsureBridge calls
	closed    bool
	failPorts error
}

func newFakeSwitch(ports ...SwitchPort) *fakeSwitch {
	base := []SwitchPort{{Name: pipeline.VXLANPort, OFPort: 1}, {Name: pipeline.Tun0, OFPort: 2}}
	return &fakeSwitch{ports: append(base, ports...), gone: make(chan struct{})}
}

func (s *fakeSwitch) EnsureBridge(context.Context, string, string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ensured++
	return nil
}
func (s *fakeSwitch) EnsureVXLANPort(context.Context, string, string, uint16, int) error { return nil }
func (s *fakeSwitch) EnsureInternalPort(context.Context, string, string, int, int) error { return nil }
func (s *fakeSwitch) Ports(context.Context, string) ([]SwitchPort, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ports), s.failPorts
}
func (s *fakeSwitch) OnPortChange(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onChange = append(s.onChange, fn)
}
func (s *fakeSwitch) Disconnected() <-chan struct{} { return s.gone }
func (s *fakeSwitch) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

// setPorts replaces the pod ports and notifies, as OVSDB does.
func (s *fakeSwitch) setPorts(ports ...SwitchPort) {
	s.mu.Lock()
	s.ports = append(s.ports[:2:2], ports...)
	fns := slices.Clone(s.onChange)
	s.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

type fakeHost struct {
	mu            sync.Mutex
	gateways      []string
	serviceRoutes []string
	egressIPs     []netip.Addr
}

func (h *fakeHost) EnsureGateway(dev string, gw netip.Prefix, mac net.HardwareAddr, routes []netip.Prefix, mtu int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gateways = append(h.gateways, dev+" "+gw.String()+" "+mac.String())
	return nil
}
func (h *fakeHost) EnsureServiceRoutes(dev string, via netip.Addr, mac net.HardwareAddr, dsts []netip.Prefix, mtu int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.serviceRoutes = append(h.serviceRoutes, fmt.Sprintf("%s via %s (%s) %v", dev, via, mac, dsts))
	return nil
}
func (h *fakeHost) EnsureIPForward() error { return nil }
func (h *fakeHost) EnsureEgressIPs(_ netip.Addr, ips []netip.Addr) ([]netip.Addr, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.egressIPs = slices.Clone(ips)
	return nil, nil
}
func (h *fakeHost) IPTables() (iptables.Interface, error) { return iptables.NewFake(), nil }

func podPort(ns, name, ip string, ofport int) SwitchPort {
	return SwitchPort{Name: "veth-" + name, OFPort: ofport, ExternalIDs: map[string]string{
		ovsdb.ExternalIDPodNamespace: ns, ovsdb.ExternalIDPodName: name, ovsdb.ExternalIDIP: ip, ovsdb.ExternalIDSandbox: "sb-" + name}}
}

func hostSubnet(name, ip, subnet string) *networkv1.HostSubnet {
	return &networkv1.HostSubnet{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Host: name, HostIP: ip, Subnet: subnet}
}

func netNamespace(name string, id uint32) *networkv1.NetNamespace {
	return &networkv1.NetNamespace{ObjectMeta: metav1.ObjectMeta{Name: name}, NetName: name, NetID: id}
}

const testPlugin = "redhat/openshift-ovs-multitenant"

func testClusterNetwork() *networkv1.ClusterNetwork {
	return &networkv1.ClusterNetwork{ObjectMeta: metav1.ObjectMeta{Name: networkv1.ClusterNetworkDefault},
		ClusterNetworks: []networkv1.ClusterNetworkEntry{{CIDR: "10.128.0.0/14", HostSubnetLength: 9}},
		ServiceNetwork:  "172.30.0.0/16", PluginName: testPlugin}
}

// agentEnv is one agent on fakes.
type agentEnv struct {
	t      *testing.T
	client *fake.Clientset
	sw     *fakeSwitch
	host   *fakeHost
	br     *ovs.FakeBridge
	agent  *Agent
	reg    *prometheus.Registry
	dials  int
	mu     sync.Mutex
	done   chan error
}

func newAgentEnv(t *testing.T, br *ovs.FakeBridge, sw *fakeSwitch, objs ...runtime.Object) *agentEnv {
	t.Helper()
	return newAgentEnvWithClient(t, br, sw, fake.NewSimpleClientset(objs...))
}

func newAgentEnvWithClient(t *testing.T, br *ovs.FakeBridge, sw *fakeSwitch, client *fake.Clientset) *agentEnv {
	t.Helper()
	e := &agentEnv{t: t, client: client, sw: sw, host: &fakeHost{}, br: br,
		reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	a, err := New(Config{NodeName: "node1", NodeIP: netip.MustParseAddr("10.0.0.1"), Network: e.client,
		Dial: e.dial, Bridge: br, Host: e.host, IPTables: iptables.NewFake(), Registry: e.reg,
		FullSyncPeriod: time.Hour, HealthCheckPeriod: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.agent = a
	return e
}

func (e *agentEnv) dial(context.Context, string) (SwitchDB, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dials++
	return e.sw, nil
}

func (e *agentEnv) start() {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { e.done <- e.agent.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-e.done; err != nil {
			e.t.Errorf("agent Run: %v", err)
		}
	})
	e.eventually("agent ready", func() string {
		if !e.agent.Ready() {
			return "not ready"
		}
		return ""
	})
}

// eventually polls cond (which returns "" when satisfied, else why not)
// for up to 5 seconds.
func (e *agentEnv) eventually(what string, cond func() string) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %s", what, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// expect waits until the fake bridge holds exactly flows.
func (e *agentEnv) expect(what string, flows []ovs.Flow) {
	e.t.Helper()
	want := dumpOf(flows)
	e.eventually(what, func() string {
		if got := e.br.Dump(); got != want {
			return "bridge:\n" + got + "\nwant:\n" + want
		}
		return ""
	})
}

var (
	fc1 = pipeline.FlowConfig{Mode: clusternetwork.ModeMultitenant, ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/14")},
		ServiceNetwork: netip.MustParsePrefix("172.30.0.0/16"), LocalSubnet: netip.MustParsePrefix("10.128.0.0/23"),
		NodeIP: netip.MustParseAddr("10.0.0.1"), VXLANPort: 4789}
	node2 = pipeline.RemoteNode{Name: "node2", UID: "uid-node2", HostIP: netip.MustParseAddr("10.0.0.2"), Subnet: netip.MustParsePrefix("10.128.2.0/23")}
	pa    = pipeline.PodInfo{Namespace: "ns1", Name: "a", IP: netip.MustParseAddr("10.128.0.2"), OFPort: 3, VNID: 11}
	pb    = pipeline.PodInfo{Namespace: "ns2", Name: "b", IP: netip.MustParseAddr("10.128.0.3"), OFPort: 4, VNID: 12}
)

func expectedFlows(nodes []pipeline.RemoteNode, pods []pipeline.PodInfo) []ovs.Flow {
	flows := slices.Concat(pipeline.BaseFlows(fc1), fc1.Isolation().StaticFlows(fc1), pipeline.ServiceProxyFlows(fc1),
		[]ovs.Flow{pipeline.VersionFlow(fc1)})
	var ips []netip.Addr
	for _, n := range nodes {
		flows = append(flows, pipeline.RemoteNodeFlows(fc1, n)...)
		ips = append(ips, n.HostIP)
	}
	flows = append(flows, pipeline.MulticastRemoteFlow(fc1, ips))
	vnids := map[uint32]bool{}
	for _, p := range pods {
		flows = append(flows, pipeline.PodFlows(fc1, p)...)
		if !vnids[p.VNID] {
			flows = append(flows, fc1.Isolation().TenantFlows(p.VNID)...)
		}
		vnids[p.VNID] = true
	}
	return flows
}

func standardEnv(t *testing.T) *agentEnv {
	sw := newFakeSwitch(podPort("ns1", "a", "10.128.0.2", 3), podPort("ns2", "b", "10.128.0.3", 4))
	e := newAgentEnv(t, ovs.NewFakeBridge(), sw, testClusterNetwork(),
		hostSubnet("node1", "10.0.0.1", "10.128.0.0/23"), hostSubnet("node2", "10.0.0.2", "10.128.2.0/23"),
		hostSubnet("bad", "10.0.0.9", "192.168.0.0/23"), // outside the cluster network: ignored
		netNamespace("ns1", 11), netNamespace("ns2", 12))
	e.start()
	return e
}

func TestAgentStartRendersEverything(t *testing.T) {
	e := standardEnv(t)
	e.expect("start-up flows", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb}))
	if got := e.host.gateways; !slices.Equal(got, []string{"tun0 10.128.0.1/23 0a:58:0a:80:00:01"}) {
		t.Errorf("gateways = %v", got)
	}
	if got := e.host.serviceRoutes; !slices.Equal(got, []string{"tun0 via 169.254.169.4 (0a:58:a9:fe:a9:04) [172.30.0.0/16 169.254.169.3/32]"}) {
		t.Errorf("service routes = %v", got)
	}
	if got := testutil.ToFloat64(e.agent.m.flows); got != float64(e.agent.store.Len()) || got == 0 {
		t.Errorf("ovs_sdn_ovs_flows = %v, store has %d", got, e.agent.store.Len())
	}
	if got := testutil.ToFloat64(e.agent.m.ovsOps.WithLabelValues("success")); got < 1 {
		t.Errorf("no successful OVS operation counted")
	}
}

func TestAgentVNIDChangeRewritesPodFlows(t *testing.T) {
	e := standardEnv(t)
	e.expect("start", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb}))
	before := e.br.FlowMods()
	if _, err := e.client.NetworkV1().NetNamespaces().Update(context.Background(), netNamespace("ns2", 11), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pb11 := pb
	pb11.VNID = 11
	want := expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb11})
	e.expect("ns2 joined ns1", want)
	oldFlows := expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb})
	if got, wantMods := e.br.FlowMods()-before, expectedMods(flowState{owners: map[pipeline.Owner][]ovs.Flow{{}: oldFlows}}, flowState{owners: map[pipeline.Owner][]ovs.Flow{{}: want}}); got != wantMods {
		t.Errorf("VNID change made %d flow mods, want %d (only pod b's changed flows and VNID 12's tenant flows)", got, wantMods)
	}
}

func TestAgentRemoteNodeChanges(t *testing.T) {
	e := standardEnv(t)
	ctx := context.Background()
	moved := hostSubnet("node2", "10.0.0.22", "10.128.2.0/23")
	if _, err := e.client.NetworkV1().HostSubnets().Update(ctx, moved, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	n2 := node2
	n2.HostIP = netip.MustParseAddr("10.0.0.22")
	e.expect("node2 HostIP changed", expectedFlows([]pipeline.RemoteNode{n2}, []pipeline.PodInfo{pa, pb}))
	if _, err := e.client.NetworkV1().HostSubnets().Create(ctx, hostSubnet("node3", "10.0.0.3", "10.128.4.0/23"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n3 := pipeline.RemoteNode{Name: "node3", UID: "uid-node3", HostIP: netip.MustParseAddr("10.0.0.3"), Subnet: netip.MustParsePrefix("10.128.4.0/23")}
	e.expect("node3 added", expectedFlows([]pipeline.RemoteNode{n2, n3}, []pipeline.PodInfo{pa, pb}))
	if err := e.client.NetworkV1().HostSubnets().Delete(ctx, "node2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.expect("node2 deleted", expectedFlows([]pipeline.RemoteNode{n3}, []pipeline.PodInfo{pa, pb}))
}

func TestAgentPodPortsAndMissingVNID(t *testing.T) {
	e := standardEnv(t)
	e.sw.setPorts(podPort("ns1", "a", "10.128.0.2", 3), podPort("nsX", "x", "10.128.0.5", 5))
	e.expect("pod b gone, pod x has no VNID yet", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa}))
	if got := testutil.ToFloat64(e.agent.m.vnidNotFound); got < 1 {
		t.Errorf("vnid_not_found = %v, want >= 1", got)
	}
	if _, err := e.client.NetworkV1().NetNamespaces().Create(context.Background(), netNamespace("nsX", 0), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	px := pipeline.PodInfo{Namespace: "nsX", Name: "x", IP: netip.MustParseAddr("10.128.0.5"), OFPort: 5, VNID: 0}
	e.expect("pod x global", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, px}))
}

func TestAgentRestartTouchesNoFlow(t *testing.T) {
	e := standardEnv(t)
	want := expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb})
	e.expect("first agent", want)
	// A second agent (the restarted one) on the same bridge and OVSDB.
	before := e.br.FlowMods()
	e2 := newAgentEnvWithClient(t, e.br, e.sw, e.client)
	e2.start()
	e2.expect("restarted agent", want)
	if d := e.br.FlowMods() - before; d != 0 {
		t.Errorf("agent restart modified %d flows, want 0", d)
	}
}

func TestAgentRepairsLostFlows(t *testing.T) {
	e := standardEnv(t)
	want := expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb})
	e.expect("start", want)
	// ovs-vswitchd restart: every flow is gone; the health check sees the
	// version flow missing and rebuilds.
	if err := e.br.ReplaceFlows(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	e.expect("after flows were lost", want)
	e.sw.mu.Lock()
	ensured := e.sw.ensured
	e.sw.mu.Unlock()
	if ensured < 2 {
		t.Errorf("bridge ensured %d times, want a re-ensure on rebuild", ensured)
	}
	if n := len(e.host.gateways); n < 2 {
		t.Errorf("tun0 gateway set %d times, want it restored on rebuild", n)
	}
}

func TestAgentReconnectsToOVSDB(t *testing.T) {
	e := standardEnv(t)
	want := expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb})
	e.expect("start", want)
	old := e.sw
	e.sw = newFakeSwitch(podPort("ns1", "a", "10.128.0.2", 3)) // the new connection sees one pod
	close(old.gone)
	e.expect("after reconnect", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa}))
	e.mu.Lock()
	dials := e.dials
	e.mu.Unlock()
	if dials != 2 || !old.closed {
		t.Errorf("dials = %d, old closed = %v; want a redial and the old connection closed", dials, old.closed)
	}
}

func TestAgentWaitsForOwnHostSubnet(t *testing.T) {
	sw := newFakeSwitch()
	e := newAgentEnv(t, ovs.NewFakeBridge(), sw, testClusterNetwork(), hostSubnet("node1", "10.0.0.99", "10.128.0.0/23"))
	go func() {
		time.Sleep(300 * time.Millisecond)
		// The flows must not appear before the HostSubnet is right.
		if n := len(e.br.Flows()); n != 0 {
			t.Errorf("%d flows installed before the own HostSubnet was valid", n)
		}
		_, err := e.client.NetworkV1().HostSubnets().Update(context.Background(), hostSubnet("node1", "10.0.0.1", "10.128.0.0/23"), metav1.UpdateOptions{})
		if err != nil {
			t.Error(err)
		}
	}()
	e.start()
	e.expect("started", expectedFlows(nil, nil))
}

func TestAgentConfigErrors(t *testing.T) {
	if _, err := New(Config{NodeName: "n"}); err == nil {
		t.Error("New without NodeIP and Network succeeded")
	}
	sw := newFakeSwitch()
	cn := testClusterNetwork()
	cn.ServiceNetwork = "10.128.0.0/16" // overlaps the cluster network
	e := newAgentEnv(t, ovs.NewFakeBridge(), sw, cn, hostSubnet("node1", "10.0.0.1", "10.128.0.0/23"))
	err := e.agent.Run(context.Background())
	if !errors.Is(err, clusternetwork.ErrInvalid) || !strings.Contains(err.Error(), "serviceNetwork") {
		t.Errorf("Run with an invalid ClusterNetwork = %v", err)
	}
}

// ctxBridge fails every dump with the context's error, as ovs-ofctl killed
// by a cancelled exec.CommandContext does.
type ctxBridge struct{ ovs.Bridge }

func (b ctxBridge) DumpFlows(ctx context.Context, _ ovs.Filter) ([]ovs.DumpedFlow, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("dump failed")
}

// TestCheckVersionFlowWhenStopping: a health check whose dump was cut
// short by the agent stopping returns the context's error; it neither says
// the version flow is missing nor rebuilds the bridge.
func TestCheckVersionFlowWhenStopping(t *testing.T) {
	sw := newFakeSwitch()
	e := newAgentEnv(t, ovs.NewFakeBridge(), sw, testClusterNetwork(), hostSubnet("node1", "10.0.0.1", "10.128.0.0/23"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.agent.Run(ctx) }()
	e.eventually("agent ready", func() string {
		if !e.agent.Ready() {
			return "not ready"
		}
		return ""
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	sw.mu.Lock()
	ensured := sw.ensured
	sw.mu.Unlock()

	e.agent.br = ctxBridge{e.agent.br}
	if err := e.agent.checkVersionFlow(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("checkVersionFlow after cancel = %v, want context.Canceled", err)
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.ensured != ensured {
		t.Errorf("checkVersionFlow after cancel rebuilt the bridge (EnsureBridge calls %d → %d)", ensured, sw.ensured)
	}
}
