package netlab

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Components of a node's Open vSwitch, for Restart.
const (
	OVSDBServer = "ovsdb-server"
	OVSVswitchd = "ovs-vswitchd"
)

const (
	vswitchSchema = "/usr/share/openvswitch/vswitch.ovsschema"
	readyTimeout  = 15 * time.Second
	stopGrace     = 2 * time.Second
)

// startOVS creates the node's conf.db and starts ovsdb-server, then ovs-vswitchd.
func (n *Node) startOVS() error {
	if err := os.MkdirAll(n.RunDir, 0o755); err != nil {
		return fmt.Errorf("ovs run dir: %w", err)
	}
	db := filepath.Join(n.RunDir, "conf.db")
	if _, err := runT(nil, "ovsdb-tool", "create", db, vswitchSchema); err != nil {
		return fmt.Errorf("create %s: %w", db, err)
	}
	if err := n.startComponent(OVSDBServer); err != nil {
		return err
	}
	if _, err := n.Vsctl("--no-wait", "init"); err != nil {
		return fmt.Errorf("ovs-vsctl init: %w", err)
	}
	return n.startComponent(OVSVswitchd)
}

// componentArgs is the command line of a component. Neither daemon detaches: the lab owns
// them as children. Pidfiles, control sockets and log files use the OVS_* dirs of Env.
func (n *Node) componentArgs(c string) ([]string, error) {
	switch c {
	case OVSDBServer:
		return []string{OVSDBServer, filepath.Join(n.RunDir, "conf.db"),
			"--remote=punix:" + filepath.Join(n.RunDir, "db.sock"),
			"--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
			"--pidfile", "--log-file", "-vconsole:emer"}, nil
	case OVSVswitchd:
		// No kernel module here: --disable-system skips the system datapath provider.
		// System routes must stay enabled: tunnels route through the netns routing table.
		return []string{OVSVswitchd, n.DBSock, "--disable-system",
			"--pidfile", "--log-file", "-vconsole:emer"}, nil
	}
	return nil, fmt.Errorf("unknown OVS component %q", c)
}

// startComponent starts c inside the node netns and waits until it answers ovs-appctl.
func (n *Node) startComponent(c string) error {
	argv, err := n.componentArgs(c)
	if err != nil {
		return err
	}
	out := filepath.Join(n.RunDir, c+".out")
	p, err := n.lab.startProcess(n.Name+"/"+c, n.NetNS, n.Env(), out, argv...)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.procs[c] = p
	n.mu.Unlock()
	return n.waitReady(c, p)
}

func (n *Node) waitReady(c string, p *Process) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		_, err := n.Appctl("-t", c, "version")
		if err == nil {
			return nil
		}
		if p.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("%s on node %s not ready: %w; log:\n%s",
				c, n.Name, err, n.LogTail(c, 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart kills component c ("ovsdb-server" or "ovs-vswitchd") with SIGKILL and starts it
// again on the same database, as a crash followed by a supervisor restart would. After a
// vswitchd restart it re-ensures br-phy and the node IP (the internal port's tap device dies
// with the vswitchd) and rewrites the tunnel neighbours; br0 comes back from the database,
// its OpenFlow flows do not.
func (n *Node) Restart(c string) error {
	if _, err := n.componentArgs(c); err != nil {
		return err
	}
	n.mu.Lock()
	p := n.procs[c]
	n.mu.Unlock()
	if p != nil {
		p.Stop(0)
	}
	if err := n.startComponent(c); err != nil {
		return fmt.Errorf("restart %s on node %s: %w", c, n.Name, err)
	}
	if c == OVSVswitchd {
		if err := n.ensurePhysBridge(); err != nil {
			return err
		}
		// The tunnel-neighbour cache died with the vswitchd.
		return n.lab.primeNeighbors(n)
	}
	return nil
}

// Process returns the running process of component c, or nil.
func (n *Node) Process(c string) *Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.procs[c]
}

// stopAll stops vswitchd before ovsdb-server (so vswitchd does not spin reconnecting).
func (n *Node) stopAll() {
	n.mu.Lock()
	procs := n.procs
	n.procs = map[string]*Process{}
	n.mu.Unlock()
	for _, c := range []string{OVSVswitchd, OVSDBServer} {
		if p := procs[c]; p != nil {
			p.Stop(stopGrace)
		}
	}
}
