package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/realnode"
)

func pidFile(dir string) string    { return filepath.Join(dir, "sdn-lab.pid") }
func prefixFile(dir string) string { return filepath.Join(dir, "prefix") }

// claimStateDir records this process as the lab's owner, refusing when
// another live sdn-lab owns it; leftovers of a dead lab are swept first.
func claimStateDir(dir, prefix string) error {
	if pid, ok := runningPID(dir); ok {
		return fmt.Errorf("an sdn-lab (pid %d) is already running with state in %s; run 'sdn-lab down' first", pid, dir)
	}
	if err := sweep(dir); err != nil {
		return err
	}
	if err := netlab.Sweep(prefix, netlab.WithStateRoot(dir)); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(prefixFile(dir), []byte(prefix), 0o600); err != nil {
		return err
	}
	return os.WriteFile(pidFile(dir), []byte(strconv.Itoa(os.Getpid())), 0o600)
}

func runningPID(dir string) (int, bool) {
	b, err := os.ReadFile(pidFile(dir))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil
}

// Down stops the lab running with state in dir (SIGTERM, so it tears itself
// down; SIGKILL after timeout), then sweeps what a killed lab leaves: its
// namespaces, any process naming the state dir, and the dir itself. A lab
// that is not running is not an error.
func Down(dir string, timeout time.Duration) error {
	setDefault(&dir, DefaultStateDir)
	if pid, ok := runningPID(dir); ok {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(timeout)
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
			time.Sleep(100 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			time.Sleep(200 * time.Millisecond) // Pdeathsig reaches its children
		}
	}
	return sweep(dir)
}

// sweep removes the leftovers of a lab that is not running.
func sweep(dir string) error {
	// Real nodes first: their processes and mounts pin the lab's namespaces.
	errs := []error{realnode.Sweep(filepath.Join(dir, "nodes"))}
	if b, err := os.ReadFile(prefixFile(dir)); err == nil {
		errs = append(errs, netlab.Sweep(strings.TrimSpace(string(b)), netlab.WithStateRoot(dir)))
	}
	for _, pid := range netlab.PidsNaming(filepath.Join(dir, "control-plane") + "/") {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	errs = append(errs, os.RemoveAll(dir))
	return errors.Join(errs...)
}

// NodeAccess is how to reach a node of a running lab from a shell.
type NodeAccess struct {
	NetNS  string   // the node's network namespace name
	Env    []string // OVS_RUNDIR & co., pointing the OVS tools at the node's OVS
	DBSock string   // "unix:<rundir>/db.sock"
	Ofctl  string   // "unix:<rundir>/br0.mgmt"
	// OVSRunDirRoot holds every node's OVS run directory, named like the
	// node (and its Node and HostSubnet): sdnctl trace --ovs-rundir-root.
	OVSRunDirRoot string
	// Kubeconfig of the lab's API server (reachable from the root netns only).
	Kubeconfig string
	// MountNS is the node's mount namespace on a real node (containerd lab; see
	// pkg/lab/realnode), "" on a stand-in node. Commands for a real node run in
	// both its namespaces and find its containerd, OVS and CNI files at their
	// usual paths; Env is empty then.
	MountNS string
	// ToolsBin holds the pinned tools (crictl, ctr, kubectl) of a real node.
	ToolsBin string
}

// OVSRunDirRoot returns the directory of the running lab with state in dir
// that holds one OVS run directory per node, named like the node
// (<dir>/<prefix>/<node>: br0.mgmt, db.sock, ovs-vswitchd's pidfile and
// control socket), and its network namespace prefix.
func OVSRunDirRoot(dir string) (root, prefix string, err error) {
	setDefault(&dir, DefaultStateDir)
	if _, ok := runningPID(dir); !ok {
		return "", "", fmt.Errorf("no sdn-lab is running with state in %s", dir)
	}
	b, err := os.ReadFile(prefixFile(dir))
	if err != nil {
		return "", "", err
	}
	prefix = strings.TrimSpace(string(b))
	return filepath.Join(dir, prefix), prefix, nil
}

// Access describes node of the lab with state in dir, for `sdn-lab exec`.
func Access(dir, node string) (NodeAccess, error) {
	setDefault(&dir, DefaultStateDir)
	root, prefix, err := OVSRunDirRoot(dir)
	if err != nil {
		return NodeAccess{}, err
	}
	run := filepath.Join(root, node)
	if _, err := os.Stat(filepath.Join(run, "db.sock")); err != nil {
		return NodeAccess{}, fmt.Errorf("lab has no node %q (no %s/db.sock)", node, run)
	}
	if mnt := filepath.Join(dir, "nodes", node, "ns", "mnt"); isRealNode(filepath.Join(dir, "nodes", node)) {
		tools, _ := os.ReadFile(filepath.Join(dir, "tools-bin"))
		return NodeAccess{NetNS: prefix + "-" + node, MountNS: mnt, ToolsBin: strings.TrimSpace(string(tools)),
			DBSock: "unix:" + filepath.Join(run, "db.sock"), Ofctl: "unix:" + filepath.Join(run, "br0.mgmt"),
			OVSRunDirRoot: root, Kubeconfig: KubeconfigPath(dir)}, nil
	}
	return NodeAccess{
		NetNS: prefix + "-" + node,
		Env: []string{"OVS_RUNDIR=" + run, "OVS_DBDIR=" + run,
			"OVS_LOGDIR=" + run, "OVS_SYSCONFDIR=" + run},
		DBSock:        "unix:" + filepath.Join(run, "db.sock"),
		Ofctl:         "unix:" + filepath.Join(run, "br0.mgmt"),
		OVSRunDirRoot: root,
		Kubeconfig:    KubeconfigPath(dir),
	}, nil
}

// KubeconfigPath is where a lab with state in dir keeps its admin kubeconfig.
func KubeconfigPath(dir string) string {
	setDefault(&dir, DefaultStateDir)
	return filepath.Join(dir, "control-plane", "admin.kubeconfig")
}

// isRealNode reports whether dir is the directory of a real node (pkg/lab/realnode).
func isRealNode(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "state.json"))
	return err == nil
}
