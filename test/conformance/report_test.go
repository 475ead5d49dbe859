package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSummary(t *testing.T) {
	out := `Will run 47 of 7144 specs
•••
Ran 47 of 7144 Specs in 1620.318 seconds
FAIL! -- 45 Passed | 2 Failed | 0 Pending | 7097 Skipped
`
	s, ok := parseSummary(out)
	if !ok {
		t.Fatal("summary not found")
	}
	want := summary{Ran: 47, Of: 7144, Seconds: 1620.318, Passed: 45, Failed: 2, Skipped: 7097,
		Lines: []string{"Ran 47 of 7144 Specs in 1620.318 seconds", "FAIL! -- 45 Passed | 2 Failed | 0 Pending | 7097 Skipped"}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got %+v\nwant %+v", s, want)
	}
	// Ginkgo's parallel runner prefixes the result line with a timing word.
	if s, ok := parseSummary("Ran 2 of 9 Specs in 3.5 seconds\nSUCCESS! 1m2s -- 2 Passed | 0 Failed | 0 Pending | 7 Skipped\n"); !ok || s.Passed != 2 || s.Skipped != 7 {
		t.Errorf("parallel summary: %+v %v", s, ok)
	}
	if _, ok := parseSummary("Will run 47 of 7144 specs\n•••\npanic: boom\n"); ok {
		t.Error("a run cut short has no summary, got one")
	}
}

// A report in the shape Ginkgo v2's JUnit reporter writes (k8s e2e --report-dir): one
// passed spec, one failed Netpol spec with its captured log, skipped ones.
const junitSample = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="4" disabled="1" errors="0" failures="1" time="70.1">
  <testsuite name="Kubernetes e2e suite" package="/tmp" tests="4" skipped="1" failures="1" time="70.1">
    <testcase name="[It] [sig-network] Netpol NetworkPolicy between server and client should support a &#39;default-deny-ingress&#39; policy [Feature:NetworkPolicy]" classname="Kubernetes e2e suite" status="passed" time="29.6"></testcase>
    <testcase name="[It] [sig-network] Netpol NetworkPolicy between server and client should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector [Feature:NetworkPolicy]" classname="Kubernetes e2e suite" status="failed" time="40.5">
      <failure message="Had 2 wrong results in reachability matrix" type="failed">[FAILED] Had 2 wrong results in reachability matrix
In [It] at: k8s.io/kubernetes@v1.34.4/test/e2e/network/netpol/test_helper.go:129</failure>
      <system-err>STEP: Validating reachability matrix... (FIRST TRY)
  I1206 08:10:01.000000 1 probe.go:101] Validation of y-1234/b -&gt; x-1234/a FAILED !!!
  I1206 08:10:01.000000 1 probe.go:102] error command terminated with exit code 1
  I1206 08:10:01.000000 1 probe.go:104] Expected allowed pod connection was instead BLOCKED --- run &#39;kubectl exec b -c cont-80-tcp -n y-1234 -- /agnhost connect 172.30.12.7:80 --timeout=1s --protocol=tcp&#39;
  I1206 08:10:01.000000 1 probe.go:101] Validation of z-1234/c -&gt; x-1234/a FAILED !!!
  I1206 08:10:01.000000 1 probe.go:106] Expected blocked pod connection was instead ALLOWED --- run &#39;kubectl exec c -c cont-80-udp -n z-1234 -- /agnhost connect 172.30.12.7:80 --timeout=1s --protocol=udp&#39;
STEP: Validating reachability matrix... (SECOND TRY)
  I1206 08:10:05.000000 1 probe.go:101] Validation of y-1234/b -&gt; x-1234/a FAILED !!!
  I1206 08:10:05.000000 1 probe.go:104] Expected allowed pod connection was instead BLOCKED --- run &#39;kubectl exec b -c cont-80-tcp -n y-1234 -- /agnhost connect 172.30.12.7:80 --timeout=1s --protocol=tcp&#39;
</system-err>
    </testcase>
    <testcase name="[It] [sig-network] Netpol SCTP [Feature:SCTPConnectivity]" classname="Kubernetes e2e suite" status="skipped" time="0"><skipped message="skipped"></skipped></testcase>
  </testsuite>
</testsuites>
`

func TestFailedSpecsAndWrongPairs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junit_01.xml")
	if err := os.WriteFile(path, []byte(junitSample), 0o600); err != nil {
		t.Fatal(err)
	}
	failed, err := failedSpecs(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || !strings.Contains(failed[0].Name, "based on NamespaceSelector") {
		t.Fatalf("failed specs %+v, want the NamespaceSelector spec only", failed)
	}
	if failed[0].Message != "Had 2 wrong results in reachability matrix" {
		t.Errorf("message %q", failed[0].Message)
	}
	got := wrongPairs(failed[0].Log)
	want := []wrongPair{
		{From: "y-1234/b", To: "x-1234/a", Addr: "172.30.12.7:80", Protocol: "tcp", Expected: "allowed"},
		{From: "z-1234/c", To: "x-1234/a", Addr: "172.30.12.7:80", Protocol: "udp", Expected: "blocked"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("wrong pairs\n got %+v\nwant %+v", got, want)
	}
}

func TestFailedSpecsBadReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junit_01.xml")
	if err := os.WriteFile(path, []byte("<testsuites><testsuite>"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := failedSpecs(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("truncated report: err %v, want one naming %s", err, path)
	}
}

func TestSelectSuites(t *testing.T) {
	s, err := selectSuites("sig-network-conformance, netpol")
	if err != nil || len(s) != 2 || s[0].Name != networkSuite.Name || s[1].Name != netpolSuite.Name {
		t.Errorf("got %v %v", s, err)
	}
	if _, err := selectSuites("netpol,dns"); err == nil || !strings.Contains(err.Error(), `"dns"`) {
		t.Errorf("unknown suite: err %v", err)
	}
	if got := netpolSuite.skipPattern(); got != `\[Feature:SCTPConnectivity\]` {
		t.Errorf("netpol skip %q", got)
	}
}

// TestWrongPairsFromARealRun: log lines as the v1.34.4 Netpol suite printed them on this
// lab (a run where one server pod could not listen) give the pairs and probed addresses.
func TestWrongPairsFromARealRun(t *testing.T) {
	log, err := os.ReadFile("testdata/netpol-wrong-probes.log")
	if err != nil {
		t.Fatal(err)
	}
	got := wrongPairs(string(log))
	if len(got) != 4 {
		t.Fatalf("%d wrong pairs, want 4: %+v", len(got), got)
	}
	want := wrongPair{From: "netpol-x-2203/b", To: "netpol-y-8836/a", Addr: "172.30.154.52:80", Protocol: "tcp", Expected: "allowed"}
	if got[0] != want {
		t.Errorf("first pair %+v, want %+v", got[0], want)
	}
	if got[3].From != "netpol-y-8836/a" || got[3].To != "netpol-x-2203/b" || got[3].Addr != "172.30.128.28:80" {
		t.Errorf("last pair %+v", got[3])
	}
}

func TestTraceArgs(t *testing.T) {
	p := wrongPair{From: "x-1/a", To: "y-1/b", Addr: "172.30.12.7:80", Protocol: "udp", Expected: "allowed"}
	got := strings.Join(traceArgs("/run/cf", p), " ")
	if want := "trace --state-dir /run/cf x-1/a 172.30.12.7 --port 80 --protocol udp"; got != want {
		t.Errorf("trace args %q, want %q", got, want)
	}
}
