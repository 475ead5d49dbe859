// Package ovstest runs a private Open vSwitch (ovsdb-server + ovs-vswitchd)
// for integration tests, and compares flows with golden files.
//
// Start never touches the system OVS: the database, sockets, pid and log
// files live in a per-test temporary directory, and ovs-vswitchd runs in its
// own network namespace so the netdev bridge's tap device cannot collide
// with the host or another test. Everything is torn down in t.Cleanup, also
// when the test fails.
package ovstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// SchemaPath is the vswitch schema shipped by Debian's openvswitch-common.
const SchemaPath = "/usr/share/openvswitch/vswitch.ovsschema"

// Instance is a running private OVS.
type Instance struct {
	Dir    string // temporary directory holding db, sockets, logs
	DBSock string // ovsdb-server unix socket path
	RunDir string // OVS_RUNDIR: bridge management sockets (<bridge>.mgmt)
	NetNS  string // network namespace of ovs-vswitchd (ports live here)
	t      testing.TB
	env    []string

	mu       sync.Mutex
	vswitchd *daemon // the running ovs-vswitchd, nil while killed
}

// daemon is one running OVS daemon.
type daemon struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// stop interrupts (or kills) the daemon and waits for it.
func (d *daemon) stop(sig os.Signal) {
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// Start starts a private OVS for t. It skips the test under -short, when
// not root, or when the OVS binaries are missing.
func Start(t testing.TB) *Instance {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs OVS; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("integration test: needs root")
	}
	for _, bin := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("integration test: %s not installed", bin)
		}
	}
	dir := t.TempDir()
	in := &Instance{Dir: dir, DBSock: filepath.Join(dir, "db.sock"), RunDir: dir, t: t}
	in.env = append(os.Environ(), "OVS_RUNDIR="+dir, "OVS_DBDIR="+dir, "OVS_LOGDIR="+dir,
		"OVS_SYSCONFDIR="+dir, "OVS_PKGDATADIR=/usr/share/openvswitch")
	in.mustRun("ovsdb-tool", "create", filepath.Join(dir, "conf.db"), SchemaPath)
	in.startDaemon("ovsdb-server", "ovsdb-server", filepath.Join(dir, "conf.db"), "--remote=punix:"+in.DBSock)
	// The socket file appears before ovsdb-server accepts on it: wait for a connection.
	waitFor(t, "ovsdb-server socket", func() bool { return accepts(in.DBSock) })
	in.Vsctl("--no-wait", "init")
	in.NetNS = in.addNetNS()
	in.StartVswitchd()
	in.t.Cleanup(func() {
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.vswitchd != nil {
			in.vswitchd.stop(os.Interrupt)
		}
	})
	return in
}

// StartVswitchd starts ovs-vswitchd (again, after KillVswitchd): it
// re-creates the bridges recorded in OVSDB, without flows.
func (in *Instance) StartVswitchd() {
	in.t.Helper()
	d := in.spawn("ovs-vswitchd", "ip", "netns", "exec", in.NetNS, "ovs-vswitchd", "unix:"+in.DBSock)
	in.mu.Lock()
	defer in.mu.Unlock()
	in.vswitchd = d
}

// KillVswitchd kills ovs-vswitchd with SIGKILL (a crash) and waits until
// it is gone.
func (in *Instance) KillVswitchd() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.vswitchd != nil {
		in.vswitchd.stop(syscall.SIGKILL)
		in.vswitchd = nil
	}
}

// WaitBridge waits until bridge's management socket accepts connections.
func (in *Instance) WaitBridge(bridge string) {
	in.t.Helper()
	sock := filepath.Join(in.RunDir, bridge+".mgmt")
	waitFor(in.t, bridge+" management socket", func() bool { return accepts(sock) })
}

// startDaemon runs a daemon (argv, named name for its files) in the
// foreground as a child; cleanup interrupts it and waits.
func (in *Instance) startDaemon(name string, argv ...string) {
	d := in.spawn(name, argv...)
	in.t.Cleanup(func() { d.stop(os.Interrupt) })
}

// spawn starts a daemon as a child.
func (in *Instance) spawn(name string, argv ...string) *daemon {
	args := append(argv[1:], "--no-chdir", "-vconsole:off", "-vfile:info",
		"--log-file="+filepath.Join(in.Dir, name+".log"),
		"--pidfile="+filepath.Join(in.Dir, name+".pid"),
		"--unixctl="+filepath.Join(in.Dir, name+".ctl"))
	cmd := exec.Command(argv[0], args...)
	cmd.Env = in.env
	if err := cmd.Start(); err != nil {
		in.t.Fatalf("start %s: %v", name, err)
	}
	d := &daemon{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	return d
}

func (in *Instance) addNetNS() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "ovstest-" + hex.EncodeToString(b)
	in.mustRun("ip", "netns", "add", ns)
	in.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	return ns
}

// Vsctl runs ovs-vsctl against this instance and returns trimmed stdout; it
// fails the test on error.
func (in *Instance) Vsctl(args ...string) string {
	in.t.Helper()
	return in.mustRun("ovs-vsctl", append([]string{"--db=unix:" + in.DBSock, "--timeout=10"}, args...)...)
}

// Ofctl runs `ovs-ofctl -O OpenFlow13 <cmd> <target> args…` where target is
// the bridge's management socket; it fails the test on error.
func (in *Instance) Ofctl(cmd, bridge string, args ...string) string {
	in.t.Helper()
	return in.mustRun("ovs-ofctl", append([]string{"-O", "OpenFlow13", cmd, in.Target(bridge)}, args...)...)
}

// Appctl runs ovs-appctl against this instance's ovs-vswitchd (e.g.
// "ofproto/trace", "br0", flow, "-generate") and returns trimmed stdout; it
// fails the test on error.
func (in *Instance) Appctl(args ...string) string {
	in.t.Helper()
	return in.mustRun("ovs-appctl", append([]string{"-t", filepath.Join(in.Dir, "ovs-vswitchd.ctl")}, args...)...)
}

// Target returns the ovs-ofctl target of bridge: "unix:<RunDir>/<br>.mgmt".
func (in *Instance) Target(bridge string) string {
	return "unix:" + filepath.Join(in.RunDir, bridge+".mgmt")
}

// AddBridge creates bridge like the node agent does (netdev datapath,
// fail_mode=secure, OpenFlow13 only), waits for its management socket and
// returns an OfctlBridge connected to it.
func (in *Instance) AddBridge(name string) *ovs.OfctlBridge {
	in.t.Helper()
	in.Vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
		"fail_mode=secure", "protocols=OpenFlow13")
	sock := filepath.Join(in.RunDir, name+".mgmt")
	waitFor(in.t, name+" management socket", func() bool { return exists(sock) })
	return &ovs.OfctlBridge{Name: in.Target(name)}
}

func (in *Instance) mustRun(name string, args ...string) string {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = in.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		in.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func accepts(sock string) bool {
	c, err := net.DialTimeout("unix", sock, 100*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// String describes the instance for failure messages.
func (in *Instance) String() string {
	return fmt.Sprintf("ovs{dir=%s netns=%s}", in.Dir, in.NetNS)
}
