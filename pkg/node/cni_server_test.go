package node

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// cniPort is the PodPort the CNI server hands PodAdded for pod p on port
// name.
func cniPort(p pipeline.PodInfo, name string) cni.PodPort {
	return cni.PodPort{Namespace: p.Namespace, Name: p.Name, SandboxID: "sb-" + name, IP: p.IP,
		PortName: name, OFPort: p.OFPort, VNID: p.VNID}
}

// switchPort is how OVSDB shows the port of cniPort(p, name).
func switchPort(p pipeline.PodInfo, name string) SwitchPort {
	return switchPortOf(cniPort(p, name))
}

// settle waits until the sync loop has taken the pending pod change and
// gives it time to apply it.
func (e *agentEnv) settle() {
	e.t.Helper()
	e.eventually("pod change rendered", func() string {
		if e.agent.env.queue.has(featurePods) {
			return "pods still dirty"
		}
		return ""
	})
	time.Sleep(100 * time.Millisecond)
}

// assertNow checks the bridge without waiting: PodAdded and PodDeleted
// return only once their flows are applied.
func (e *agentEnv) assertNow(what string, flows []ovs.Flow) {
	e.t.Helper()
	if got, want := e.br.Dump(), dumpOf(flows); got != want {
		e.t.Fatalf("%s: bridge:\n%s\nwant:\n%s", what, got, want)
	}
}

var pc = pipeline.PodInfo{Namespace: "ns1", Name: "c", IP: netip.MustParseAddr("10.128.0.4"), OFPort: 5, VNID: 11}

func TestCNIPodAddedAndDeletedAheadOfOVSDB(t *testing.T) {
	e := standardEnv(t)
	ctx := context.Background()
	e.expect("start", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb}))
	withC := expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb, pc})
	if err := e.agent.PodAdded(ctx, cniPort(pc, "veth-c")); err != nil {
		t.Fatal(err)
	}
	e.assertNow("PodAdded before the OVSDB view shows the port", withC)

	// A port change the agent's OVSDB view shows before the new port: the
	// stale view must not remove the pod just added.
	e.sw.setPorts(podPort("ns1", "a", "10.128.0.2", 3), podPort("ns2", "b", "10.128.0.3", 4))
	e.settle()
	e.assertNow("stale OVSDB view", withC)

	// The view catches up: nothing to render again, no flow touched.
	mods := e.br.FlowMods()
	e.sw.setPorts(podPort("ns1", "a", "10.128.0.2", 3), podPort("ns2", "b", "10.128.0.3", 4), switchPort(pc, "veth-c"))
	e.settle()
	e.assertNow("view shows the port", withC)
	if d := e.br.FlowMods() - mods; d != 0 {
		t.Errorf("the port watcher re-applied %d flows of a pod PodAdded had rendered", d)
	}
	// ADD is idempotent.
	if err := e.agent.PodAdded(ctx, cniPort(pc, "veth-c")); err != nil || e.br.FlowMods() != mods {
		t.Errorf("repeated PodAdded: err %v, %d flow mods", err, e.br.FlowMods()-mods)
	}

	// DEL removes the flows while the view still lists the port (the
	// server deletes it afterwards); later renders must not bring them back.
	without := expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb})
	if err := e.agent.PodDeleted(ctx, cni.PodPort{Namespace: "ns1", Name: "c", PortName: "veth-c", SandboxID: "sb-veth-c"}); err != nil {
		t.Fatal(err)
	}
	e.assertNow("PodDeleted, port still listed", without)
	e.sw.setPorts(podPort("ns1", "a", "10.128.0.2", 3), podPort("ns2", "b", "10.128.0.3", 4), switchPort(pc, "veth-c"))
	e.settle()
	e.assertNow("render with the deleted pod's port still listed", without)
	e.sw.setPorts(podPort("ns1", "a", "10.128.0.2", 3), podPort("ns2", "b", "10.128.0.3", 4))
	e.settle()
	e.assertNow("port gone", without)
	if err := e.agent.PodDeleted(ctx, cni.PodPort{Namespace: "ns1", Name: "c", PortName: "veth-c"}); err != nil {
		t.Errorf("repeated PodDeleted: %v", err)
	}
	if err := e.agent.PodDeleted(ctx, cni.PodPort{Namespace: "nsZ", Name: "never"}); err != nil {
		t.Errorf("PodDeleted of an unknown pod: %v", err)
	}
}

