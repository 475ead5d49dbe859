package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/realnode"
)

// nodeReadyTimeout bounds the start of one node (agent sync, CNI config).
const nodeReadyTimeout = 3 * time.Minute

// Node is one lab node and the components running for it.
type Node struct {
	Name    string
	IP      netip.Addr
	Net     *netlab.Node
	Kubelet *kubelet.Kubelet
	// Agent is the node's sdn-node process; it serves /metrics, /healthz and
	// /readyz on MetricsAddr (127.0.0.1).
	Agent       *netlab.Process
	MetricsAddr string
	// Dir holds the node's CNI conf dir (net.d), libcni cache, IP leases,
	// the CNI server socket and the agent's log (sdn-node.log); on a real
	// node, everything of the node (see pkg/lab/realnode).
	Dir string
	// Real is the node's containerd and kubelet, and Tap serves and probes
	// its pods (containerd labs; Kubelet and Agent are nil then).
	Real *realnode.Node
	Tap  *kubelet.Tap

	kubeletRun, tapRun *goroutine
}

// goroutine is a component running until its context is cancelled.
type goroutine struct {
	cancel context.CancelFunc
	done   chan error
}

func spawn(fn func(ctx context.Context) error) *goroutine {
	ctx, cancel := context.WithCancel(context.Background())
	g := &goroutine{cancel: cancel, done: make(chan error, 1)}
	go func() { g.done <- fn(ctx) }()
	return g
}

// stop cancels and waits up to timeout; nil-safe.
func (g *goroutine) stop(timeout time.Duration) {
	if g == nil {
		return
	}
	g.cancel()
	select {
	case <-g.done:
	case <-time.After(timeout):
	}
}

// exited returns the component's error if it has returned.
func (g *goroutine) exited() (bool, error) {
	select {
	case err := <-g.done:
		g.done <- err // keep it for stop and later callers
		return true, err
	default:
		return false, nil
	}
}

func (n *Node) confDir() string    { return filepath.Join(n.Dir, "net.d") }
func (n *Node) socketPath() string { return filepath.Join(n.Dir, "cni", "cni-server.sock") }

// OfctlTarget is the ovs-ofctl target of the node's br0 (its mgmt socket).
func (n *Node) OfctlTarget() string { return "unix:" + filepath.Join(n.Net.RunDir, "br0.mgmt") }

// Ofctl runs `ovs-ofctl -O OpenFlow13 args...` against the node's OVS.
func (n *Node) Ofctl(args ...string) (string, error) { return n.Net.Ofctl(args...) }

// Node returns the node called name, or nil.
func (l *Lab) Node(name string) *Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.node[name]
}

// Nodes returns the nodes in creation order.
func (l *Lab) Nodes() []*Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Node, 0, len(l.ord))
	for _, n := range l.ord {
		out = append(out, l.node[n])
	}
	return out
}

// AddNodes creates the nodes (netns, OVS, agent, CNI server, kubelet) and
// returns once every agent is ready and has its CNI configuration written.
// A node that fails half-way is left for Close.
func (l *Lab) AddNodes(ctx context.Context, names ...string) error {
	var nodes []*Node
	for _, name := range names {
		n, err := l.addNetNode(name)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = l.startNode(ctx, n) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *Lab) addNetNode(name string) (*Node, error) {
	l.mu.Lock()
	idx := len(l.ord)
	if l.node[name] != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("node %s exists", name)
	}
	n := &Node{Name: name, IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + idx)}),
		Dir: filepath.Join(l.cfg.StateDir, "nodes", name)}
	l.node[name] = n
	l.ord = append(l.ord, name)
	l.mu.Unlock()
	if idx >= MaxNodes {
		return nil, fmt.Errorf("node %s: no underlay address left", name)
	}
	l.progress("%s: namespace %s-%s, underlay %s, ovsdb-server + ovs-vswitchd", name, l.cfg.Prefix, name, n.IP)
	nn, err := l.Net.AddNode(name, netip.PrefixFrom(n.IP, 24))
	if err != nil {
		return nil, err
	}
	n.Net = nn
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	return n, nil
}

