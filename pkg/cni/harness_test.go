package cni_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

// binDir holds the sdn-cni binary, installed as "ovs-sdn" like a CNI bin
// dir; built once per test binary.
var (
	binDir   string
	binOnce  sync.Once
	binErr   error
	buildDir string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// pluginDir builds cmd/sdn-cni into a temporary CNI bin dir.
func pluginDir(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		buildDir, binErr = os.MkdirTemp("", "sdn-cni-bin")
		if binErr != nil {
			return
		}
		binErr = testenv.BuildCNIBin(buildDir)
		binDir = buildDir
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// fakeNet is a PodNetwork that records calls and installs two delivery
// flows per pod in table 0 (ip nw_dst and arp arp_tpa → the pod's port),
// enough for two pods on one bridge to talk.
type fakeNet struct {
	br *ovs.OfctlBridge

	mu        sync.Mutex
	cfg       cni.NodeConfig
	ready     bool
	vnids     map[string]uint32
	failAdd   error
	added     map[string]cni.PodPort // by sandbox
	deleted   []cni.PodPort
	addCalls  int
	vnidDelay time.Duration
}

func (f *fakeNet) NodeConfig() (cni.NodeConfig, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg, f.ready
}

func (f *fakeNet) VNID(ctx context.Context, namespace string) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vnids[namespace]
	if !ok {
		return 0, fmt.Errorf("namespace %q has no NetNamespace", namespace)
	}
	return v, nil
}

func podCookie(p cni.PodPort) ovs.CookieMatch {
	return ovs.MatchOwner(ovs.CookiePod, "pod/"+p.Namespace+"/"+p.Name)
}

func podFlows(p cni.PodPort) []ovs.Flow {
	c := ovs.CookieFor(ovs.CookiePod, "pod/"+p.Namespace+"/"+p.Name)
	h := ovs.HostPrefix(p.IP)
	return []ovs.Flow{
		ovs.NewFlow(ovs.TableClassifier, 100).MatchIPv4().MatchNwDst(h).Action(ovs.Output(p.OFPort)).WithCookie(c),
		ovs.NewFlow(ovs.TableClassifier, 100).MatchARP().MatchArpTpa(h).Action(ovs.Output(p.OFPort)).WithCookie(c),
	}
}

func (f *fakeNet) PodAdded(ctx context.Context, p cni.PodPort) error {
	f.mu.Lock()
	f.addCalls++
	fail := f.failAdd
	f.mu.Unlock()
	if fail != nil {
		return fail
	}
	changes := []ovs.Change{ovs.DeleteFlows(ovs.ByCookie(podCookie(p)))}
	for _, fl := range podFlows(p) {
		changes = append(changes, ovs.AddFlow(fl))
	}
	if err := f.br.Bundle(ctx, changes); err != nil {
		return err
	}
	f.mu.Lock()
	f.added[p.SandboxID] = p
	f.mu.Unlock()
	return nil
}

func (f *fakeNet) PodDeleted(ctx context.Context, p cni.PodPort) error {
	if err := f.br.Bundle(ctx, []ovs.Change{ovs.DeleteFlows(ovs.ByCookie(podCookie(p)))}); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.added, p.SandboxID)
	f.deleted = append(f.deleted, p)
	return nil
}

func (f *fakeNet) CheckPod(ctx context.Context, p cni.PodPort) error {
	got, err := f.br.DumpFlows(ctx, ovs.ByCookie(podCookie(p)))
	if err != nil {
		return err
	}
	if len(got) != len(podFlows(p)) {
		return fmt.Errorf("pod %s/%s has %d flows, want %d", p.Namespace, p.Name, len(got), len(podFlows(p)))
	}
	return nil
}

func (f *fakeNet) set(fn func(f *fakeNet)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// env is one node: a private OVS with br0 (netdev), a CNI server in the
// test process whose veth host ends go into the vswitchd's netns, the
// conflist, and libcni driving the real sdn-cni binary.
type env struct {
	t      *testing.T
	ovs    *ovstest.Instance
	db     *ovsdb.Client
	pn     *fakeNet
	hostNS string
	sock   string
	state  string
	conf   string
	cache  string
	cni    *libcni.CNIConfig
	list   *libcni.NetworkConfigList
	reg    *prometheus.Registry

	srv  *cni.Server
	stop func()
}

type envOption func(*cni.NodeConfig)

func withSubnet(s string) envOption {
	return func(c *cni.NodeConfig) { c.Subnet = netip.MustParsePrefix(s) }
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	in := ovstest.Start(t)
	bin := pluginDir(t)
	in.AddBridge("br0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := ovsdb.Dial(ctx, "unix:"+in.DBSock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	nc := cni.NodeConfig{
		Subnet:          netip.MustParsePrefix("10.128.2.0/24"),
		ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/14")},
		ServiceNetwork:  netip.MustParsePrefix("172.30.0.0/16"),
		MTU:             1450,
		DatapathType:    "netdev",
	}
	for _, o := range opts {
		o(&nc)
	}
	short, err := os.MkdirTemp("", "cni") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(short) })
	e := &env{t: t, ovs: in, db: db, hostNS: "/run/netns/" + in.NetNS,
		sock:  filepath.Join(short, "run", "cni-server.sock"),
		state: filepath.Join(short, "state"), conf: filepath.Join(short, "net.d"), cache: filepath.Join(short, "cache"),
		pn: &fakeNet{br: &ovs.OfctlBridge{Name: in.Target("br0")}, cfg: nc, ready: true,
			vnids: map[string]uint32{"default": 0, "team-a": 42}, added: map[string]cni.PodPort{}},
	}
	if err := cni.WriteConflist(e.conf, e.sock); err != nil {
		t.Fatal(err)
	}
	e.list, err = libcni.ConfListFromFile(filepath.Join(e.conf, cni.ConflistName))
	if err != nil {
		t.Fatal(err)
	}
	e.cni = libcni.NewCNIConfigWithCacheDir([]string{bin}, e.cache, nil)
	e.start()
	t.Cleanup(e.shutdown)
	return e
}

