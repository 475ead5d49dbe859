// Package lab runs sdn-lab: a Kubernetes cluster network built from real
// components on one machine, shared by cmd/sdn-lab and test/e2e.
//
// # What runs where
//
// One process (sdn-lab, or the e2e test binary) holds the whole lab:
//
//   - etcd, kube-apiserver and kube-controller-manager (pkg/testenv) as child
//     processes on the root namespace's loopback, with the network CRDs and
//     ClusterNetwork "default";
//   - sdn-controller (pkg/controller) as a goroutine; its egress-node health
//     checks dial from the underlay host "<prefix>-ctl" (198.18.0.250), never
//     from the root namespace;
//   - per node a network namespace "<prefix>-<node>" on the underlay
//     198.18.0.0/24 (pkg/lab/netlab) running its own ovsdb-server and
//     ovs-vswitchd (userspace datapath); the node agent, the real sdn-node
//     binary, as a child process of the root namespace (OVS through the
//     node's unix sockets, tun0, routes and iptables inside the node netns
//     through --host-netns, its CNI server on a socket under the state dir,
//     /metrics and /readyz on a loopback port); and as a goroutine the
//     kubelet stand-in (pkg/lab/kubelet), which runs pods through the real
//     sdn-cni binary (installed as <state>/cni/bin/ovs-sdn) in pod
//     namespaces "<prefix>-<node>-kp-<id>";
//   - the outside world (outside.go): netlab's external host "<prefix>-ext"
//     on the underlay with servers on 203.0.113.1–16, and the lab's DNS
//     server (zone lab.example., 203.0.113.53) in it, which the agents
//     query from their node's netns.
//
// The lab imports neither the agent (pkg/node) nor the CLI's command line:
// it runs the agent's binary and calls sdnctl's library functions. The
// components reach the API server on 127.0.0.1 from the root namespace;
// nothing in a node or pod namespace talks to the control plane, so nothing
// needs to listen outside loopback and the lab's namespaces.
//
// That is the stand-in runtime. With Config.Runtime RuntimeContainerd
// (realnodes.go) every node is a real one instead (pkg/lab/realnode:
// containerd, runc and a kubelet in the node's network namespace and a mount
// namespace of its own), kube-scheduler joins the control plane, and ovs-sdn
// is installed from its manifests with images built by pkg/lab/images: the
// agents are the DaemonSet's pods, the controller the Deployment's. Nodes
// reach the API server through a relay on the underlay's gateway address
// (Gateway), the API server reaches kubelets through its egress selector and
// a CONNECT proxy dialling into the underlay (pkg/lab/relay); CoreDNS serves
// cluster.local at ClusterDNSIP (clusterdns.go); a kubelet.Tap
// per node gives real pods the stand-in's servers and probes, so every suite
// runs on both runtimes.
//
// # State dir
//
//	<StateDir>/sdn-lab.pid       the owning process (Down signals it)
//	<StateDir>/prefix            the netns prefix (Down sweeps it)
//	<StateDir>/control-plane/    testenv: etcd data, certificates, logs, kubeconfig
//	<StateDir>/<prefix>/<node>/  the node's OVS (conf.db, db.sock, br0.mgmt, logs)
//	<StateDir>/nodes/<node>/     CNI conf dir, libcni cache, IP leases, CNI socket,
//	                             sdn-node.log
//	<StateDir>/cni/bin/ovs-sdn   the CNI plugin
//	<StateDir>/dns/records.zone  the DNS records, when WatchDNSFile runs (make run)
//
// and in a containerd lab:
//
//	<StateDir>/nodes/<node>/     everything of the real node (pkg/lab/realnode)
//	<StateDir>/egress.sock       the API server's CONNECT proxy to the kubelets,
//	<StateDir>/egress-selector.yaml   and its egress selector configuration
//	<StateDir>/manifests/        ovs-sdn as rendered for the lab and applied
//	<StateDir>/cluster-dns.yaml  the cluster DNS (CoreDNS) as applied (clusterdns.go)
//	<StateDir>/tools-bin         where the pinned tools are (sdn-lab exec)
//
// # Teardown
//
// Close stops the kubelets first (their pods go through CNI DEL while the
// agents still run), then the CNI servers and agents, the controller, the
// node namespaces with their OVS (netlab), the control plane, and removes the
// state dir. Every child process also has Pdeathsig, so a killed lab leaves
// only namespaces and files, which Down (netlab.Sweep) removes. Real nodes
// stop by realnode.Node.Stop (pods through the runtime, host-network ones
// such as the agents last); what a killed one leaves (containers, mounts,
// cgroups) realnode.Sweep removes, before netlab's sweep.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned"
	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/dnsserver"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/realnode"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

// Defaults of Config.
const (
	DefaultStateDir = "/run/sdn-lab"
	DefaultPrefix   = "sdnlab"
	// MaxNodes bounds Config.Nodes: node IPs are 198.18.0.11 … .210.
	MaxNodes = 200
)

