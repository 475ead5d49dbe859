package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
)

// result is one run of one suite.
type result struct {
	Suite    string
	Run      int
	Dir      string // report directory: junit_01.xml, e2e.log, traces.txt
	Summary  summary
	Complete bool // Ginkgo printed its summary
	Failures []failedSpec
	Err      error
	Took     time.Duration
}

func (r result) ok() bool {
	return r.Err == nil && r.Complete && r.Summary.Failed == 0 && r.Summary.Ran > 0
}

// maxTraces bounds the traces printed per failed spec (a broken node can make a whole
// row of the matrix wrong; the first pairs say enough).
const maxTraces = 4

// runSuite runs suite s once with ginkgo in parallel processes, its output both on
// stdout and in <dir>/e2e.log, and reports failures with traces.
func runSuite(ctx context.Context, o options, l *lab.Lab, s suite, n int) result {
	r := result{Suite: s.Name, Run: n, Dir: filepath.Join(o.reportDir, fmt.Sprintf("%s-%d", s.Name, n))}
	fmt.Printf("\nconformance: %s run %d: focus %q skip %q (%d processes); report in %s\n", s.Name, n, s.Focus, s.skipPattern(), o.procs, r.Dir)
	if err := os.RemoveAll(r.Dir); err != nil {
		r.Err = err
		return r
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		r.Err = err
		return r
	}
	logf, err := os.Create(filepath.Join(r.Dir, "e2e.log"))
	if err != nil {
		r.Err = err
		return r
	}
	defer logf.Close()

	begin := time.Now()
	var out strings.Builder
	cmd := exec.CommandContext(ctx, filepath.Join(o.tools, "ginkgo"), ginkgoArgs(o, l, s, r.Dir)...)
	cmd.Dir = r.Dir
	cmd.Stdout = io.MultiWriter(os.Stdout, logf, &out)
	cmd.Stderr = cmd.Stdout
	cmd.Env = append(os.Environ(), "TMPDIR="+r.Dir, "KUBECONFIG="+l.Kubeconfig())
	runErr := cmd.Run()
	r.Took = time.Since(begin)
	r.Summary, r.Complete = parseSummary(out.String())
	r.Failures, err = failedSpecs(filepath.Join(r.Dir, "junit_01.xml"))
	switch {
	case err != nil && r.Complete:
		r.Err = fmt.Errorf("reading the JUnit report: %w", err)
	case runErr != nil && !r.Complete:
		r.Err = fmt.Errorf("ginkgo ended without a summary: %w", runErr)
	}
	if len(r.Failures) > 0 {
		reportFailures(ctx, o, s, r)
	}
	return r
}

// ginkgoArgs is the ginkgo command line: its own flags, then e2e.test's after "--".
func ginkgoArgs(o options, l *lab.Lab, s suite, dir string) []string {
	args := []string{"--procs", fmt.Sprint(o.procs), "--no-color", "--silence-skips", "--timeout", "3h",
		"--focus", s.Focus}
	if p := s.skipPattern(); p != "" {
		args = append(args, "--skip", p)
	}
	return append(args, o.suiteBinary, "--",
		"--kubeconfig", l.Kubeconfig(),
		"--provider", "skeleton",
		"--report-dir", dir,
		"--e2e-output-dir", dir,
		"--kubectl-path", filepath.Join(o.tools, "kubectl"),
		"--dns-domain", "cluster.local",
		// Keep a failed spec's namespaces (and pods) so that its pairs can be traced.
		"--delete-namespace-on-failure=false",
	)
}

// reportFailures prints each failed spec's upstream message and, for the Netpol suite,
// `sdn-lab trace` of the pairs its reachability matrix got wrong; the traces also go to
// <dir>/traces.txt.
func reportFailures(ctx context.Context, o options, s suite, r result) {
	tf, err := os.Create(filepath.Join(r.Dir, "traces.txt"))
	if err != nil {
		fmt.Println("conformance:", err)
		return
	}
	defer tf.Close()
	w := io.MultiWriter(os.Stdout, tf)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "\n=== FAILED %s\n%s\n", f.Name, indent(f.Message))
		if !s.PairTraces {
			continue
		}
		pairs := wrongPairs(f.Log)
		for i, p := range pairs {
			if i == maxTraces {
				fmt.Fprintf(w, "--- (%d more wrong pairs; see %s)\n", len(pairs)-maxTraces, filepath.Join(r.Dir, "junit_01.xml"))
				break
			}
			fmt.Fprintf(w, "--- %s -> %s (%s %s): expected %s; sdn-lab trace:\n", p.From, p.To, p.Protocol, p.Addr, p.Expected)
			fmt.Fprintln(w, indent(trace(ctx, o, p)))
		}
	}
}

// trace runs `sdn-lab trace` from the client pod to the address it probed (the server's
// Service, as the suite probes), returning its output or why it failed.
func trace(ctx context.Context, o options, p wrongPair) string {
	bin, err := lab.FindBinary("sdn-lab")
	if err != nil {
		return err.Error()
	}
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(tctx, bin, traceArgs(o.stateDir, p)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s\n(sdn-lab trace: %v)", out, err)
	}
	return string(out)
}

// traceArgs is the sdn-lab command line tracing p: the form `sdn-lab trace --state-dir D
// SRC IP --port P --protocol PROTO` the e2e suites run.
func traceArgs(stateDir string, p wrongPair) []string {
	host, port, err := net.SplitHostPort(p.Addr)
	if err != nil {
		host, port = p.Addr, ""
	}
	args := []string{"trace", "--state-dir", stateDir, p.From, host}
	if port != "" {
		args = append(args, "--port", port)
	}
	return append(args, "--protocol", p.Protocol)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// printResults prints every run's Ginkgo summary and reports whether any failed.
func printResults(w io.Writer, results []result) (failed bool) {
	fmt.Fprintln(w, "\nconformance: results")
	for _, r := range results {
		verdict := "PASS"
		if !r.ok() {
			verdict, failed = "FAIL", true
		}
		fmt.Fprintf(w, "  %-4s %s run %d (%v, report %s)\n", verdict, r.Suite, r.Run, r.Took.Round(time.Second), r.Dir)
		for _, line := range r.Summary.Lines {
			fmt.Fprintf(w, "       %s\n", line)
		}
		if r.Err != nil {
			fmt.Fprintf(w, "       error: %v\n", r.Err)
		}
		for _, f := range r.Failures {
			fmt.Fprintf(w, "       failed: %s\n", f.Name)
		}
	}
	return failed
}