// start starts a server on the env's socket and state dir.
func (e *env) start() {
	e.t.Helper()
	e.reg = prometheus.NewRegistry()
	srv, err := cni.NewServer(cni.ServerConfig{SocketPath: e.sock, StateDir: e.state,
		OVSDBEndpoint: "unix:" + e.ovs.DBSock, HostNetNS: e.hostNS, PodNetwork: e.pn, Registry: e.reg})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	e.srv = srv
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("server: %v", err)
		}
		_ = srv.Close()
	}
}

func (e *env) shutdown() {
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
}

func (e *env) restart() {
	e.shutdown()
	e.start()
}

// pod is a pod sandbox: a netns and its CNI runtime config.
type pod struct {
	ns ns.NetNS
	rt *libcni.RuntimeConf
}

func (e *env) newPod(name string) *pod {
	e.t.Helper()
	n, err := testutils.NewNS()
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = n.Close(); _ = testutils.UnmountNS(n) })
	id := "c" + filepath.Base(n.Path())
	return &pod{ns: n, rt: &libcni.RuntimeConf{ContainerID: id, NetNS: n.Path(), IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "team-a"}, {"K8S_POD_NAME", name}}}}
}

func (e *env) add(p *pod) (*current.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := e.cni.AddNetworkList(ctx, e.list, p.rt)
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(r)
}

func (e *env) mustAdd(p *pod) *current.Result {
	e.t.Helper()
	r, err := e.add(p)
	if err != nil {
		e.t.Fatalf("ADD %s: %v", p.rt.ContainerID, err)
	}
	return r
}

func (e *env) del(p *pod) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return e.cni.DelNetworkList(ctx, e.list, p.rt)
}

func (e *env) check(p *pod) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return e.cni.CheckNetworkList(ctx, e.list, p.rt)
}

// leases returns the lease store as container ID → IP.
func (e *env) leases() map[string]netip.Addr {
	e.t.Helper()
	ls, err := e.srv.Leases().Leases()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]netip.Addr{}
	for _, l := range ls {
		if prev, dup := out[l.ContainerID]; dup {
			e.t.Fatalf("container %s holds two leases: %s and %s", l.ContainerID, prev, l.IP)
		}
		out[l.ContainerID] = l.IP
	}
	return out
}

// port returns the OVS port of p (ok=false if missing).
func (e *env) port(p *pod) (ovsdb.PortInfo, bool) {
	e.t.Helper()
	ports, err := e.db.Ports(context.Background(), "br0")
	if err != nil {
		e.t.Fatal(err)
	}
	name := cni.HostVethName(p.rt.ContainerID, p.rt.IfName)
	for _, pi := range ports {
		if pi.Name == name {
			return pi, true
		}
	}
	return ovsdb.PortInfo{}, false
}

// hostVethExists reports whether p's host veth exists in the vswitchd netns.
func (e *env) hostVethExists(p *pod) bool {
	e.t.Helper()
	exists := false
	err := ns.WithNetNSPath(e.hostNS, func(ns.NetNS) error {
		_, err := netlinksafe.LinkByName(cni.HostVethName(p.rt.ContainerID, p.rt.IfName))
		exists = err == nil
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return exists
}

// flowCount returns the number of flows carrying p's pod cookie.
func (e *env) flowCount(p *pod, namespace, name string) int {
	e.t.Helper()
	got, err := e.pn.br.DumpFlows(context.Background(),
		ovs.ByCookie(ovs.MatchOwner(ovs.CookiePod, "pod/"+namespace+"/"+name)))
	if err != nil {
		e.t.Fatal(err)
	}
	return len(got)
}

// cniCode returns the CNI error code of err (0 if it is not a CNI error).
func cniCode(err error) uint {
	var ce *types.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

func podIP(t *testing.T, r *current.Result) netip.Addr {
	t.Helper()
	if len(r.IPs) != 1 {
		t.Fatalf("result has %d IPs, want 1: %v", len(r.IPs), r)
	}
	a, ok := netip.AddrFromSlice(r.IPs[0].Address.IP.To4())
	if !ok {
		t.Fatalf("bad IP in %v", r)
	}
	return a
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	idx := func(q float64) int {
		i := int(q*float64(len(d))+0.5) - 1
		return min(max(i, 0), len(d)-1)
	}
	return d[idx(0.5)], d[idx(0.99)]
}
