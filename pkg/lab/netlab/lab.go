package netlab

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
)

// DefaultStateRoot holds the state dirs of all labs (tmpfs, short paths for unix sockets).
const DefaultStateRoot = "/run/netlab"

// Option configures New and Sweep.
type Option func(*options)

type options struct {
	stateRoot      string
	detached       bool
	agentNeighbors bool
}

// WithStateRoot overrides DefaultStateRoot. Keep it short: unix socket paths are limited.
func WithStateRoot(dir string) Option { return func(o *options) { o.stateRoot = dir } }

// WithDetachedProcesses starts daemons in their own session without Pdeathsig, so they outlive
// the process that created the Lab (cmd/sdn-lab). Close still stops them; after a crash,
// Sweep does.
func WithDetachedProcesses() Option { return func(o *options) { o.detached = true } }

// WithoutTunnelNeighbors leaves ovs-vswitchd's tunnel-neighbour cache to the node agents
// (see the package doc): netlab writes no tnl/neigh entries on AddNode, after a vswitchd
// Restart, or periodically.
func WithoutTunnelNeighbors() Option { return func(o *options) { o.agentNeighbors = true } }

func buildOptions(opts []Option) options {
	o := options{stateRoot: DefaultStateRoot}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Lab is one multi-node network: an underlay netns with a Linux bridge, and the nodes, hosts
// and pods attached to it. Its methods are safe for concurrent use.
type Lab struct {
	Prefix   string
	StateDir string // <StateRoot>/<Prefix>
	Underlay NetNS  // <Prefix>-underlay, holding the bridge "underlay"

	opts    options
	spawner *spawner

	stopRefresh chan struct{} // closed by Close: ends refreshNeighbors
	refreshDone chan struct{}

	mu      sync.Mutex
	closed  bool
	nodes   map[string]*Node
	netns   []string    // every netns created, in creation order
	closers []io.Closer // probe servers: their sockets pin pod namespaces
	procs   []*Process  // processes started with Node.Start / Pod.Start
	// externals are the external hosts (exthost.go), whose networks every node routes to.
	externals []*ExternalHost
}

// New creates the lab's state dir and underlay. It fails if a netns or state dir with the
// prefix already exists (call Sweep first to clear a crashed run). On failure nothing is left
// behind. The caller must Close the Lab.
func New(prefix string, opts ...Option) (*Lab, error) {
	if err := ValidPrefix(prefix); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	l := &Lab{Prefix: prefix, StateDir: filepath.Join(o.stateRoot, prefix), opts: o,
		nodes: map[string]*Node{}}
	if left := NetNSWithPrefix(prefix + "-"); len(left) > 0 {
		return nil, fmt.Errorf("new lab %q: netns %v exist; Sweep first", prefix, left)
	}
	if err := os.Mkdir(l.StateDir, 0o755); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = os.MkdirAll(l.StateDir, 0o755)
		}
		if err != nil {
			return nil, fmt.Errorf("new lab %q: state dir: %w", prefix, err)
		}
	}
	l.spawner = newSpawner()
	if !o.agentNeighbors {
		l.stopRefresh, l.refreshDone = make(chan struct{}), make(chan struct{})
		go func() { defer close(l.refreshDone); l.refreshNeighbors(l.stopRefresh) }()
	}
	if err := l.setupUnderlay(); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("new lab %q: %w", prefix, err)
	}
	return l, nil
}

func (l *Lab) pidDir() string { return filepath.Join(l.StateDir, "pids") }

func (l *Lab) setupUnderlay() error {
	if err := os.MkdirAll(l.pidDir(), 0o755); err != nil {
		return fmt.Errorf("pid dir: %w", err)
	}
	ns, err := l.newNetNS(l.Prefix + "-underlay")
	if err != nil {
		return err
	}
	l.Underlay = ns
	if err := ns.ip("link", "add", underlayBridge, "type", "bridge"); err != nil {
		return fmt.Errorf("underlay bridge: %w", err)
	}
	if err := ns.ip("link", "set", underlayBridge, "up"); err != nil {
		return fmt.Errorf("underlay bridge up: %w", err)
	}
	return nil
}