func TestCNIPodAddedWithoutVNIDFails(t *testing.T) {
	e := standardEnv(t)
	e.expect("start", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb}))
	before := testutil.ToFloat64(e.agent.m.vnidNotFound)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := e.agent.VNID(ctx, "nsX"); err == nil {
		t.Error("VNID of a namespace without NetNamespace succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("VNID ignored its context: returned after %v", d)
	}
	if got := testutil.ToFloat64(e.agent.m.vnidNotFound); got != before+1 {
		t.Errorf("ovs_sdn_vnid_not_found_errors_total went %v → %v, want +1", before, got)
	}
	px := pipeline.PodInfo{Namespace: "nsX", Name: "x", IP: netip.MustParseAddr("10.128.0.9"), OFPort: 9}
	if err := e.agent.PodAdded(context.Background(), cniPort(px, "veth-x")); err == nil {
		t.Error("PodAdded of a pod without VNID succeeded")
	}
	e.assertNow("failed PodAdded leaves no flows", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb}))
	// A later NetNamespace must not resurrect the failed ADD's record (the
	// server rolls the port back).
	if _, err := e.client.NetworkV1().NetNamespaces().Create(context.Background(), netNamespace("nsX", 0), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if id, err := e.agent.VNID(context.Background(), "nsX"); err != nil || id != 0 {
		t.Errorf("VNID after the NetNamespace appeared = %d, %v", id, err)
	}
	e.settle()
	e.assertNow("after the NetNamespace appeared", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb}))
}

func TestCNIPodAddedSyncFailureLeavesNoFlows(t *testing.T) {
	e := standardEnv(t)
	e.expect("start", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb}))
	// Every bundle fails while PodAdded runs: the agent's sync loop may
	// take a single failure from PodAdded's own sync.
	e.br.FailAll(errors.New("bundle failed"))
	err := e.agent.PodAdded(context.Background(), cniPort(pc, "veth-c"))
	e.br.FailAll(nil)
	if err == nil {
		t.Fatal("PodAdded succeeded although the bundle failed")
	}
	e.sw.setPorts(podPort("ns1", "a", "10.128.0.2", 3), podPort("ns2", "b", "10.128.0.3", 4))
	e.settle()
	e.assertNow("after a failed PodAdded", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb}))
	if owners := e.agent.store.Owners(); slices.Contains(owners, pipeline.PodOwner("ns1", "c")) {
		t.Errorf("the store still holds the failed pod: %v", owners)
	}
}

func TestCNICheckPod(t *testing.T) {
	e := standardEnv(t)
	ctx := context.Background()
	e.expect("start", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb}))
	p := cniPort(pc, "veth-c")
	if err := e.agent.CheckPod(ctx, p); err == nil {
		t.Error("CheckPod of a pod never added succeeded")
	}
	if err := e.agent.PodAdded(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := e.agent.CheckPod(ctx, p); err != nil {
		t.Errorf("CheckPod after PodAdded: %v", err)
	}
	wrong := p
	wrong.VNID = 12
	if err := e.agent.CheckPod(ctx, wrong); err == nil || !strings.Contains(err.Error(), "VNID") {
		t.Errorf("CheckPod with the wrong VNID = %v", err)
	}
	wrong = p
	wrong.IP = netip.MustParseAddr("10.128.0.99")
	if err := e.agent.CheckPod(ctx, wrong); err == nil {
		t.Error("CheckPod with the wrong IP succeeded")
	}
	// Someone deletes one of the pod's flows on the bridge.
	victim := pipeline.PodFlows(fc1, pc)[3]
	if err := e.br.Bundle(ctx, []ovs.Change{ovs.DeleteFlow(victim)}); err != nil {
		t.Fatal(err)
	}
	if err := e.agent.CheckPod(ctx, p); err == nil || !strings.Contains(err.Error(), "br0 lacks 1") {
		t.Errorf("CheckPod with a flow deleted out of band = %v", err)
	}
}

func TestCNINewSandboxWinsOverOldPort(t *testing.T) {
	e := standardEnv(t)
	ctx := context.Background()
	e.expect("start", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa, pb}))
	// Pod a gets a new sandbox (new port, ofport, IP) before the old
	// sandbox's DEL.
	pa2 := pipeline.PodInfo{Namespace: "ns1", Name: "a", IP: netip.MustParseAddr("10.128.0.7"), OFPort: 7, VNID: 11}
	want := expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pa2, pb})
	if err := e.agent.PodAdded(ctx, cniPort(pa2, "veth-a2")); err != nil {
		t.Fatal(err)
	}
	e.assertNow("new sandbox", want)
	e.sw.setPorts(podPort("ns1", "a", "10.128.0.2", 3), podPort("ns2", "b", "10.128.0.3", 4), switchPort(pa2, "veth-a2"))
	e.settle()
	e.assertNow("both ports listed", want)
	// The old sandbox's DEL must not take the new sandbox's flows.
	if err := e.agent.PodDeleted(ctx, cni.PodPort{Namespace: "ns1", Name: "a", PortName: "veth-a", SandboxID: "sb-a"}); err != nil {
		t.Fatal(err)
	}
	e.assertNow("old sandbox deleted", want)
}

