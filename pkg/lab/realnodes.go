package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/images"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/realnode"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/relay"
	"github.com/ovs-sdn/ovs-sdn/pkg/manifests"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

// Container runtimes of Config.Runtime.
const (
	// RuntimeStandIn runs pods with the kubelet stand-in (pkg/lab/kubelet) and the node
	// agent and controller as processes of the lab.
	RuntimeStandIn = "stand-in"
	// RuntimeContainerd runs real nodes (pkg/lab/realnode: containerd, runc, kubelet) and
	// installs ovs-sdn on them from manifests/ with the images of images/.
	RuntimeContainerd = "containerd"
)

// Gateway is the lab's own address on the underlay: the relay to the API server listens
// on Gateway:GatewayPort in the underlay namespace, so kubelets and host-network pods
// (the agent, the controller) reach the API server from the nodes.
var Gateway = netip.MustParseAddr("198.18.0.1")

// GatewayPort is the API relay's port.
const GatewayPort = 6443

// The lab's images of ovs-sdn, tagged by content: new binaries are a new tag, so applying
// the manifests again rolls them out.
const (
	labNodeImage       = "sdn-lab.local/ovs-sdn/sdn-node:" + images.IDTag
	labControllerImage = "sdn-lab.local/ovs-sdn/sdn-controller:" + images.IDTag
)

// realLab is what only a containerd lab has: the relays between nodes and control plane,
// the images and the ovs-sdn installation.
type realLab struct {
	egress *relay.Connect
	api    *relay.TCP
	// advertised relays Gateway:<API server's own port>, the kubernetes Service's endpoint.
	advertised *relay.TCP
	tools      string
	archive    string
	refs       map[string]string // image name (sdn-node, …) → reference

	mu      sync.Mutex
	install *manifests.Config // the configuration applied last
}

func (l *Lab) realRuntime() bool { return l.cfg.Runtime == RuntimeContainerd }

func (l *Lab) egressSocket() string { return filepath.Join(l.cfg.StateDir, "egress.sock") }
func (l *Lab) egressConfig() string { return filepath.Join(l.cfg.StateDir, "egress-selector.yaml") }