// newNetNS creates a namespace and records it for Close (also when creation half-failed).
func (l *Lab) newNetNS(name string) (NetNS, error) {
	l.mu.Lock()
	l.netns = append(l.netns, name)
	l.mu.Unlock()
	return createNetNS(name)
}

// attachUplink connects ns to the underlay bridge with a veth: "u-<name>" on the bridge,
// "eth0" in ns, both up with TX offload off. It does not address eth0.
func (l *Lab) attachUplink(ns NetNS, name string) error {
	port := underlayPort(name)
	if err := l.Underlay.ip("link", "add", port, "type", "veth",
		"peer", "name", uplinkName, "netns", ns.Name); err != nil {
		return fmt.Errorf("uplink veth %s: %w", port, err)
	}
	if err := l.Underlay.ip("link", "set", port, "master", underlayBridge, "up"); err != nil {
		return fmt.Errorf("uplink %s on underlay bridge: %w", port, err)
	}
	if err := ns.ip("link", "set", uplinkName, "up"); err != nil {
		return fmt.Errorf("uplink eth0 up in %s: %w", ns.Name, err)
	}
	if err := l.Underlay.txOff(port); err != nil {
		return err
	}
	return ns.txOff(uplinkName)
}

// AddHost creates netns <prefix>-<name> attached to the underlay with ip on its eth0: a plain
// underlay host (the control plane of sdn-lab lives in one). Not idempotent: a second call
// with the same name fails.
func (l *Lab) AddHost(name string, ip netip.Prefix) (NetNS, error) {
	if err := validNodeName(name); err != nil {
		return NetNS{}, err
	}
	ns, err := l.newNetNS(l.Prefix + "-" + name)
	if err != nil {
		return ns, err
	}
	if err := l.attachUplink(ns, name); err != nil {
		return ns, fmt.Errorf("host %s: %w", name, err)
	}
	if err := ns.ip("addr", "add", ip.String(), "dev", uplinkName); err != nil {
		return ns, fmt.Errorf("host %s address: %w", name, err)
	}
	return ns, nil
}

// Node returns the node added under name, or nil.
func (l *Lab) Node(name string) *Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nodes[name]
}

func (l *Lab) addCloser(c io.Closer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closers = append(l.closers, c)
}

// Close removes everything the lab created: probe servers, every process (SIGTERM, then
// SIGKILL), every namespace (and with them all veths and bridges), and the state dir. It is
// idempotent; the returned error joins every step that failed, each step is tried anyway.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	closers, procs, nodes, netns := l.closers, l.procs, l.nodes, l.netns
	l.mu.Unlock()

	if l.stopRefresh != nil {
		close(l.stopRefresh)
		<-l.refreshDone
	}
	var errs []error
	for _, c := range closers {
		errs = append(errs, c.Close())
	}
	for _, p := range procs {
		p.Stop(stopGrace)
	}
	for _, n := range nodes {
		n.stopAll()
	}
	for i := len(netns) - 1; i >= 0; i-- {
		errs = append(errs, deleteNetNS(netns[i]))
	}
	if l.spawner != nil {
		l.spawner.stop()
	}
	// Belt and braces: anything that escaped (a child forked by a daemon) goes now.
	errs = append(errs, killLabProcesses(l.StateDir))
	if err := os.RemoveAll(l.StateDir); err != nil {
		errs = append(errs, fmt.Errorf("remove state dir: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close lab %q: %w", l.Prefix, err)
	}
	return nil
}

// startTracked starts a process that Close stops.
func (l *Lab) startTracked(name string, ns NetNS, env []string, logPath string, argv ...string) (*Process, error) {
	p, err := l.startProcess(name, ns, env, logPath, argv...)
	if p != nil {
		l.mu.Lock()
		l.procs = append(l.procs, p)
		l.mu.Unlock()
	}
	return p, err
}
