package node_test

// The CNI end to end: the agents of a two-node lab (integration_helpers_test.go)
// run their CNI servers, and the real sdn-cni binary, installed as
// "ovs-sdn" in a CNI bin dir, is driven through libcni the way a container
// runtime drives it, with the conflist the agent writes. Pod network
// namespaces are created by the test; their traffic goes through the real
// pipeline the agents render.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
	"github.com/ovs-sdn/ovs-sdn/pkg/ipam"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/node"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

const (
	cniLabPrefix = "itcni"
	cniPodNS     = "team-a"
	cniPodVNID   = 77
)

func TestIntegrationCNI(t *testing.T) {
	c := newITCluster(t, cniLabPrefix, "redhat/openshift-ovs-multitenant", 2, 0)
	c.netNamespace(cniPodNS, cniPodVNID)
	bin := buildCNIPlugin(t)
	a, b := newCNINode(t, c.nodes[0], bin), newCNINode(t, c.nodes[1], bin)

	// Node a's agent restarts with its CNI server; node b's starts before
	// its HostSubnet exists, so it is not ready for a while.
	a.stopAgent()
	a.startCNIAgent(true)
	b.stopAgent()
	hs := b.deleteHostSubnet()
	b.startCNIAgent(false)

	t.Run("not ready: no conflist, STATUS and ADD say try later", func(t *testing.T) {
		b.waitSocket()
		time.Sleep(300 * time.Millisecond)
		if b.conflistExists() {
			t.Fatal("conflist written before the agent is ready")
		}
		list := b.staticList()
		if err := b.cni.GetStatusNetworkList(context.Background(), list); cniCode(err) != cni.ErrStatusNotAvailable {
			t.Errorf("STATUS before ready = %v, want code %d", err, cni.ErrStatusNotAvailable)
		}
		p := b.newPod("early")
		if _, err := b.cni.AddNetworkList(context.Background(), list, p.rt); cniCode(err) != types.ErrTryAgainLater {
			t.Errorf("ADD before ready = %v, want code %d", err, types.ErrTryAgainLater)
		}
		b.recreateHostSubnet(hs)
		b.waitReady()
		b.waitConflist()
	})
	if t.Failed() {
		t.FailNow()
	}
	a.loadConflist()
	b.loadConflist()

	var pods []*cniPod
	t.Run("ADD gives addresses from each node's subnet", func(t *testing.T) {
		pods = []*cniPod{a.mustAdd(a.newPod("pa1")), a.mustAdd(a.newPod("pa2")), b.mustAdd(b.newPod("pb1"))}
		for _, p := range pods {
			if !p.node.subnet.Contains(p.ip) || p.ip == p.node.subnet.Addr().Next() {
				t.Errorf("pod %s on %s got %s, not a pod address of %s", p.name, p.node.name, p.ip, p.node.subnet)
			}
			p.assertAttached(t)
			if err := p.node.check(p); err != nil {
				t.Errorf("CHECK %s: %v", p.name, err)
			}
		}
		if pods[0].ip == pods[1].ip {
			t.Errorf("two pods got %s", pods[0].ip)
		}
		// ADD again: same result.
		again := a.mustAdd(pods[0])
		if again.ip != pods[0].ip {
			t.Errorf("repeated ADD gave %s, first ADD %s", again.ip, pods[0].ip)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("ping and TCP between all pods", func(t *testing.T) {
		for _, p := range pods {
			if _, err := p.probe.ServeTCP(itEchoPort); err != nil {
				t.Fatal(err)
			}
		}
		for _, from := range pods {
			for _, to := range pods {
				if from == to {
					continue
				}
				if !pingOK(from.probe, to.probe, 3) {
					t.Errorf("ping %s (%s) → %s (%s) failed", from.name, from.ip, to.name, to.ip)
				}
				if err := reachable(from.probe, to.probe, 5*time.Second); err != nil {
					t.Errorf("tcp %s → %s: %v", from.name, to.name, err)
				}
			}
		}
	})

	t.Run("DEL removes port, flows and lease", func(t *testing.T) {
		p := pods[1]
		if err := a.del(p); err != nil {
			t.Fatal(err)
		}
		p.assertDetached(t)
		if err := a.del(p); err != nil {
			t.Errorf("repeated DEL: %v", err)
		}
		if pingOK(pods[0].probe, p.probe, 1) {
			t.Errorf("deleted pod %s still answers", p.name)
		}
		if err := reachable(pods[0].probe, pods[2].probe, 5*time.Second); err != nil {
			t.Errorf("remaining pods lost connectivity: %v", err)
		}
	})

	t.Run("agent restart between ADD and DEL", func(t *testing.T) {
		p := a.mustAdd(a.newPod("pr1"))
		a.stopAgent()
		if a.conflistExists() {
			t.Error("conflist still there after the agent stopped")
		}
		a.startCNIAgent(true)
		a.waitConflist()
		if err := a.check(p); err != nil {
			t.Errorf("CHECK after the restart: %v", err)
		}
		if !pingOK(p.probe, pods[2].probe, 3) {
			t.Errorf("pod %s lost connectivity over the agent restart", p.name)
		}
		if err := a.del(p); err != nil {
			t.Fatal(err)
		}
		p.assertDetached(t)
	})

	t.Run("latency of sequential ADD and DEL", func(t *testing.T) {
		var adds, dels []time.Duration
		var lat []*cniPod
		for i := 0; i < 20; i++ {
			p := a.newPod(fmt.Sprintf("pl%02d", i))
			start := time.Now()
			a.mustAdd(p)
			adds = append(adds, time.Since(start))
			lat = append(lat, p)
		}
		for _, p := range lat {
			start := time.Now()
			if err := a.del(p); err != nil {
				t.Fatalf("DEL %s: %v", p.name, err)
			}
			dels = append(dels, time.Since(start))
		}
		a50, a99 := percentiles(adds)
		d50, d99 := percentiles(dels)
		t.Logf("20 sequential ADDs through sdn-cni and the agent: p50 %v p99 %v; DELs: p50 %v p99 %v",
			a50.Round(time.Millisecond), a99.Round(time.Millisecond), d50.Round(time.Millisecond), d99.Round(time.Millisecond))
		if a99 > 5*time.Second || d99 > 5*time.Second {
			t.Errorf("ADD p99 %v, DEL p99 %v: want under 5 s", a99, d99)
		}
		for _, p := range lat {
			p.assertDetached(t)
		}
	})

	t.Run("conflist removed when the agent stops", func(t *testing.T) {
		b.stopAgent()
		if b.conflistExists() {
			t.Error("conflist still there after the agent stopped")
		}
		if _, err := os.Stat(b.sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("CNI socket after the agent stopped: %v", err)
		}
		p := b.newPod("late")
		if _, err := b.cni.AddNetworkList(context.Background(), b.list, p.rt); cniCode(err) != types.ErrTryAgainLater {
			t.Errorf("ADD with no agent = %v, want code %d", err, types.ErrTryAgainLater)
		}
	})
}

// buildCNIPlugin builds the conflist's plugins (sdn-cni as "ovs-sdn", portmap) into a CNI
// bin dir.
func buildCNIPlugin(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := testenv.BuildCNIBin(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// cniNode is a lab node whose agent runs the CNI server, with the node's
// CNI directories and a libcni runtime.
type cniNode struct {
	*itNode
	t                        testing.TB
	sock, state, conf, cache string
	cni                      *libcni.CNIConfig
	list                     *libcni.NetworkConfigList
}

func newCNINode(t testing.TB, n *itNode, bin string) *cniNode {
	dir, err := os.MkdirTemp("", "itcni") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	cn := &cniNode{itNode: n, t: t, sock: filepath.Join(dir, "run", "cni.sock"), state: filepath.Join(dir, "state"),
		conf: filepath.Join(dir, "net.d"), cache: filepath.Join(dir, "cache")}
	cn.cni = libcni.NewCNIConfigWithCacheDir([]string{bin}, cn.cache, nil)
	return cn
}

// startCNIAgent starts an agent with the CNI server on n; with wait, it
// waits until the agent is Ready and the conflist is written.
func (n *cniNode) startCNIAgent(wait bool) {
	t := n.t
	t.Helper()
	reg := prometheus.NewRegistry()
	br := n.newITBridge()
	ctx, cancel := context.WithCancel(context.Background())
	cfg, err := n.agentConfig(ctx, reg, br)
	if err != nil {
		cancel()
		t.Fatalf("agent %s: %v", n.name, err)
	}
	cfg.CNISocketPath, cfg.CNIStateDir, cfg.CNIConfDir = n.sock, n.state, n.conf
	a, err := node.New(cfg)
	if err != nil {
		cancel()
		t.Fatalf("agent %s: %v", n.name, err)
	}
	ag := &itAgent{Agent: a, reg: reg, br: br, cancel: cancel, done: make(chan error, 1)}
	go func() { ag.done <- a.Run(ctx) }()
	n.mu.Lock()
	n.agent = ag // the cluster's cleanup stops it
	n.mu.Unlock()
	if wait {
		n.waitReady()
		n.waitConflist()
	}
}

func (n *cniNode) waitReady() {
	n.t.Helper()
	n.eventually(30*time.Second, "agent ready", func() bool { return n.currentAgent().Ready() })
}

func (n *cniNode) waitSocket() {
	n.t.Helper()
	n.eventually(10*time.Second, "CNI socket", func() bool { _, err := os.Stat(n.sock); return err == nil })
}

func (n *cniNode) waitConflist() {
	n.t.Helper()
	n.eventually(10*time.Second, "conflist", n.conflistExists)
	if !n.currentAgent().Ready() {
		n.t.Errorf("node %s: conflist written, agent not ready", n.name)
	}
}

func (n *cniNode) eventually(timeout time.Duration, what string, cond func() bool) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			n.t.Fatalf("node %s: no %s after %v", n.name, what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (n *cniNode) conflistExists() bool {
	_, err := os.Stat(filepath.Join(n.conf, cni.ConflistName))
	return err == nil
}

// loadConflist reads the conflist the agent wrote, as the runtime does.
func (n *cniNode) loadConflist() {
	n.t.Helper()
	l, err := libcni.ConfListFromFile(filepath.Join(n.conf, cni.ConflistName))
	if err != nil {
		n.t.Fatal(err)
	}
	n.list = l
}

// staticList is the conflist the agent will write, for requests made
// before it has.
func (n *cniNode) staticList() *libcni.NetworkConfigList {
	n.t.Helper()
	b, err := cni.RenderConflist(n.sock)
	if err != nil {
		n.t.Fatal(err)
	}
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		n.t.Fatal(err)
	}
	return l
}

func (n *cniNode) deleteHostSubnet() *networkv1.HostSubnet {
	n.t.Helper()
	api := n.c.cs.NetworkV1().HostSubnets()
	hs, err := api.Get(context.Background(), n.name, metav1.GetOptions{})
	if err == nil {
		err = api.Delete(context.Background(), n.name, metav1.DeleteOptions{})
	}
	if err != nil {
		n.t.Fatal(err)
	}
	return hs
}

func (n *cniNode) recreateHostSubnet(hs *networkv1.HostSubnet) {
	n.t.Helper()
	hs = &networkv1.HostSubnet{ObjectMeta: metav1.ObjectMeta{Name: hs.Name}, Host: hs.Host, HostIP: hs.HostIP, Subnet: hs.Subnet}
	if _, err := n.c.cs.NetworkV1().HostSubnets().Create(context.Background(), hs, metav1.CreateOptions{}); err != nil {
		n.t.Fatal(err)
	}
}

// cniPod is a pod sandbox: a network namespace made by the test and the
// runtime config of its CNI calls.
type cniPod struct {
	name  string
	node  *cniNode
	rt    *libcni.RuntimeConf
	ip    netip.Addr
	probe *netlab.Pod // for ping and TCP from the pod netns
}

// newPod creates netns <prefix>-<name> (netlab.Sweep removes leftovers).
func (n *cniNode) newPod(name string) *cniPod {
	t := n.t
	t.Helper()
	nsName := cniLabPrefix + "-" + name
	if out, err := exec.Command("ip", "netns", "add", nsName).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", nsName, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", nsName).Run() })
	path := "/run/netns/" + nsName
	return &cniPod{name: name, node: n,
		rt: &libcni.RuntimeConf{ContainerID: "itcni" + strings.ReplaceAll(name, "-", "") + fmt.Sprint(time.Now().UnixNano()),
			NetNS: path, IfName: "eth0",
			Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", cniPodNS}, {"K8S_POD_NAME", name}}},
		probe: &netlab.Pod{Name: name, Node: n.Node, NetNS: netlab.NetNS{Name: nsName, Path: path}},
	}
}

// mustAdd runs CNI ADD for p and records its address.
func (n *cniNode) mustAdd(p *cniPod) *cniPod {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := n.cni.AddNetworkList(ctx, n.list, p.rt)
	if err != nil {
		n.t.Fatalf("ADD %s: %v", p.name, err)
	}
	if err := p.record(r); err != nil {
		n.t.Fatal(err)
	}
	return p
}

// record takes p's address from its ADD result.
func (p *cniPod) record(r types.Result) error {
	res, err := current.NewResultFromResult(r)
	if err != nil || len(res.IPs) != 1 {
		return fmt.Errorf("ADD %s: result %v (%v)", p.name, r, err)
	}
	ip, _ := netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
	ones, _ := res.IPs[0].Address.Mask.Size()
	p.ip = ip
	p.probe.IP = netip.PrefixFrom(ip, ones)
	return nil
}

func (n *cniNode) del(p *cniPod) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return n.cni.DelNetworkList(ctx, n.list, p.rt)
}

func (n *cniNode) check(p *cniPod) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return n.cni.CheckNetworkList(ctx, n.list, p.rt)
}

func (p *cniPod) portName() string { return cni.HostVethName(p.rt.ContainerID, p.rt.IfName) }

// hasPort reports whether br0 has p's port.
func (p *cniPod) hasPort(t *testing.T) bool {
	t.Helper()
	out, err := p.node.Vsctl("list-ports", netlab.PodBridge)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(strings.Fields(out), p.portName())
}

// bridgeFlows returns br0's flows with p's pod cookie.
func (p *cniPod) bridgeFlows(t *testing.T) []ovs.DumpedFlow {
	t.Helper()
	return p.node.dumpFlows(ovs.ByCookie(pipeline.PodOwner(cniPodNS, p.name).CookieMatch()).String())
}

// lease returns p's lease in the node's lease store.
func (p *cniPod) lease(t *testing.T) (netip.Addr, bool) {
	t.Helper()
	s, err := ipam.Open(p.node.state, cni.NetworkName)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ls, err := s.Leases()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.ContainerID == p.rt.ContainerID {
			return l.IP, true
		}
	}
	return netip.Addr{}, false
}

