package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
)

// TestDownSweepsADeadLab plays a lab killed with SIGKILL: a stale pidfile, a
// node netns, a control-plane process and the state dir are left. Down must
// remove all of them. (The full up/down cycle is test/e2e's TestLeaks.)
func TestDownSweepsADeadLab(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	dir := filepath.Join("/run", "sdn-lab-test-down")
	const prefix = "labtdown"
	t.Cleanup(func() { _ = Down(dir, time.Second) })
	if err := os.MkdirAll(filepath.Join(dir, "control-plane"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(prefixFile(dir), []byte(prefix), 0o600)
	os.WriteFile(pidFile(dir), []byte("999999999"), 0o600) // no such process
	if out, err := exec.Command("ip", "netns", "add", prefix+"-node1").CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", prefix+"-node1").Run() })
	// A process that names the control-plane dir, as etcd does.
	logf := filepath.Join(dir, "control-plane", "etcd.log")
	if err := os.WriteFile(logf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("tail", "-f", logf)
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = sleeper.Wait(); close(done) }()
	t.Cleanup(func() { _ = sleeper.Process.Kill() })

	if err := Down(dir, time.Second); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if left := netlab.NetNSWithPrefix(prefix + "-"); len(left) > 0 {
		t.Errorf("netns left after Down: %v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("state dir %s left after Down (err=%v)", dir, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Errorf("process %d naming the control-plane dir survived Down", sleeper.Process.Pid)
	}
}

// TestClaimRefusesALiveLab: a second `up` on a state dir whose owner lives
// must fail and leave the owner's files alone.
func TestClaimRefusesALiveLab(t *testing.T) {
	dir := t.TempDir()
	owner := exec.Command("sleep", "60")
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = owner.Process.Signal(syscall.SIGKILL); _ = owner.Wait() })
	if err := os.WriteFile(pidFile(dir), []byte(strconv.Itoa(owner.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	err := claimStateDir(dir, "labtclaim")
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("claim of a live lab's dir: err = %v, want 'already running'", err)
	}
	if b, _ := os.ReadFile(pidFile(dir)); string(b) != strconv.Itoa(owner.Process.Pid) {
		t.Errorf("pidfile changed to %q", b)
	}
}
