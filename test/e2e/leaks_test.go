package e2e

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
)

// TestLeaks: whatever way a lab ends — Up failing half-way, `sdn-lab down`,
// or a SIGKILLed sdn-lab followed by `sdn-lab down` — no netns, process,
// root-namespace link, SDN-/KUBE-/CNI- iptables rule, OVS database or state dir is left.
func TestLeaks(t *testing.T) {
	requireLab(t)
	t.Run("UpCancelledMidSetup", testCancelledMidSetup)
	t.Run("UpDemoThenDown", func(t *testing.T) { testBinaryLab(t, "e2elkd", true, false) })
	t.Run("KilledThenDown", func(t *testing.T) { testBinaryLab(t, "e2elkk", false, true) })
}

// cancelOn cancels when the lab's progress output mentions trigger.
type cancelOn struct {
	t       *testing.T
	trigger string
	cancel  context.CancelFunc
}

func (c cancelOn) Write(b []byte) (int, error) {
	c.t.Log(strings.TrimRight(string(b), "\n"))
	if strings.Contains(string(b), c.trigger) {
		c.cancel()
	}
	return len(b), nil
}

func testCancelledMidSetup(t *testing.T) {
	const prefix = "e2elkc"
	dir := filepath.Join("/run", prefix)
	before := snapshotRoot()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Cancel when node3's namespace is being made: nodes 1 and 2 have OVS,
	// and their kubelets and agents may be starting.
	_, err := lab.Up(ctx, lab.Config{Nodes: 3, PluginName: networkv1.NetworkPolicyPluginName, Runtime: *runtime,
		StateDir: dir, Prefix: prefix, CNIPlugin: filepath.Join(binDir, "sdn-cni"), NodeAgent: filepath.Join(binDir, "sdn-node"),
		Out: cancelOn{t: t, trigger: "node3: namespace", cancel: cancel}})
	if err == nil {
		t.Fatal("Up succeeded although its context was cancelled during node setup")
	}
	t.Logf("Up failed as it should: %v", err)
	if left := leftovers(prefix, dir, before); len(left) > 0 {
		t.Errorf("left behind by a failed Up:\n  %s", strings.Join(left, "\n  "))
	}
}

// testBinaryLab runs `sdn-lab up` as a user would, waits until it says the
// lab is up, optionally SIGKILLs it, and runs `sdn-lab down`.
func testBinaryLab(t *testing.T, prefix string, demo, kill bool) {
	dir := filepath.Join("/run", prefix)
	before := snapshotRoot()
	args := []string{"up", "--nodes", "3", "--state-dir", dir, "--prefix", prefix, "--runtime", *runtime}
	if demo {
		args = append(args, "--demo")
	}
	up := exec.Command(filepath.Join(binDir, "sdn-lab"), args...)
	stdout, err := up.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	up.Stderr = up.Stdout
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var out strings.Builder
	var mu sync.Mutex
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			out.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "The lab is up") {
				once.Do(func() { close(ready) })
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- up.Wait()
	}()
	t.Cleanup(func() {
		_ = up.Process.Kill()
		_ = lab.Down(dir, time.Second)
		_ = os.Remove(dir + ".log")
	})
	transcript := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("sdn-lab up exited before the lab was up: %v\n%s", err, transcript())
	case <-time.After(5 * time.Minute):
		t.Fatalf("sdn-lab up: not up after 5 minutes\n%s", transcript())
	}
	if demo && strings.Contains(transcript(), "differ from what the policies should give") {
		t.Errorf("the demo's matrices differ from what the policies should give:\n%s", transcript())
	}
	if demo && !strings.Contains(transcript(), "✓ connected") {
		t.Errorf("sdn-lab up --demo printed no reachability matrices:\n%s", transcript())
	}
	if kill {
		_ = up.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	downOut, err := exec.Command(filepath.Join(binDir, "sdn-lab"), "down", "--state-dir", dir).CombinedOutput()
	if err != nil {
		t.Errorf("sdn-lab down: %v\n%s", err, downOut)
	}
	if !kill {
		select {
		case err := <-exited:
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Errorf("sdn-lab up: %v", err)
			} else if err != nil {
				t.Errorf("sdn-lab up exited with %v after down\n%s", err, transcript())
			}
		case <-time.After(2 * time.Minute):
			t.Errorf("sdn-lab up still running after sdn-lab down")
		}
		if !strings.Contains(transcript(), "nothing left behind") {
			t.Errorf("sdn-lab up did not report a clean teardown:\n%s", transcript())
		}
	}
	if left := leftovers(prefix, dir, before); len(left) > 0 {
		t.Errorf("left behind after sdn-lab down:\n  %s", strings.Join(left, "\n  "))
	}
}