// Config describes the lab to bring up.
type Config struct {
	// Nodes is the number of nodes, node1 … nodeN (1 … MaxNodes).
	Nodes int
	// PluginName selects the isolation mode (networkv1 plugin names;
	// "" = networkpolicy).
	PluginName string
	// StateDir holds everything the lab writes (DefaultStateDir). It must be
	// short: OVS and CNI unix socket paths live under it.
	StateDir string
	// Prefix names the lab's network namespaces (DefaultPrefix; see
	// netlab.ValidPrefix).
	Prefix string
	// CNIPlugin is the sdn-cni binary (default: FindBinary("sdn-cni")).
	CNIPlugin string
	// NodeAgent is the sdn-node binary (default: FindBinary("sdn-node")).
	NodeAgent string
	// PortmapPlugin is the portmap CNI plugin the conflist chains after sdn-cni for
	// hostPorts (default: the "portmap" next to CNIPlugin, else FindBinary("portmap");
	// `make build` puts it in _output/bin).
	PortmapPlugin string
	// Runtime runs the pods: RuntimeStandIn (default) or RuntimeContainerd (real nodes,
	// ovs-sdn installed from its manifests; see realnodes.go). A containerd lab builds
	// its binaries into images itself and needs neither CNIPlugin nor NodeAgent.
	Runtime string
	// Out receives progress lines (nil: discarded).
	Out io.Writer
}

func (c *Config) complete() error {
	setDefault(&c.StateDir, DefaultStateDir)
	setDefault(&c.Prefix, DefaultPrefix)
	setDefault(&c.PluginName, networkv1.NetworkPolicyPluginName)
	setDefault(&c.Runtime, RuntimeStandIn)
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Nodes < 1 || c.Nodes > MaxNodes {
		return fmt.Errorf("lab: %d nodes: want 1 … %d", c.Nodes, MaxNodes)
	}
	if err := netlab.ValidPrefix(c.Prefix); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	switch c.Runtime {
	case RuntimeContainerd:
		return nil
	case RuntimeStandIn:
	default:
		return fmt.Errorf("lab: runtime %q: want %s or %s", c.Runtime, RuntimeStandIn, RuntimeContainerd)
	}
	for _, b := range []struct {
		path *string
		name string
	}{{&c.CNIPlugin, "sdn-cni"}, {&c.NodeAgent, "sdn-node"}} {
		if *b.path != "" {
			continue
		}
		p, err := FindBinary(b.name)
		if err != nil {
			return err
		}
		*b.path = p
	}
	return c.findPortmap()
}

func (c *Config) findPortmap() error {
	if c.PortmapPlugin != "" {
		return nil
	}
	next := filepath.Join(filepath.Dir(c.CNIPlugin), "portmap")
	if st, err := os.Stat(next); err == nil && st.Mode().IsRegular() {
		c.PortmapPlugin = next
		return nil
	}
	p, err := FindBinary("portmap")
	c.PortmapPlugin = p
	return err
}

func setDefault(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	Env      *testenv.Env
	Kube     kubernetes.Interface
	Network  versioned.Interface
	Net      *netlab.Lab
	Kubelets kubelet.Group
	// Ext and DNS are the outside world (outside.go).
	Ext *netlab.ExternalHost
	DNS *dnsserver.Server
	// ControllerNetNS is the underlay host "<prefix>-ctl" (ControllerUnderlayIP)
	// from which the in-process sdn-controller's egress health checks dial
	// the nodes: the controller runs in the root namespace, where no node
	// address is reachable (and must not be dialled).
	ControllerNetNS netlab.NetNS

	cfg  Config
	ctl  *controllerRun
	real *realLab // containerd labs only
	mu   sync.Mutex
	node map[string]*Node
	ord  []string // node names in creation order

	closeOnce sync.Once
	closeErr  error
}

// Up starts the lab and returns once every node's agent is ready and has
// written its CNI configuration. On error (also when ctx ends half-way)
// everything started so far is torn down. The caller must Close the Lab.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	if err := claimStateDir(cfg.StateDir, cfg.Prefix); err != nil {
		return nil, err
	}
	l := &Lab{cfg: cfg, node: map[string]*Node{}}
	if err := l.start(ctx); err != nil {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up: %w", cerr))
		}
		return nil, err
	}
	return l, nil
}

func (l *Lab) start(ctx context.Context) error {
	if l.realRuntime() {
		return l.startReal(ctx)
	}
	l.progress("starting etcd, kube-apiserver and kube-controller-manager")
	if err := l.startControlPlane(ctx); err != nil {
		return err
	}
	if err := installCNIPlugins(l.cniBinDir(), map[string]string{
		cni.PluginType: l.cfg.CNIPlugin, cni.PortmapPluginType: l.cfg.PortmapPlugin}); err != nil {
		return err
	}
	if err := l.startUnderlay(); err != nil {
		return err
	}
	var err error
	if l.ControllerNetNS, err = l.Net.AddHost(controllerHost, ControllerUnderlayIP); err != nil {
		return fmt.Errorf("lab underlay: the controller's host: %w", err)
	}
	l.progress("control plane ready (%s); starting sdn-controller (egress probes from %s)",
		l.Env.Timings, l.ControllerNetNS.Name)
	if err := l.startController(ctx); err != nil {
		return err
	}
	return l.AddNodes(ctx, l.nodeNames()...)
}

