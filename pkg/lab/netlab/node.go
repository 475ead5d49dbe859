package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
)

// Node is a lab node: a netns with an uplink on the underlay and a private Open vSwitch.
type Node struct {
	Name   string
	NetNS  NetNS        // <prefix>-<name>
	IP     netip.Prefix // node IP, on br-phy's internal interface
	DBSock string       // "unix:<RunDir>/db.sock"
	RunDir string       // OVS_RUNDIR (= DBDIR = LOGDIR): conf.db, sockets, pidfiles, logs

	lab   *Lab
	mac   string // br-phy MAC once the node is up, for the peers' tunnel neighbours; lab.mu
	mu    sync.Mutex
	procs map[string]*Process // by component: "ovsdb-server", "ovs-vswitchd"
	pods  map[string]*Pod
}

// AddNode creates node name: netns <prefix>-<name>, an uplink veth (eth0) to the underlay
// bridge, a private ovsdb-server + ovs-vswitchd running inside the netns, and the netdev
// bridge br-phy holding eth0 with ip on br-phy's internal interface; it writes the tunnel
// neighbour entries between the new node and the others (see the package doc). It does not create br0
// (that is the node agent's job, or the test's). Not idempotent: a second call with the same
// name fails. On failure the partial node is removed by Lab.Close.
func (l *Lab) AddNode(name string, ip netip.Prefix) (*Node, error) {
	if err := validNodeName(name); err != nil {
		return nil, err
	}
	n := &Node{Name: name, IP: ip, lab: l, procs: map[string]*Process{}, pods: map[string]*Pod{},
		RunDir: filepath.Join(l.StateDir, name)}
	n.DBSock = "unix:" + filepath.Join(n.RunDir, "db.sock")
	if err := l.registerNode(n); err != nil {
		return nil, err
	}
	if err := n.setup(); err != nil {
		return nil, fmt.Errorf("add node %s: %w", name, err)
	}
	if err := l.primeNeighbors(n); err != nil {
		return nil, fmt.Errorf("add node %s: %w", name, err)
	}
	return n, nil
}

func (l *Lab) registerNode(n *Node) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("add node %s: lab %q is closed", n.Name, l.Prefix)
	}
	if l.nodes[n.Name] != nil {
		return fmt.Errorf("add node %s: exists", n.Name)
	}
	l.nodes[n.Name] = n
	return nil
}

func (n *Node) setup() error {
	ns, err := n.lab.newNetNS(n.lab.Prefix + "-" + n.Name)
	n.NetNS = ns
	if err != nil {
		return err
	}
	if err := ns.arpIgnore(); err != nil {
		return err
	}
	if err := n.lab.attachUplink(ns, n.Name); err != nil {
		return err
	}
	if err := n.startOVS(); err != nil {
		return err
	}
	return n.ensurePhysBridge()
}

// ensurePhysBridge creates br-phy (netdev) with eth0 as a port, puts the node IP on
// br-phy's internal interface and routes the external hosts' networks through it.
// Idempotent; also used after ovs-vswitchd restarts (the tap behind br-phy, and with it the
// address and the routes, disappears with the vswitchd).
func (n *Node) ensurePhysBridge() error {
	_, err := n.Vsctl("--may-exist", "add-br", PhysBridge,
		"--", "set", "Bridge", PhysBridge, "datapath_type=netdev",
		"--", "--may-exist", "add-port", PhysBridge, uplinkName)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", PhysBridge, err)
	}
	if err := n.NetNS.ip("addr", "replace", n.IP.String(), "dev", PhysBridge); err != nil {
		return fmt.Errorf("node IP on %s: %w", PhysBridge, err)
	}
	if err := n.NetNS.ip("link", "set", PhysBridge, "up"); err != nil {
		return fmt.Errorf("%s up: %w", PhysBridge, err)
	}
	return n.lab.routeToExternalHosts(n) // routes through br-phy died with it too
}

// Env is the environment that points the OVS tools at this node's OVS (OVS_RUNDIR & co.).
func (n *Node) Env() []string {
	return []string{"OVS_RUNDIR=" + n.RunDir, "OVS_DBDIR=" + n.RunDir,
		"OVS_LOGDIR=" + n.RunDir, "OVS_SYSCONFDIR=" + n.RunDir}
}

// Vsctl runs ovs-vsctl against the node's ovsdb-server (waiting for ovs-vswitchd to apply the
// change, 10 s at most) and returns stdout.
func (n *Node) Vsctl(args ...string) (string, error) {
	argv := append([]string{"ovs-vsctl", "--db=" + n.DBSock, "--timeout=10"}, args...)
	return runT(n.Env(), argv...)
}

// Ofctl runs `ovs-ofctl -O OpenFlow13 args...`; a bridge name argument reaches the bridge
// through <RunDir>/<bridge>.mgmt (OVS_RUNDIR), e.g. Ofctl("dump-flows", "br0").
func (n *Node) Ofctl(args ...string) (string, error) {
	return runT(n.Env(), append([]string{"ovs-ofctl", "-O", "OpenFlow13"}, args...)...)
}

// Appctl runs ovs-appctl; the target defaults to this node's ovs-vswitchd, pass "-t",
// "ovsdb-server" first to reach the database server.
func (n *Node) Appctl(args ...string) (string, error) {
	if len(args) == 0 || args[0] != "-t" {
		args = append([]string{"-t", "ovs-vswitchd"}, args...)
	}
	return runT(n.Env(), append([]string{"ovs-appctl", "--timeout=10"}, args...)...)
}

// Exec runs argv inside the node netns with the node's OVS environment and returns stdout.
func (n *Node) Exec(ctx context.Context, argv ...string) (string, error) {
	return run(ctx, n.Env(), append([]string{"ip", "netns", "exec", n.NetNS.Name}, argv...)...)
}

// Start runs a long-lived process inside the node netns (with the node's OVS environment),
// logging to <RunDir>/<name>.log; Lab.Close stops it.
func (n *Node) Start(name string, argv ...string) (*Process, error) {
	log := filepath.Join(n.RunDir, name+".log")
	return n.lab.startTracked(n.Name+"/"+name, n.NetNS, n.Env(), log, argv...)
}

// LogTail returns the last max bytes of <RunDir>/<name>.log (e.g. "ovs-vswitchd"), for
// test failure messages.
func (n *Node) LogTail(name string, max int) string {
	b, err := os.ReadFile(filepath.Join(n.RunDir, name+".log"))
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
