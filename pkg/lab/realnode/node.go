package realnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Node is a running real node. Its methods are safe for concurrent use.
type Node struct {
	cfg     Config
	spawner *spawner
	cgroups cgroupTree

	mu         sync.Mutex
	containerd *process
	kubelet    *process
	stopped    bool
	stopErr    error
}

// state is what Sweep needs to find a node's leftovers after a crash: <Dir>/state.json.
type state struct {
	CgroupRoot string `json:"cgroupRoot"`
	// MountNS is the inode of the node's mount namespace.
	MountNS uint64 `json:"mountNS"`
}

const stateFile = "state.json"

// Start brings the node up: its directories and mount namespace, the cgroup root,
// containerd with the images imported, and the kubelet, which registers the Node. It
// returns once the kubelet's /healthz answers; the Node turns Ready when a CNI
// configuration appears in CNIConfDir (the caller's business). On error everything
// started is torn down. The caller must Stop the Node.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, spawner: newSpawner()}
	if err := n.start(ctx); err != nil {
		if serr := n.Stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up: %w", serr))
		}
		return nil, fmt.Errorf("realnode %s: %w", cfg.Name, err)
	}
	return n, nil
}

func (n *Node) start(ctx context.Context) error {
	begin := time.Now()
	c := &n.cfg
	if err := c.makeDirs(); err != nil {
		return err
	}
	cg, err := hostCgroups()
	if err != nil {
		return err
	}
	n.cgroups = cg
	st := state{CgroupRoot: c.CgroupRoot}
	if err := n.writeState(st); err != nil { // before anything Sweep would have to find
		return err
	}
	if st.MountNS, err = c.createMountNS(ctx); err != nil {
		return err
	}
	if err := n.writeState(st); err != nil {
		return err
	}
	if err := n.prepare(ctx); err != nil {
		return err
	}
	n.progress("namespaces and configuration ready in %v", time.Since(begin).Round(time.Millisecond))
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	if err := n.importImages(ctx); err != nil {
		return err
	}
	if err := n.startKubelet(ctx); err != nil {
		return err
	}
	n.progress("kubelet healthy %v after start", time.Since(begin).Round(time.Millisecond))
	return nil
}

// prepare writes the daemons' configuration, sets up the mount namespace and the cgroups.
func (n *Node) prepare(ctx context.Context) error {
	c := &n.cfg
	if err := c.writeContainerdConfig(); err != nil {
		return err
	}
	if err := c.writeKubeletFiles(); err != nil {
		return err
	}
	if err := c.setupMountNS(ctx); err != nil {
		return err
	}
	return n.cgroups.create(c.CgroupRoot)
}

func (n *Node) writeState(st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return os.WriteFile(n.cfg.path(stateFile), b, 0o644)
}

func (n *Node) progress(format string, args ...any) {
	fmt.Fprintf(n.cfg.Out, "realnode %s: "+format+"\n", append([]any{n.cfg.Name}, args...)...)
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Config returns the node's completed configuration.
func (n *Node) Config() Config { return n.cfg }

// waitFor polls check until it succeeds, p exits or timeout passes.
func (n *Node) waitFor(ctx context.Context, p *process, timeout time.Duration, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before it was ready (%v); log:\n%s", what, p.waitErr, last, p.logTail(3000))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v (last check: %v); log:\n%s", what, ctx.Err(), last, p.logTail(3000))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Command returns a command running argv inside the node: its network and mount
// namespaces, with the pinned tools first on PATH.
func (n *Node) Command(ctx context.Context, argv ...string) *exec.Cmd {
	full := append(n.cfg.nsenter(), argv...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = append(os.Environ(), n.cfg.daemonEnv()...)
	return cmd
}

// Exec runs argv inside the node and returns its stdout; the error carries stderr.
func (n *Node) Exec(ctx context.Context, argv ...string) (string, error) {
	return run(ctx, n.cfg.daemonEnv(), append(n.cfg.nsenter(), argv...)...)
}

// Crictl runs crictl against the node's containerd, inside the node (its streaming
// server for exec and attach listens on the node's loopback).
func (n *Node) Crictl(ctx context.Context, args ...string) (string, error) {
	return n.Exec(ctx, append([]string{n.cfg.tool("crictl"), "--runtime-endpoint",
		"unix:///run/containerd/containerd.sock", "--timeout", "30s"}, args...)...)
}

// RestartKubelet stops the kubelet (SIGTERM) and starts it again; pods keep running.
func (n *Node) RestartKubelet(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return errStopped
	}
	n.kubelet.stop(10 * time.Second)
	return n.startKubelet(ctx)
}

// RestartContainerd stops containerd (SIGTERM; containers keep running under their shims)
// and starts it again.
func (n *Node) RestartContainerd(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return errStopped
	}
	n.containerd.stop(10 * time.Second)
	return n.startContainerd(ctx)
}

// LogPath returns the log file of "containerd" or "kubelet".
func (n *Node) LogPath(daemon string) string { return filepath.Join(n.cfg.logDir(), daemon+".log") }

// Stop tears the node down and leaves nothing: the kubelet stops, pods are removed through
// the runtime (CNI DEL) — pods with a network of their own first, host-network ones
// (such as a CNI agent) last — containerd stops, every process left in the node's mount
// namespace or cgroups is killed, the mount namespace is released (taking every mount the
// node made with it), the cgroups and the directory are removed. Idempotent; every step
// is tried even when one fails.
func (n *Node) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return n.stopErr
	}
	n.stopped = true
	n.kubelet.stop(10 * time.Second)
	if n.containerd != nil && !n.containerd.exited() {
		n.removePods(60 * time.Second)
	}
	n.containerd.stop(10 * time.Second)
	n.spawner.stop()
	n.stopErr = sweepNode(n.cfg.Dir)
	return n.stopErr
}

// Pids lists the processes of the node: in its mount namespace or its cgroups.
func (n *Node) Pids() []int {
	st, _ := readState(n.cfg.Dir)
	return nodePids(st, n.cfg.Dir)
}

// killAll SIGKILLs pids and waits up to 5 s for them to be gone.
func killAll(pids []int) error {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pids {
		for alive(p) {
			if time.Now().After(deadline) {
				return fmt.Errorf("process %d survived SIGKILL", p)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}