func TestCNIBeforeReady(t *testing.T) {
	sw := newFakeSwitch(podPort("ns1", "a", "10.128.0.2", 3), podPort("ns2", "b", "10.128.0.3", 4))
	e := newAgentEnv(t, ovs.NewFakeBridge(), sw, testClusterNetwork(),
		hostSubnet("node2", "10.0.0.2", "10.128.2.0/23"), netNamespace("ns1", 11), netNamespace("ns2", 12))
	ctx, cancel := context.WithCancel(context.Background())
	go func() { e.done <- e.agent.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-e.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if _, ok := e.agent.NodeConfig(); ok {
		t.Error("NodeConfig ok before the agent is ready")
	}
	var cerr *types.Error
	if err := e.agent.PodAdded(ctx, cniPort(pc, "veth-c")); !errors.As(err, &cerr) || cerr.Code != types.ErrTryAgainLater {
		t.Errorf("PodAdded before ready = %v, want CNI error %d", err, types.ErrTryAgainLater)
	}
	// DEL works before ready: the first full sync honours it.
	if err := e.agent.PodDeleted(ctx, cni.PodPort{Namespace: "ns1", Name: "a", PortName: "veth-a"}); err != nil {
		t.Errorf("PodDeleted before ready: %v", err)
	}
	if _, err := e.client.NetworkV1().HostSubnets().Create(ctx, hostSubnet("node1", "10.0.0.1", "10.128.0.0/23"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("ready", func() string {
		if !e.agent.Ready() {
			return "not ready"
		}
		return ""
	})
	e.expect("first sync without the pod deleted before ready", expectedFlows([]pipeline.RemoteNode{node2}, []pipeline.PodInfo{pb}))
	nc, ok := e.agent.NodeConfig()
	want := cni.NodeConfig{Subnet: netip.MustParsePrefix("10.128.0.0/23"), Gateway: netip.MustParseAddr("10.128.0.1"),
		ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/14")}, ServiceNetwork: netip.MustParsePrefix("172.30.0.0/16"),
		MTU: 1450, DatapathType: "system"}
	if !ok || nc.Subnet != want.Subnet || nc.Gateway != want.Gateway || !slices.Equal(nc.ClusterNetworks, want.ClusterNetworks) ||
		nc.ServiceNetwork != want.ServiceNetwork || nc.MTU != want.MTU || nc.DatapathType != want.DatapathType {
		t.Errorf("NodeConfig = %+v, %v; want %+v", nc, ok, want)
	}
}

// TestCNIServerAndConflist runs the agent with its CNI server: the socket
// answers from the start, the conflist appears only once the agent is
// ready, and both are gone when Run returns.
func TestCNIServerAndConflist(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the CNI server opens the current network namespace: needs root")
	}
	dir, err := os.MkdirTemp("", "cnit") // short: unix socket path limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock, conf := filepath.Join(dir, "run", "cni.sock"), filepath.Join(dir, "net.d")
	conflist := filepath.Join(conf, cni.ConflistName)
	sw := newFakeSwitch()
	e := newAgentEnv(t, ovs.NewFakeBridge(), sw, testClusterNetwork(), hostSubnet("node1", "10.0.0.99", "10.128.0.0/23"))
	e.agent.cfg.CNISocketPath, e.agent.cfg.CNIStateDir, e.agent.cfg.CNIConfDir = sock, filepath.Join(dir, "state"), conf
	e.agent.cfg.OVSDBEndpoint = "unix:" + filepath.Join(dir, "no-ovsdb.sock") // the server dials on first use only
	ctx, cancel := context.WithCancel(context.Background())
	go func() { e.done <- e.agent.Run(ctx) }()
	e.eventually("CNI socket", func() string {
		if c, err := net.Dial("unix", sock); err != nil {
			return err.Error()
		} else {
			c.Close()
		}
		return ""
	})
	time.Sleep(200 * time.Millisecond) // the agent waits for its HostSubnet
	if _, err := os.Stat(conflist); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("conflist before the agent is ready: %v", err)
	}
	if _, err := e.client.NetworkV1().HostSubnets().Update(ctx, hostSubnet("node1", "10.0.0.1", "10.128.0.0/23"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("conflist", func() string {
		if _, err := os.Stat(conflist); err != nil {
			return err.Error()
		}
		if !e.agent.Ready() {
			t.Error("conflist written before Ready")
		}
		return ""
	})
	cancel()
	if err := <-e.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	for _, p := range []string{conflist, sock} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Run returned: %v", p, err)
		}
	}
}