// startNode starts the kubelet (it registers the Node, so the controller
// allocates the HostSubnet the agent waits for), the agent and, once the
// agent is ready, the CNI server and the conflist.
func (l *Lab) startNode(ctx context.Context, n *Node) error {
	if l.realRuntime() {
		return l.startRealNodeAndAgent(ctx, n)
	}
	k, err := kubelet.New(kubelet.Config{
		NodeName: n.Name, NodeIP: n.IP, Kube: l.Kube, NodeNetNS: n.Net.NetNS.Path,
		CNIConfDir: n.confDir(), CNIBinDir: l.cniBinDir(), CNICacheDir: filepath.Join(n.Dir, "cache"),
		PodNetNSPrefix: fmt.Sprintf("%s-%s-kp-", l.cfg.Prefix, n.Name), NodeStatusPeriod: 5 * time.Second,
	})
	if err != nil {
		return err
	}
	n.Kubelet = k
	l.Kubelets.Add(k)
	n.kubeletRun = spawn(k.Run)
	if err := l.startAgent(n); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	return l.waitAgent(ctx, n)
}

// startAgent starts the real sdn-node binary for n, as a process of the
// root network namespace (it reaches the API server on loopback) that
// drives the node's OVS through its sockets and its tun0, routes and
// iptables through --host-netns.
func (l *Lab) startAgent(n *Node) error {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	n.MetricsAddr = addr
	argv := []string{l.cfg.NodeAgent, "--node-name=" + n.Name, "--node-ip=" + n.IP.String(),
		"--kubeconfig=" + l.Kubeconfig(), "--ovsdb=" + n.Net.DBSock, "--ofctl-target=" + n.OfctlTarget(),
		"--datapath-type=netdev", "--host-netns=" + n.Net.NetNS.Path, "--health-check-period=1s",
		"--cni-socket=" + n.socketPath(), "--cni-state-dir=" + filepath.Join(n.Dir, "ipam"),
		"--cni-conf-dir=" + n.confDir(), "--metrics-bind-address=" + addr, "--v=2"}
	argv = append(argv, l.dnsServerFlag()...)
	p, err := l.Net.StartHost(n.Name+"/sdn-node", nil, n.AgentLog(), argv...)
	if err != nil {
		return err
	}
	n.Agent = p
	return nil
}

// AgentLog is the path of the node agent's log: on a real node, the log of the newest
// sdn-node container the kubelet keeps.
func (n *Node) AgentLog() string {
	if n.Real == nil {
		return filepath.Join(n.Dir, "sdn-node.log")
	}
	logs, _ := filepath.Glob(filepath.Join(n.Real.Config().LogDir(), "pods", "*_sdn-node-*", "sdn-node", "*.log"))
	newest, at := filepath.Join(n.Real.Config().LogDir(), "pods", "(no sdn-node container yet)"), time.Time{}
	for _, l := range logs {
		if st, err := os.Stat(l); err == nil && st.ModTime().After(at) {
			newest, at = l, st.ModTime()
		}
	}
	return newest
}

// waitAgent waits until the agent is ready and has written the CNI
// conflist (its readiness signal to the kubelet).
func (l *Lab) waitAgent(ctx context.Context, n *Node) error {
	conflist := filepath.Join(n.confDir(), cni.ConflistName)
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, nodeReadyTimeout, true, func(ctx context.Context) (bool, error) {
		if n.Agent.Exited() {
			return false, fmt.Errorf("node agent exited; its log %s ends:\n%s", n.AgentLog(), tail(n.AgentLog(), 2000))
		}
		if done, err := n.kubeletRun.exited(); done {
			return false, fmt.Errorf("kubelet exited: %v", err)
		}
		_, err := os.Stat(conflist)
		return err == nil && n.AgentReady(ctx), nil
	})
	if err != nil {
		return fmt.Errorf("node %s: waiting for the node agent: %w", n.Name, err)
	}
	flows, _ := n.AgentFlows(ctx)
	l.progress("%s: node agent ready (%d flows), CNI server on %s", n.Name, flows, n.socketPath())
	return nil
}

// stop stops the node's components: the kubelet first (its pods go through
// CNI DEL while the agent's CNI server still runs), then the agent (which
// removes the conflist and stops its CNI server). OVS and the netns stay
// for netlab.
func (n *Node) stop() error {
	if n.Real != nil {
		n.tapRun.stop(10 * time.Second)
		return n.Real.Stop()
	}
	n.kubeletRun.stop(time.Minute)
	if n.Agent != nil {
		n.Agent.Stop(30 * time.Second)
	}
	return nil
}
