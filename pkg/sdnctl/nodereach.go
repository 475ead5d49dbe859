package sdnctl

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
)

// nodeReach says how sdnctl reaches each node's Open vSwitch (trace, and the
// multicast commands that wait for br0): through its OVS run directory —
// the local node's is defaultOVSRunDir, --ovs-rundir NODE=DIR or
// --ovs-rundir-root DIR (DIR/<node>, as in the netlab lab) name others —
// or single sockets (--node-target, --node-ovsdb, --appctl-target). A node
// nothing names is out of reach.
type nodeReach struct {
	bridge     string
	localNode  string
	rundirRoot string
	rundirs    map[string]string
	targets    map[string]string
	ovsdbs     map[string]string
	appctls    map[string]string
}

// addFlags registers the reach flags; localNode is the default of
// --local-node, bridgeHelp the help of --bridge.
func (o *nodeReach) addFlags(fs *pflag.FlagSet, localNode, bridgeHelp string) {
	fs.StringVar(&o.bridge, "bridge", "br0", bridgeHelp)
	fs.StringVar(&o.localNode, "local-node", localNode, "The node sdnctl runs on; its OVS is reached at "+defaultOVSRunDir+" unless named otherwise ($NODE_NAME, else the hostname).")
	fs.StringVar(&o.rundirRoot, "ovs-rundir-root", "", "Directory holding one OVS run directory per node, named like the node (e.g. /run/netlab/<prefix>).")
	fs.StringToStringVar(&o.rundirs, "ovs-rundir", nil, "NODE=DIR: the OVS run directory of a node (br0.mgmt, db.sock, ovs-vswitchd control socket). Repeatable.")
	fs.StringToStringVar(&o.targets, "node-target", nil, "NODE=TARGET: the ovs-ofctl target of a node's bridge, e.g. unix:/run/x/br0.mgmt. Repeatable.")
	fs.StringToStringVar(&o.ovsdbs, "node-ovsdb", nil, "NODE=ENDPOINT: a node's OVSDB, e.g. unix:/run/x/db.sock. Repeatable.")
	fs.StringToStringVar(&o.appctls, "appctl-target", nil, "NODE=PATH: a node's ovs-vswitchd control socket (ovs-vswitchd.<pid>.ctl). Repeatable.")
}

// localNodeName is $NODE_NAME, else the hostname.
func localNodeName() string {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	host, _ := os.Hostname()
	return host
}

// nodeOVS is how one node's OVS is reached.
type nodeOVS struct {
	appctl, ofctl, ovsdb string
}

// reach returns the sockets of node, or ok=false when nothing says how to reach it.
func (o *nodeReach) reach(nodeName string) (nodeOVS, bool) {
	dir, ok := o.rundirs[nodeName]
	switch {
	case ok:
	case o.rundirRoot != "":
		dir, ok = filepath.Join(o.rundirRoot, nodeName), true
	case nodeName == o.localNode:
		dir, ok = defaultOVSRunDir, true
	}
	_, t := o.targets[nodeName]
	_, d := o.ovsdbs[nodeName]
	_, a := o.appctls[nodeName]
	if !ok && !a {
		return nodeOVS{}, false
	}
	n := nodeOVS{appctl: o.appctls[nodeName], ofctl: o.targets[nodeName], ovsdb: o.ovsdbs[nodeName]}
	if dir != "" {
		if !a {
			n.appctl = vswitchdCtl(dir)
		}
		if !t {
			n.ofctl = "unix:" + filepath.Join(dir, o.bridge+".mgmt")
		}
		if !d {
			n.ovsdb = "unix:" + filepath.Join(dir, "db.sock")
		}
	}
	return n, true
}

// vswitchdCtl is the ovs-vswitchd control socket in an OVS run dir: ovs-vswitchd.ctl when
// the daemon was started with --unixctl there, else ovs-vswitchd.<pid>.ctl from its pidfile.
func vswitchdCtl(dir string) string {
	plain := filepath.Join(dir, "ovs-vswitchd.ctl")
	if _, err := os.Stat(plain); err == nil {
		return plain
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ovs-vswitchd.pid")); err == nil {
		return filepath.Join(dir, "ovs-vswitchd."+strings.TrimSpace(string(b))+".ctl")
	}
	return plain
}
