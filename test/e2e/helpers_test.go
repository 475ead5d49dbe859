// Package e2e runs end-to-end suites on sdn-lab (pkg/lab): a real control
// plane, three node namespaces with their own Open vSwitch, the node agents,
// the real sdn-cni binary and the kubelet stand-ins. Needs root; not -short.
package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

// binDir holds sdn-cni, sdn-lab and the rest built from this tree (and portmap, pinned in
// go.mod) by TestMain.
var binDir string

// runtime is what runs the labs' pods: -runtime=stand-in (default) or
// -runtime=containerd (real nodes with ovs-sdn installed from manifests/),
// also set by E2E_RUNTIME (`make test-e2e-containerd`).
var runtime = flag.String("runtime", envOr("E2E_RUNTIME", lab.RuntimeStandIn), "pod runtime of the labs: stand-in or containerd")

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if !testing.Short() && os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if err := buildBinaries(dir); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		binDir = dir
	}
	return m.Run()
}

func buildBinaries(dir string) error {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/sdn-cni", "./cmd/sdn-node", "./cmd/sdn-lab", "./cmd/sdnctl",
		"./test/e2e/tcpconnrate", testenv.PortmapPackage)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the binaries: %v\n%s", err, out)
	}
	return nil
}

func requireLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: starts a multi-node lab")
	}
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root (network namespaces, Open vSwitch)")
	}
}

// startLab brings up a 3-node lab of the -runtime flag's runtime with state in
// /run/<prefix> and closes it at test end — also when the test fails half-way —
// checking that Close left nothing behind.
func startLab(t *testing.T, prefix, plugin string) *lab.Lab {
	t.Helper()
	return startLabOn(t, prefix, plugin, *runtime)
}

// startLabOn is startLab on the given runtime, whatever -runtime says.
func startLabOn(t *testing.T, prefix, plugin, runtime string) *lab.Lab {
	t.Helper()
	requireLab(t)
	dir := filepath.Join("/run", prefix)
	before := snapshotRoot()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	l, err := lab.Up(ctx, lab.Config{Nodes: 3, PluginName: plugin, StateDir: dir, Prefix: prefix, Runtime: runtime,
		CNIPlugin: filepath.Join(binDir, "sdn-cni"), NodeAgent: filepath.Join(binDir, "sdn-node"), Out: testWriter{t}})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Logf("lab %s (%s) up in %v", prefix, runtime, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.Nodes() {
				t.Logf("node %s: the end of its agent's log %s:\n%s", n.Name, n.AgentLog(), tailFile(n.AgentLog(), 6000))
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("lab close: %v", err)
		}
		if left := leftovers(prefix, dir, before); len(left) > 0 {
			t.Errorf("left behind by Close:\n  %s", strings.Join(left, "\n  "))
		}
	})
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// rootState is what a lab could leak into the root namespace.
type rootState struct {
	links    []string
	labRules []string // iptables rules in chains ovs-sdn, a kubelet or a CNI plugin make
}

func snapshotRoot() rootState {
	out, _ := exec.Command("ip", "-o", "link", "show").Output()
	var links []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			links = append(links, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
		}
	}
	return rootState{links: links, labRules: labRules()}
}

// labRules lists the root namespace's iptables rules that name a chain of ovs-sdn (SDN-),
// of a kubelet (KUBE-) or of a CNI plugin (CNI-): a node component that touched the root
// namespace instead of its node's would leave them.
func labRules() []string {
	var rules []string
	for _, bin := range []string{"iptables-save", "ip6tables-save"} {
		out, _ := exec.Command(bin).Output()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "SDN-") || strings.Contains(line, "KUBE-") || strings.Contains(line, "CNI-") {
				rules = append(rules, bin+": "+line)
			}
		}
	}
	return rules
}

// leftovers lists what a lab left behind: network namespaces with its
// prefix, root-namespace links and lab iptables rules (labRules) that were not there
// before, processes naming its state dir, the state dir itself.
func leftovers(prefix, dir string, before rootState) []string {
	var left []string
	for _, ns := range netlab.NetNSWithPrefix(prefix + "-") {
		left = append(left, "netns "+ns)
	}
	after := snapshotRoot()
	for _, l := range after.links {
		if !slices.Contains(before.links, l) {
			left = append(left, "root link "+l)
		}
	}
	for _, r := range after.labRules {
		if !slices.Contains(before.labRules, r) {
			left = append(left, "root "+r)
		}
	}
	for _, pid := range netlab.PidsNaming(dir + "/") {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		left = append(left, fmt.Sprintf("process %d: %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	if _, err := os.Stat(dir); err == nil {
		left = append(left, "state dir "+dir)
	}
	return append(left, realNodeLeftovers(prefix, dir)...)
}

// realNodeLeftovers lists what real nodes could leave: mounts below the
// state dir (mount namespaces, their binds) and cgroups of the lab's nodes
// (<prefix>-<node> in any hierarchy).
func realNodeLeftovers(prefix, dir string) []string {
	var left []string
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			left = append(left, "mount "+f[4])
		}
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/" + prefix + "-*")
	for _, cg := range cgs {
		left = append(left, "cgroup "+cg)
	}
	return left
}

func key(ns, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: ns, Name: name}
}

// probeEventually probes until the outcome is want (policy and flow changes
// take a moment to be realized) or the deadline passes, and returns the
// last outcome.
func probeEventually(t *testing.T, l *lab.Lab, from types.NamespacedName, to netip.Addr, port uint16, proto corev1.Protocol, want kubelet.Outcome, within time.Duration) kubelet.Outcome {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, err := l.Probe(context.Background(), from, to, port, proto, 1500*time.Millisecond)
		if err != nil {
			t.Fatalf("probe %s → %s:%d/%s: %v", from, to, port, proto, err)
		}
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func dumpFlows(t *testing.T, n *lab.Node, args ...string) string {
	t.Helper()
	out, err := n.Ofctl(append([]string{"dump-flows", "br0"}, args...)...)
	if err != nil {
		t.Fatalf("dump-flows on %s: %v", n.Name, err)
	}
	return out
}

// flowLines drops the reply header of dump-flows.
func flowLines(dump string) []string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if strings.Contains(l, "cookie=") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// tailFile returns the last max bytes of the file at path, or why not.
func tailFile(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