// startEgressProxy starts the CONNECT proxy the API server reaches kubelets (logs, exec,
// port-forward) and pods (pod and Service proxy) through. It dials from namespaces that
// netlab creates later: the proxy only needs their paths when it dials.
func (l *Lab) startEgressProxy() error {
	tools, err := testenv.ToolsBin()
	if err != nil {
		return err
	}
	l.real = &realLab{tools: tools}
	// For `sdn-lab exec` on real nodes (crictl, ctr).
	if err := os.WriteFile(filepath.Join(l.cfg.StateDir, "tools-bin"), []byte(tools+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(l.egressConfig(), relay.EgressSelectorConfig(l.egressSocket()), 0o600); err != nil {
		return err
	}
	// Kubelets are dialled from the underlay; pods (the API server's pod and Service
	// proxy, webhooks) from node1, a member of the pod network as a control-plane host
	// running ovs-sdn would be.
	routes := []relay.Route{
		{Prefix: netip.PrefixFrom(Gateway, 24), NetNS: "/run/netns/" + l.cfg.Prefix + "-underlay"},
		{Prefix: netip.MustParsePrefix(ClusterCIDR), NetNS: "/run/netns/" + l.cfg.Prefix + "-" + l.nodeNames()[0]},
	}
	p, err := relay.ListenConnect(l.egressSocket(), routes)
	if err != nil {
		return err
	}
	l.real.egress = p
	return nil
}

// controlPlaneOptions are testenv's options for the lab's runtime: a containerd lab also
// runs kube-scheduler and serves the API to the relay's address.
func (l *Lab) controlPlaneOptions() testenv.Options {
	o := testenv.Options{ControllerManager: true, Dir: filepath.Join(l.cfg.StateDir, "control-plane")}
	if l.realRuntime() {
		o.Scheduler = true
		o.ServingIPs = []netip.Addr{Gateway}
		// The API server advertises Gateway, so the kubernetes Service has an endpoint pods
		// can reach (startAPIRelay relays it), as on a cluster whose control plane is on the
		// nodes' network; its own default, 127.0.0.1, is no valid endpoint.
		o.ExtraAPIServerArgs = append(relay.APIServerArgs(l.egressConfig()), "--advertise-address="+Gateway.String())
	}
	return o
}

// buildImages builds pause, agnhost, CoreDNS, sdn-node, sdn-controller and the e2e tests'
// DNS querier into one archive (cached by content in <module>/_output/images).
func (l *Lab) buildImages(ctx context.Context) error {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return err
	}
	ag, err := images.Agnhost(l.real.tools)
	if err != nil {
		return err
	}
	dns, err := images.CoreDNS(l.real.tools)
	if err != nil {
		return err
	}
	node, err := images.Project("sdn-node", labNodeImage)
	if err != nil {
		return err
	}
	ctl, err := images.Project("sdn-controller", labControllerImage)
	if err != nil {
		return err
	}
	dnsutils, err := images.JessieDnsutils()
	if err != nil {
		return err
	}
	b := &images.Builder{ModuleRoot: root, Out: l.cfg.Out}
	res, err := b.Build(ctx, []images.Spec{images.Pause(), ag, dns, node, ctl, dnsutils})
	if err != nil {
		return err
	}
	l.real.archive = res.Archive
	l.real.refs = map[string]string{"sdn-node": res.Images[3].Refs[0], "sdn-controller": res.Images[4].Refs[0]}
	var sizes []string
	for _, im := range res.Images {
		sizes = append(sizes, fmt.Sprintf("%s %d MiB", im.Refs[0], im.Size>>20))
	}
	l.progress("images ready in %v (cached %v): %s", res.Duration.Round(time.Millisecond), res.Cached, strings.Join(sizes, ", "))
	return nil
}

// startAPIRelay puts Gateway on the underlay and relays Gateway:GatewayPort (what nodes are
// configured with) and Gateway:<the API server's port> (what it advertises) to the API
// server's loopback port.
func (l *Lab) startAPIRelay() error {
	if err := l.Net.AddUnderlayAddress(netip.PrefixFrom(Gateway, 24)); err != nil {
		return err
	}
	apiServer := strings.TrimPrefix(l.Env.URL, "https://")
	r, err := relay.ListenTCP(l.Net.Underlay.Path, netip.AddrPortFrom(Gateway, GatewayPort), apiServer)
	if err != nil {
		return err
	}
	l.real.api = r
	// The kubernetes Service's endpoint is Gateway at the API server's own port.
	port, err := netip.ParseAddrPort(apiServer)
	if err != nil {
		return fmt.Errorf("lab: API server address %q: %w", apiServer, err)
	}
	if port.Port() != GatewayPort {
		if l.real.advertised, err = relay.ListenTCP(l.Net.Underlay.Path, netip.AddrPortFrom(Gateway, port.Port()), apiServer); err != nil {
			return err
		}
	}
	return nil
}

// APIServerURL is where nodes reach the API server: the relay.
func APIServerURL() string { return fmt.Sprintf("https://%s:%d", Gateway, GatewayPort) }

// startRealNode starts containerd and the kubelet of n, and the tap that serves and probes
// its pods.
func (l *Lab) startRealNode(ctx context.Context, n *Node) error {
	rc := l.Env.ConfigFor("system:node:"+n.Name, "system:nodes")
	kc, err := realnode.KubeletKubeconfig(APIServerURL(), l.Env.Config.CAData, rc.CertData, rc.KeyData)
	if err != nil {
		return err
	}
	r, err := realnode.Start(ctx, realnode.Config{Name: n.Name, IP: n.IP, NetNS: n.Net.NetNS.Path, Dir: n.Dir,
		LabDir: l.cfg.StateDir, CgroupRoot: "/" + l.cfg.Prefix + "-" + n.Name, OVSRunDir: n.Net.RunDir,
		Kubeconfig: kc, ClientCA: l.Env.ClientCAPEM(), Images: []string{l.real.archive}, ToolsBin: l.real.tools,
		ClusterDNS: []netip.Addr{ClusterDNSIP}, Out: l.cfg.Out})
	if err != nil {
		return err
	}
	n.Real = r
	n.MetricsAddr = netip.AddrPortFrom(n.IP, manifests.DefaultNodeMetrics).String()
	tap, err := kubelet.NewTap(kubelet.TapConfig{NodeName: n.Name, Kube: l.Kube, Resolve: n.sandboxNetNS})
	if err != nil {
		return err
	}
	n.Tap = tap
	l.Kubelets.Add(tap)
	n.tapRun = spawn(tap.Run)
	return nil
}

// sandboxNetNS finds a running pod's sandbox through the node's runtime: the ready
// sandbox of the pod's UID, its pause process's network namespace and its address.
func (n *Node) sandboxNetNS(ctx context.Context, pod *corev1.Pod) (kubelet.Sandbox, error) {
	out, err := n.Real.Crictl(ctx, "pods", "--label", "io.kubernetes.pod.uid="+string(pod.UID), "--state", "ready", "--quiet")
	if err != nil {
		return kubelet.Sandbox{}, err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return kubelet.Sandbox{}, fmt.Errorf("pod %s/%s has no ready sandbox on node %s", pod.Namespace, pod.Name, n.Name)
	}
	js, err := n.Real.Crictl(ctx, "inspectp", "--output", "json", ids[0])
	if err != nil {
		return kubelet.Sandbox{}, err
	}
	var sb struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
		Info struct {
			Pid int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(js), &sb); err != nil || sb.Info.Pid <= 0 {
		return kubelet.Sandbox{}, fmt.Errorf("sandbox %s of pod %s/%s: no pid (%v)", ids[0], pod.Namespace, pod.Name, err)
	}
	ip, err := netip.ParseAddr(sb.Status.Network.IP)
	if err != nil {
		return kubelet.Sandbox{}, fmt.Errorf("sandbox %s of pod %s/%s: address %q: %w", ids[0], pod.Namespace, pod.Name, sb.Status.Network.IP, err)
	}
	return kubelet.Sandbox{NetNS: fmt.Sprintf("/proc/%d/ns/net", sb.Info.Pid), IP: ip}, nil
}

// labManifestsConfig is the lab's ovs-sdn configuration: the lab's address plan and mode,
// the userspace datapath, the API server through the relay, the lab's images (never
// pulled).
func (l *Lab) labManifestsConfig() (*manifests.Config, error) {
	mode, err := clusternetwork.ModeForPlugin(l.cfg.PluginName)
	if err != nil {
		return nil, err
	}
	level := 2
	cfg := &manifests.Config{
		ClusterNetwork: []manifests.ClusterNetworkEntry{{CIDR: ClusterCIDR, HostPrefix: 32 - HostSubnetLength}},
		ServiceNetwork: []string{ServiceCIDR},
		Mode:           mode,
		LogLevel:       &level,
		Images: manifests.Images{Node: l.real.refs["sdn-node"], Controller: l.real.refs["sdn-controller"],
			PullPolicy: string(corev1.PullNever)},
		Node:      manifests.NodeConfig{DatapathType: "netdev"},
		APIServer: manifests.APIServer{Host: Gateway.String(), Port: GatewayPort},
	}
	cfg.Complete()
	return cfg, cfg.Validate()
}

// ManifestsConfig returns a copy of the ovs-sdn configuration applied last (containerd
// labs only), to change and ApplyManifests again.
func (l *Lab) ManifestsConfig() manifests.Config {
	l.real.mu.Lock()
	defer l.real.mu.Unlock()
	c := *l.real.install
	level := *c.LogLevel
	c.LogLevel = &level
	return c
}

// ApplyManifests renders cfg as `sdnctl render-manifests` does, into
// <StateDir>/manifests, and applies it as a cluster operator would: `kubectl apply
// --server-side --field-manager=ovs-sdn`. It returns once the apply is accepted; see
// WaitOVSSDN.
func (l *Lab) ApplyManifests(ctx context.Context, cfg *manifests.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	dir := filepath.Join(l.cfg.StateDir, "manifests")
	if err := manifests.Write(cfg, dir); err != nil {
		return err
	}
	if _, err := l.Kubectl(ctx, "apply", "--server-side", "--field-manager=ovs-sdn", "-f", dir); err != nil {
		return fmt.Errorf("applying the ovs-sdn manifests: %w", err)
	}
	l.real.mu.Lock()
	l.real.install = cfg
	l.real.mu.Unlock()
	return nil
}

// Kubectl runs the pinned kubectl with the lab's admin kubeconfig and returns its output.
func (l *Lab) Kubectl(ctx context.Context, args ...string) (string, error) {
	tools, err := testenv.ToolsBin()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(tools, "kubectl"), append([]string{"--kubeconfig", l.Kubeconfig()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// installOVSSDN applies the lab's configuration and waits until ovs-sdn runs everywhere.
func (l *Lab) installOVSSDN(ctx context.Context) error {
	cfg, err := l.labManifestsConfig()
	if err != nil {
		return err
	}
	begin := time.Now()
	l.progress("installing ovs-sdn from manifests (sdn-node DaemonSet, sdn-controller Deployment)")
	if err := l.ApplyManifests(ctx, cfg); err != nil {
		return err
	}
	if err := l.WaitOVSSDN(ctx, nodeReadyTimeout); err != nil {
		return err
	}
	l.progress("ovs-sdn rolled out in %v", time.Since(begin).Round(time.Millisecond))
	return nil
}

// close stops the relays.
func (r *realLab) close() error {
	var errs []error
	for _, t := range []*relay.TCP{r.api, r.advertised} {
		if t != nil {
			errs = append(errs, t.Close())
		}
	}
	if r.egress != nil {
		errs = append(errs, r.egress.Close())
	}
	return errors.Join(errs...)
}

// startRealNodeAndAgent starts a real node; once ovs-sdn is installed (a node added to a
// running lab), it also waits for the DaemonSet's agent on it.
func (l *Lab) startRealNodeAndAgent(ctx context.Context, n *Node) error {
	if err := l.startRealNode(ctx, n); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	l.real.mu.Lock()
	installed := l.real.install != nil
	l.real.mu.Unlock()
	if !installed {
		return nil
	}
	return l.WaitOVSSDN(ctx, nodeReadyTimeout)
}