// startReal starts a lab of real nodes: the relay for the API server's traffic to the
// kubelets, the control plane with kube-scheduler, the images, the underlay with the relay
// for the nodes' traffic to the API server, the nodes, ovs-sdn from its manifests, and the
// cluster DNS (clusterdns.go).
func (l *Lab) startReal(ctx context.Context) error {
	begin := time.Now()
	if err := l.startEgressProxy(); err != nil {
		return err
	}
	l.progress("starting etcd, kube-apiserver, kube-controller-manager and kube-scheduler")
	if err := l.startControlPlane(ctx); err != nil {
		return err
	}
	l.progress("control plane ready (%s); building images", l.Env.Timings)
	if err := l.buildImages(ctx); err != nil {
		return err
	}
	if err := l.startUnderlay(); err != nil {
		return err
	}
	if err := l.startAPIRelay(); err != nil {
		return err
	}
	if err := l.AddNodes(ctx, l.nodeNames()...); err != nil {
		return err
	}
	if err := l.installOVSSDN(ctx); err != nil {
		return err
	}
	if err := l.installClusterDNS(ctx); err != nil {
		return err
	}
	l.progress("lab of %d real nodes up in %v", l.cfg.Nodes, time.Since(begin).Round(time.Millisecond))
	return nil
}

func (l *Lab) startUnderlay() error {
	// The agents keep ovs-vswitchd's tunnel neighbours, as on real nodes.
	net, err := netlab.New(l.cfg.Prefix, netlab.WithStateRoot(l.cfg.StateDir), netlab.WithoutTunnelNeighbors())
	if err != nil {
		return fmt.Errorf("lab underlay: %w", err)
	}
	l.Net = net
	return l.startOutside()
}

func (l *Lab) nodeNames() []string {
	names := make([]string, l.cfg.Nodes)
	for i := range names {
		names[i] = fmt.Sprintf("node%d", i+1)
	}
	return names
}

// Config returns the completed configuration.
func (l *Lab) Config() Config { return l.cfg }

// Kubeconfig is the path of the admin kubeconfig of the lab's API server.
func (l *Lab) Kubeconfig() string { return l.Env.Kubeconfig }

func (l *Lab) progress(format string, args ...any) {
	fmt.Fprintf(l.cfg.Out, "sdn-lab: "+format+"\n", args...)
}

func (l *Lab) cniBinDir() string { return filepath.Join(l.cfg.StateDir, "cni", "bin") }

// Close tears the lab down (see the package doc) and removes the state
// dir. It is idempotent and tries every step even when one fails.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Lab) close() error {
	var errs []error
	l.mu.Lock()
	nodes := make([]*Node, 0, len(l.ord))
	for _, n := range l.ord {
		nodes = append(nodes, l.node[n])
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	nodeErrs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); nodeErrs[i] = n.stop() }()
	}
	wg.Wait()
	errs = append(errs, nodeErrs...)
	if l.ctl != nil {
		errs = append(errs, l.ctl.stop(10*time.Second))
	}
	l.stopOutside()
	if l.real != nil {
		errs = append(errs, l.real.close())
	}
	if l.Net != nil {
		errs = append(errs, l.Net.Close())
	}
	if l.Env != nil {
		errs = append(errs, l.Env.Stop())
	}
	// A real node whose start failed half-way, a pod netns the kubelet could
	// not delete, or a namespace of a node whose setup failed half-way: sweep.
	errs = append(errs, realnode.Sweep(filepath.Join(l.cfg.StateDir, "nodes")))
	errs = append(errs, netlab.Sweep(l.cfg.Prefix, netlab.WithStateRoot(l.cfg.StateDir)))
	errs = append(errs, os.RemoveAll(l.cfg.StateDir))
	return errors.Join(errs...)
}

// FindBinary returns one of the project's binaries (sdn-cni, sdn-node):
// $OVS_SDN_BIN/<name>, else <name> next to the running executable, else
// <module>/_output/bin/<name>.
func FindBinary(name string) (string, error) {
	var cands []string
	if d := os.Getenv("OVS_SDN_BIN"); d != "" {
		cands = append(cands, filepath.Join(d, name))
	}
	if exe, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(exe), name))
	}
	if root, err := testenv.ModuleRoot(); err == nil {
		cands = append(cands, filepath.Join(root, "_output", "bin", name))
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("lab: the %s binary is not built (looked at %s); run 'make build'",
		name, strings.Join(cands, ", "))
}

// installCNIPlugins copies each plugin binary (name → source) to <binDir>/<name>, the
// names libcni looks for (the conflist's plugin types: sdn-cni and portmap).
func installCNIPlugins(binDir string, plugins map[string]string) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("lab: CNI bin dir: %w", err)
	}
	for name, src := range plugins {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("lab: reading the CNI plugin %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(binDir, name), b, 0o755); err != nil {
			return fmt.Errorf("lab: installing the CNI plugin %s: %w", name, err)
		}
	}
	return nil
}