func (p *cniPod) assertAttached(t *testing.T) {
	t.Helper()
	if !p.hasPort(t) {
		t.Errorf("pod %s: no port %s on br0", p.name, p.portName())
	}
	want := p.node.currentAgent().Store().Flows(pipeline.PodOwner(cniPodNS, p.name))
	if got := p.bridgeFlows(t); len(want) == 0 || len(got) != len(want) {
		t.Errorf("pod %s: %d flows with its cookie on br0, the agent's store has %d", p.name, len(got), len(want))
	}
	if ip, ok := p.lease(t); !ok || ip != p.ip {
		t.Errorf("pod %s: lease %s, %v; want %s", p.name, ip, ok, p.ip)
	}
}

func (p *cniPod) assertDetached(t *testing.T) {
	t.Helper()
	if p.hasPort(t) {
		t.Errorf("pod %s: port %s still on br0", p.name, p.portName())
	}
	if got := p.bridgeFlows(t); len(got) != 0 {
		t.Errorf("pod %s: %d flows with its cookie still on br0", p.name, len(got))
	}
	if ip, ok := p.lease(t); ok {
		t.Errorf("pod %s: lease %s not released", p.name, ip)
	}
}

// cniCode returns the CNI error code of err (0 if none).
func cniCode(err error) uint {
	var ce *types.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// percentiles returns the 50th and 99th percentile of d.
func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	idx := func(q float64) int { return min(max(int(q*float64(len(s))+0.5)-1, 0), len(s)-1) }
	return s[idx(0.5)], s[idx(0.99)]
}
