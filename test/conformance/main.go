// Command conformance runs Kubernetes' own network e2e tests, unmodified, against a
// real-node sdn-lab: kubelet, containerd and runc on every node, ovs-sdn installed from
// manifests/ in networkpolicy mode with Services in OVS (--proxy-mode=ovs), cluster DNS.
// `make conformance` builds what it needs (e2e.test and ginkgo from k8s.io/kubernetes
// v1.34.4, `hack/tools.sh e2e`) and runs it:
//
//	go run ./test/conformance [--runs 3] [--suites netpol,sig-network-conformance]
//
// It brings one lab up, runs `[sig-network] Netpol` --runs times and then the
// `[sig-network] [Conformance]` specs (suites.go lists what each leaves out and why),
// prints Ginkgo's own summary of every run, keeps each run's JUnit report and output
// under --report-dir, and for every failed spec prints the upstream message and, for a
// wrong answer in the NetworkPolicy reachability matrix, `sdn-lab trace` of the pair.
// The namespaces of failed specs are kept for the trace (--delete-namespace-on-failure
// =false); the lab and everything in it is torn down at the end unless --keep-on-failure.
// Exit status 0 only when every run passed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/manifests"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

type options struct {
	runs          int
	suites        string
	reportDir     string
	stateDir      string
	prefix        string
	nodes         int
	procs         int
	keepOnFailure bool
	focus         string
	tools         string
	// suiteBinary is e2e.test as ginkgo is given it: a link outside any Go module, for
	// ginkgo compares its own version with the Ginkgo of the go.mod above the suite's
	// path and would warn about ovs-sdn's.
	suiteBinary string
}

func main() {
	var o options
	flag.IntVar(&o.runs, "runs", 3, "how many times the Netpol suite runs in a row")
	flag.StringVar(&o.suites, "suites", netpolSuite.Name+","+networkSuite.Name, "suites to run, in order")
	flag.StringVar(&o.reportDir, "report-dir", "_output/conformance", "where each run's JUnit report and output go")
	flag.StringVar(&o.stateDir, "state-dir", "/run/sdn-conformance", "the lab's state directory")
	flag.StringVar(&o.prefix, "prefix", "sdncf", "the lab's network namespace prefix")
	flag.IntVar(&o.nodes, "nodes", 3, "lab nodes")
	flag.IntVar(&o.procs, "procs", 3, "parallel Ginkgo processes (specs not marked [Serial] run concurrently)")
	flag.BoolVar(&o.keepOnFailure, "keep-on-failure", false, "after a failure keep the lab up until Ctrl-C (`sdn-lab exec/trace --state-dir`)")
	flag.StringVar(&o.focus, "focus", "", "replace the suites' --ginkgo.focus (e.g. one spec while debugging); the suites' skips still apply")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (the lab: network namespaces, Open vSwitch, containerd)")
	}
	suites, err := selectSuites(o.suites)
	if err != nil {
		return err
	}
	for i := range suites {
		if o.focus != "" {
			suites[i].Focus = o.focus
		}
	}
	if o.tools, err = testenv.ToolsBin(); err != nil {
		return err
	}
	for _, bin := range []string{"e2e.test", "ginkgo", "kubectl"} {
		if _, err := os.Stat(filepath.Join(o.tools, bin)); err != nil {
			return fmt.Errorf("%s missing in %s: run 'hack/tools.sh e2e' (make conformance does)", bin, o.tools)
		}
	}
	if o.reportDir, err = filepath.Abs(o.reportDir); err != nil {
		return err
	}
	bin, err := os.MkdirTemp("", "sdn-conformance-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	o.suiteBinary = filepath.Join(bin, "e2e.test")
	if err := os.Symlink(filepath.Join(o.tools, "e2e.test"), o.suiteBinary); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	begin := time.Now()
	l, err := lab.Up(ctx, lab.Config{Nodes: o.nodes, PluginName: networkv1.NetworkPolicyPluginName,
		StateDir: o.stateDir, Prefix: o.prefix, Runtime: lab.RuntimeContainerd, Out: os.Stdout})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "conformance: lab teardown:", err)
		}
	}()
	if pm := l.ManifestsConfig().ProxyMode; pm != manifests.ProxyModeOVS {
		return fmt.Errorf("the lab installed ovs-sdn with proxyMode %q; conformance runs with %q", pm, manifests.ProxyModeOVS)
	}
	fmt.Printf("conformance: lab of %d real nodes up in %v (networkpolicy mode, proxyMode ovs)\n", o.nodes, time.Since(begin).Round(time.Second))

	var results []result
	for _, s := range suites {
		n := 1
		if s.Name == netpolSuite.Name {
			n = o.runs
		}
		for i := 1; i <= n; i++ {
			r := runSuite(ctx, o, l, s, i)
			results = append(results, r)
			if ctx.Err() != nil {
				break
			}
		}
	}
	failed := printResults(os.Stdout, results)
	if failed && o.keepOnFailure && ctx.Err() == nil {
		fmt.Printf("conformance: the lab stays up for debugging (state dir %s); Ctrl-C tears it down\n", o.stateDir)
		<-ctx.Done()
	}
	if failed {
		return errors.New("some runs failed (see above)")
	}
	return nil
}

// selectSuites maps --suites to the suites, refusing unknown names.
func selectSuites(list string) ([]suite, error) {
	known := map[string]suite{netpolSuite.Name: netpolSuite, networkSuite.Name: networkSuite}
	var out []suite
	for _, name := range strings.Split(list, ",") {
		s, ok := known[strings.TrimSpace(name)]
		if !ok {
			return nil, fmt.Errorf("--suites: unknown suite %q (known: %s, %s)", name, netpolSuite.Name, networkSuite.Name)
		}
		out = append(out, s)
	}
	return out, nil
}
