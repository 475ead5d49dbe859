package sdnctl

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// egressDump is node1's bridge in the trace scenario (proj3/fw enforced).
func egressDump(t *testing.T) []ovs.DumpedFlow {
	flows, _ := traceNodeFlows(t, traceNodes[0])
	out := make([]ovs.DumpedFlow, 0, len(flows))
	for _, f := range flows {
		out = append(out, ovs.DumpedFlow{Flow: f})
	}
	return out
}

// TestFlowsEgressFirewall: --egress-firewall lists the table-100 flows of the
// namespace's VNID, each labelled with its rule, and says what the VNID does.
func TestFlowsEgressFirewall(t *testing.T) {
	dump := egressDump(t)
	run := func(t *testing.T, clients *Clients, args ...string) (runResult, []string) {
		t.Helper()
		b := &cannedBackend{dump: dump}
		return runFlows(t, Options{Clients: clients}, b.backend(), args...), b.filters
	}
	got, filters := run(t, traceClients(), "--egress-firewall", "proj3")
	if got.code != ExitOK || got.stderr != "note: VNID 12 enforces EgressNetworkPolicy proj3/fw (2 rules; rule i of n at priority n-i)\n" {
		t.Fatalf("exit %d, stderr %q", got.code, got.stderr)
	}
	want := []string{"br0 " + pipeline.EgressFirewallOwner(12).CookieMatch().String()}
	if diff := cmp.Diff(want, filters); diff != "" {
		t.Errorf("dump filters (-want +got):\n%s", diff)
	}
	assertGolden(t, filepath.Join("flows", "egress-firewall-proj3.txt"), got.stdout)
	if !strings.Contains(got.stdout, "# egress[0]: Allow 203.0.113.0/24") || !strings.Contains(got.stdout, "# egress[1]: Deny 0.0.0.0/0") {
		t.Errorf("labels missing:\n%s", got.stdout)
	}

	// A second policy in proj3: the agents drop all; the bridge still holds the old rules.
	clients := traceClients()
	extra := traceEgressPolicy()
	extra.Name = "extra"
	if _, err := clients.Network.NetworkV1().EgressNetworkPolicies("proj3").Create(context.Background(), extra, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ = run(t, clients, "--egress-firewall", "proj3")
	if !strings.Contains(got.stderr, "note: VNID 12: namespace proj3 has 2 EgressNetworkPolicies (proj3/extra, proj3/fw)") ||
		strings.Count(got.stdout, "# no current rule (stale)") != 1 || strings.Count(got.stdout, "# drop all: MultipleEgressNetworkPolicies") != 1 {
		t.Errorf("two policies: exit %d\n%s%s", got.code, got.stdout, got.stderr)
	}

	for _, tc := range []struct {
		name string
		args []string
		want runResult
	}{
		{"no policy", []string{"--egress-firewall", "proj1"},
			runResult{stderr: "note: no EgressNetworkPolicy applies to VNID 10 (namespace proj1)\nNo flows found on br0 matching egress firewall of namespace proj1\n"}},
		{"unknown namespace", []string{"--egress-firewall", "nope"},
			runResult{code: ExitFailure, stderr: "error: namespace nope has no NetNamespace (VNID): no egress firewall flows can exist for it\n"}},
		{"NS/NAME", []string{"--egress-firewall", "proj3/fw"},
			runResult{code: ExitFailure, stderr: "error: --egress-firewall takes a NAMESPACE, got \"proj3/fw\"\nSee 'sdnctl flows -h' for help and examples\n"}},
		{"with --pod", []string{"--egress-firewall", "proj3", "--pod", "proj3/app"},
			runResult{code: ExitFailure, stderr: "error: --egress-firewall cannot be combined with --pod or --policy\nSee 'sdnctl flows -h' for help and examples\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := run(t, traceClients(), tc.args...)
			got.stdout = ""
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(runResult{})); diff != "" {
				t.Errorf("sdnctl flows %v (-want +got):\n%s", tc.args, diff)
			}
		})
	}
}
