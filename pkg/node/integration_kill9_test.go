package node_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

// TestIntegrationKill9Binary: kill -9 of the real sdn-node binary while a
// TCP stream runs through its node, and a restart of the binary, keep the
// stream flowing and change no flow on br0: no flow re-added, modified or
// deleted, no counter reset — checked on two dumps and, independently of
// the agent, by an OpenFlow flow monitor on br0 (`ovs-ofctl monitor
// watch:`), which reports every flow_mod any connection applies. A flow
// added by hand afterwards is reported by the monitor and removed by the
// next full sync: the monitor and the full sync both work.
//
// The agent's own metrics cannot tell a no-op from a change:
// ovs_sdn_ovs_operations_total counts every bundle, replace-flows (the full
// sync, which ovs-ofctl turns into only the differing flow_mods) and
// dump-flows; they are logged, not checked.
func TestIntegrationKill9Binary(t *testing.T) {
	const fullSync = 2 * time.Second
	c := newITCluster(t, "itk9", networkv1.NetworkPolicyPluginName, 2, fullSync)
	a, b := c.nodes[0], c.nodes[1]
	c.netNamespace("proj1", 11)
	a1 := a.addPod("proj1", "a1")
	b1 := b.addPod("proj1", "b1")
	if _, err := b1.ServeTCP(itEchoPort); err != nil {
		t.Fatal(err)
	}
	if err := reachable(a1, b1, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	bin := buildSDNNode(t)
	sp := newSpawner(t)

	// Replace node a's in-process agent by the binary.
	a.stopAgent()
	port := freePort(t)
	dir := t.TempDir()
	args := []string{"--kubeconfig", c.env.Kubeconfig, "--node-name", a.name, "--node-ip", a.IP.Addr().String(),
		"--ovsdb", "unix:" + a.RunDir + "/db.sock", "--ofctl-target", "unix:" + a.RunDir + "/br0.mgmt",
		"--datapath-type", "netdev", "--host-netns", a.NetNS.Path,
		"--cni-socket", "", "--cni-conf-dir", "", "--cni-state-dir", filepath.Join(dir, "cni"),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", port), "--full-sync-period", fullSync.String()}
	logPath := filepath.Join(dir, "sdn-node.log")
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	first := sp.startProc(t, "sdn-node", logPath, append([]string{bin}, args...)...)
	ready := waitHTTPReady(t, first, metricsURL+"/readyz", 30*time.Second)
	t.Logf("sdn-node (pid %d) for %s ready %v after start", first.pid(), a.name, ready.Round(time.Millisecond))
	// Let it run a full-sync period: a steady state, not the start-up.
	waitFullSyncs(t, metricsURL, 2, fullSync+5*time.Second)
	if err := reachable(a1, b1, 3*time.Second); err != nil {
		t.Fatal(err)
	}

	s := startStream(t, a1, b1)
	mon := startFlowMonitor(t, sp, a, dir)
	time.Sleep(300 * time.Millisecond)
	before := a.dumpFlows("")
	t0 := time.Now()
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil { // the process, as kill -9 <pid>
		t.Fatal(err)
	}
	if err := first.wait(5 * time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("sdn-node after SIGKILL: %v", err)
	}
	killed := time.Since(t0)
	second := sp.startProc(t, "sdn-node", logPath, append([]string{bin}, args...)...)
	ready = waitHTTPReady(t, second, metricsURL+"/readyz", 30*time.Second)
	// At least one periodic full sync after the start-up one.
	waitFullSyncs(t, metricsURL, 2, fullSync+5*time.Second)
	time.Sleep(200 * time.Millisecond)
	after := a.dumpFlows("")
	elapsed := time.Since(t0)
	t.Logf("sdn-node SIGKILLed (reaped %v after the signal), restarted (pid %d), ready %v after its start; %d flows on br0; dumps %v apart",
		killed.Round(time.Millisecond), second.pid(), ready.Round(time.Millisecond), len(after), elapsed.Round(time.Millisecond))
	checkUntouched(t, a.Name, before, after, elapsed)
	if ev := mon.events(); len(ev) > 0 {
		t.Errorf("node a: the flow monitor saw %d flow changes across the kill -9 and restart:\n%s", len(ev), joinLines(ev))
	}
	m := scrapeMetrics(t, metricsURL)
	t.Logf("restarted sdn-node metrics: ovs_operations_total success=%v failure=%v; full syncs %v, incremental syncs %v; %v flows",
		m[`ovs_sdn_ovs_operations_total{result="success"}`], m[`ovs_sdn_ovs_operations_total{result="failure"}`],
		m[`ovs_sdn_sync_duration_seconds_count{kind="full"}`], m[`ovs_sdn_sync_duration_seconds_count{kind="incremental"}`],
		m["ovs_sdn_ovs_flows"])
	if f := m[`ovs_sdn_ovs_operations_total{result="failure"}`]; f > 0 {
		t.Errorf("restarted sdn-node: %v failed OpenFlow operations", f)
	}
	if got := m["ovs_sdn_ovs_flows"]; int(got) != len(after) {
		t.Errorf("restarted sdn-node keeps %v flows, br0 holds %d", got, len(after))
	}

	time.Sleep(300 * time.Millisecond)
	sent, maxGap, err := s.stop()
	if err != nil {
		t.Errorf("TCP stream a1 → b1 across the kill -9 and restart: %v (after %d round trips)", err, sent)
	}
	t.Logf("TCP stream a1 → b1 over one connection: %d round trips, longest gap %v", sent, maxGap.Round(time.Microsecond))
	if maxGap > time.Second {
		t.Errorf("TCP stream stalled for %v", maxGap)
	}

	// Control: a flow added by hand is seen by the monitor and removed by
	// the restarted agent's next full sync.
	stray := "table=99,ip,nw_dst=192.0.2.99"
	seen := len(mon.events())
	if _, err := a.Ofctl("add-flow", netlab.PodBridge, stray+",priority=1,actions=drop"); err != nil {
		t.Fatal(err)
	}
	took := a.waitFlow(stray, false, fullSync+3*time.Second)
	t.Logf("control: stray flow removed by the restarted agent %v after it was added", took.Round(time.Millisecond))
	deadline := time.Now().Add(2 * time.Second)
	for len(mon.events()) < seen+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	ev := mon.events()[seen:]
	if len(ev) != 2 || !strings.HasPrefix(ev[0], "event=ADDED") || !strings.HasPrefix(ev[1], "event=DELETED") ||
		!strings.Contains(ev[0], "192.0.2.99") || !strings.Contains(ev[1], "192.0.2.99") {
		t.Errorf("control: the flow monitor did not report the stray flow's add and delete (only): %q", ev)
	}
}

// buildSDNNode builds cmd/sdn-node into a temporary directory.
func buildSDNNode(t *testing.T) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "sdn-node")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", out, "./cmd/sdn-node")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sdn-node: %v\n%s", err, b)
	}
	t.Logf("built sdn-node in %v", time.Since(start).Round(time.Millisecond))
	return out
}

