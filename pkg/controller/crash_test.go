package controller_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// controllerBinary builds cmd/sdn-controller once per test binary.
func controllerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := testenv.ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "sdn-controller-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "sdn-controller")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/sdn-controller")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/sdn-controller: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is one sdn-controller process.
type proc struct {
	identity string
	cmd      *exec.Cmd
	log      string
	exited   chan struct{}
}

// startProcess runs the binary with short leases; it is killed at test end.
func (c *cluster) startProcess(t *testing.T, identity string, extra ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), identity+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--kubeconfig", c.env.Kubeconfig, "--identity", identity,
		"--lease-namespace", leaseNamespace, "--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "1s",
		"--metrics-bind-address", "", "-v", "2"}, extra...)
	cmd := exec.Command(controllerBinary(t), args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{identity: identity, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.exited) }()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *proc) logText(t *testing.T) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (c *cluster) leaseHolder(t *testing.T) string {
	l, err := c.kube.CoordinationV1().Leases(leaseNamespace).Get(context.Background(), "sdn-controller", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// TestCrashKill9: while Nodes and Namespaces are created (and some deleted)
// in a loop, the controller process is killed with SIGKILL at random points
// and restarted. At the end there is one HostSubnet per Node and one
// NetNamespace per Namespace, with no duplicate subnet or VNID.
func TestCrashKill9(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.NetworkPolicyPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9})
	controllerBinary(t)
	p := c.startProcess(t, "crashy")
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.createNode(t, fmt.Sprintf("node-%03d", i), fmt.Sprintf("192.168.%d.%d", i/200, i%200+1))
			c.createNamespace(t, fmt.Sprintf("ns-%03d", 2*i))
			c.createNamespace(t, fmt.Sprintf("ns-%03d", 2*i+1))
			if i%5 == 4 {
				c.deleteNode(t, fmt.Sprintf("node-%03d", i-2))
				c.deleteNamespace(t, fmt.Sprintf("ns-%03d", 2*i-3))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	for k := range 5 {
		time.Sleep(time.Duration(300+rnd.IntN(1500)) * time.Millisecond)
		p.kill()
		t.Logf("kill -9 #%d", k+1)
		p = c.startProcess(t, "crashy")
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	start := time.Now()
	eventually(t, 30*time.Second, func() string { return c.converged(t, defaultCIDR, 9, true) })
	t.Logf("MEASURED: converged %v after the last change; %d HostSubnets, %d NetNamespaces", time.Since(start), len(c.hostSubnets(t)), len(c.netNamespaces(t)))
}

// TestTwoControllers: two processes, exactly one leads and only it writes;
// after kill -9 of the leader the standby takes over within the lease
// duration plus the retry period and keeps allocating without duplicates.
func TestTwoControllers(t *testing.T) {
	c := startCluster(t)
	c.createClusterNetwork(t, networkv1.NetworkPolicyPluginName, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/14", HostSubnetLength: 9})
	controllerBinary(t)
	procs := map[string]*proc{"ctl-a": c.startProcess(t, "ctl-a"), "ctl-b": c.startProcess(t, "ctl-b")}
	var leader string
	eventually(t, 20*time.Second, func() string {
		if leader = c.leaseHolder(t); procs[leader] == nil {
			return "no leader yet"
		}
		return ""
	})
	standby := map[string]string{"ctl-a": "ctl-b", "ctl-b": "ctl-a"}[leader]
	for i := range 10 {
		c.createNode(t, fmt.Sprintf("node-%02d", i), fmt.Sprintf("192.168.0.%d", i+1))
		c.createNamespace(t, fmt.Sprintf("ns-%02d", i))
	}
	eventually(t, 20*time.Second, func() string { return c.converged(t, defaultCIDR, 9, true) })
	if got := c.leaseHolder(t); got != leader {
		t.Fatalf("leader changed from %s to %s without a failure", leader, got)
	}
	if log := procs[standby].logText(t); strings.Contains(log, "Created HostSubnet") || strings.Contains(log, "Created NetNamespace") || strings.Contains(log, "Acquired leadership") {
		t.Fatalf("standby %s wrote while not leading:\n%s", standby, log)
	}
	for _, name := range []string{"node-00", "node-09"} {
		c.waitEvent(t, "Node", name)
	}
	events, err := c.kube.CoreV1().Events("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		if e.Source.Component == "sdn-controller" && e.Source.Host != leader {
			t.Errorf("Event from non-leader %s: %s %s", e.Source.Host, e.Reason, e.Message)
		}
	}

	killed := time.Now()
	procs[leader].kill()
	c.createNode(t, "after-kill", "192.168.1.1")
	c.createNamespace(t, "after-kill")
	var takeover time.Duration
	eventually(t, 4*time.Second+time.Second+5*time.Second, func() string {
		if c.leaseHolder(t) != standby {
			return "standby has not taken the Lease"
		}
		if takeover == 0 {
			takeover = time.Since(killed)
		}
		return c.converged(t, defaultCIDR, 9, true)
	})
	allocated := time.Since(killed)
	t.Logf("MEASURED: takeover (Lease held by %s) %v after kill -9 of %s; new node and namespace allocated %v after the kill", standby, takeover, leader, allocated)
	// client-go's standby measures expiry from when it last saw the record
	// change, which is up to one jittered retry period after the leader's
	// last renewal, and then retries every jittered retry period; the jitter
	// factor is 1.2, so one period is at most 2.2*RetryPeriod. Bound:
	// LeaseDuration + 2*2.2*RetryPeriod.
	if limit := 4*time.Second + 2*2200*time.Millisecond + 300*time.Millisecond; takeover > limit {
		t.Errorf("takeover took %v, want <= lease duration + 2 jittered retry periods (%v)", takeover, limit)
	}
}

// TestBinaryRefusesInvalidClusterNetwork: the command exits non-zero with a
// message naming the field.
func TestBinaryRefusesInvalidClusterNetwork(t *testing.T) {
	c := startCluster(t)
	cn := &networkv1.ClusterNetwork{ // valid for the API server, refused by the controller
		ObjectMeta:      metav1.ObjectMeta{Name: networkv1.ClusterNetworkDefault},
		ClusterNetworks: []networkv1.ClusterNetworkEntry{{CIDR: "10.128.0.0/14", HostSubnetLength: 9}},
		ServiceNetwork:  "10.130.0.0/16",
	}
	if _, err := c.net.NetworkV1().ClusterNetworks().Create(context.Background(), cn, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, controllerBinary(t), "--kubeconfig", c.env.Kubeconfig, "--identity", "x",
		"--lease-namespace", leaseNamespace, "--metrics-bind-address", "")
	out, err := cmd.CombinedOutput()
	if err == nil || cmd.ProcessState == nil || cmd.ProcessState.ExitCode() == 0 || ctx.Err() != nil {
		t.Fatalf("sdn-controller did not exit non-zero (err %v, ctx %v):\n%s", err, ctx.Err(), out)
	}
	if want := `serviceNetwork "10.130.0.0/16" overlaps clusterNetworks[0].CIDR "10.128.0.0/14"`; !strings.Contains(string(out), want) {
		t.Errorf("output does not name the field (%s):\n%s", want, out)
	}
}