// spawner starts child processes from one goroutine locked to its OS
// thread, which lives until the test ends: Pdeathsig fires when the thread
// that forked the child dies, and any other thread of the test binary may
// end earlier (a goroutine that left a network namespace locked).
type spawner struct{ reqs chan func() }

func newSpawner(t testing.TB) *spawner {
	s := &spawner{reqs: make(chan func())}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		for f := range s.reqs {
			f()
		}
	}()
	t.Cleanup(func() { close(s.reqs) }) // after the children's cleanups (registered later)
	return s
}

// proc is a child process of the test.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProc starts argv in the root network namespace in its own process
// group, SIGKILLed with the test binary, stdout and stderr appended to
// logPath; t.Cleanup SIGKILLs its process group and reaps it.
func (s *spawner) startProc(t testing.TB, name, logPath string, argv ...string) *proc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	errc := make(chan error, 1)
	s.reqs <- func() { errc <- cmd.Start() }
	if err := <-errc; err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if err := p.wait(10 * time.Second); err != nil && strings.Contains(err.Error(), "did not exit") {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("%s (pid %d) log %s (tail):\n%s", name, cmd.Process.Pid, logPath, tail(logPath, 4000))
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to exit and returns how it ended.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) did not exit within %v", p.name, p.pid(), timeout)
	}
}

func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// freePort returns a TCP port free on 127.0.0.1 just now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitHTTPReady waits until url answers 200 and returns how long that took;
// it fails at once if p exits.
func waitHTTPReady(t *testing.T, p *proc, url string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	hc := &http.Client{Timeout: time.Second}
	for {
		if resp, err := hc.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		if p.exited() {
			t.Fatalf("%s exited before %s answered: %v", p.name, url, p.err)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: %s not ready after %v", p.name, url, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scrapeMetrics reads a Prometheus text exposition into series → value
// (series as exposed, e.g. `name{label="v"}`).
func scrapeMetrics(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// waitFullSyncs waits until the agent behind base reports at least n full
// syncs.
func waitFullSyncs(t *testing.T, base string, n float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := scrapeMetrics(t, base)[`ovs_sdn_sync_duration_seconds_count{kind="full"}`]
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v full syncs after %v, want %v", got, timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// flowMonitor is `ovs-ofctl monitor br0 watch:!initial` on a node: one
// line per flow added, modified or deleted by any OpenFlow connection.
type flowMonitor struct {
	t   *testing.T
	p   *proc
	out string
}

func startFlowMonitor(t *testing.T, sp *spawner, n *itNode, dir string) *flowMonitor {
	t.Helper()
	out := filepath.Join(dir, "monitor-"+n.Name+".log")
	p := sp.startProc(t, "ovs-ofctl monitor", out, "ovs-ofctl", "-O", "OpenFlow13", "monitor",
		"--unixctl="+filepath.Join(dir, "monitor-"+n.Name+".ctl"), "unix:"+n.RunDir+"/br0.mgmt", "watch:!initial")
	// The monitor prints the reply to its request once it is registered.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(tail(out, 4096), "reply") {
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("flow monitor on %s not running (%v): %s", n.Name, p.err, tail(out, 4096))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &flowMonitor{t: t, p: p, out: out}
}

// events returns the monitor's flow update lines ("event=ADDED …"); it
// fails the test if the monitor is no longer running.
func (m *flowMonitor) events() []string {
	m.t.Helper()
	if m.p.exited() {
		m.t.Fatalf("flow monitor exited: %v: %s", m.p.err, tail(m.out, 4096))
	}
	b, _ := os.ReadFile(m.out)
	var ev []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "event=") {
			ev = append(ev, strings.TrimSpace(l))
		}
	}
	return ev
}
