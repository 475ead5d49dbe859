package sdnctl

import (
	"bytes"
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// traceBackend serves canned bridges by ovs-ofctl target and ports by OVSDB
// endpoint (no ofproto/trace: nodes given only by socket flags have an
// unusable appctl target, so the halves that need one are reported skipped).
type traceBackend struct {
	flows  map[string][]ovs.Flow
	groups map[string][]ovs.GroupEntry
	ports  map[string][]ovsdb.PortInfo
}

func (b *traceBackend) DumpFlows(_ context.Context, target string, f ovs.Filter) ([]ovs.DumpedFlow, error) {
	var out []ovs.DumpedFlow
	for _, fl := range b.flows[target] {
		if f.Selects(fl) {
			out = append(out, ovs.DumpedFlow{Flow: fl})
		}
	}
	return out, nil
}

func (b *traceBackend) DumpGroups(_ context.Context, target string) ([]ovs.GroupEntry, error) {
	return b.groups[target], nil
}

func (b *traceBackend) Ports(_ context.Context, endpoint, _ string) ([]ovsdb.PortInfo, error) {
	return b.ports[endpoint], nil
}

const (
	cannedNode1Target = "unix:/canned/node1/br0.mgmt"
	cannedNode1DB     = "unix:/canned/node1/db.sock"
)

// cannedNode1 is node1's bridge as the agent renders it, plus extra flows.
func cannedNode1(t *testing.T, extra ...ovs.Flow) *traceBackend {
	flows, groups, pods := traceNodeState(t, traceNodes[0])
	var ports []ovsdb.PortInfo
	for _, p := range pods {
		ports = append(ports, ovsdb.PortInfo{Name: "veth-" + p.Name, OFPort: int(p.OFPort), ExternalIDs: map[string]string{
			ovsdb.ExternalIDPodNamespace: p.Namespace, ovsdb.ExternalIDPodName: p.Name, ovsdb.ExternalIDIP: p.IP.String()}})
	}
	return &traceBackend{
		flows:  map[string][]ovs.Flow{cannedNode1Target: append(flows, extra...)},
		groups: map[string][]ovs.GroupEntry{cannedNode1Target: groups},
		ports:  map[string][]ovsdb.PortInfo{cannedNode1DB: ports},
	}
}

// cannedNode1Flags reach node1 through the canned backend only.
var cannedNode1Flags = []string{"--local-node", "none", "--node-target", "node1=" + cannedNode1Target,
	"--node-ovsdb", "node1=" + cannedNode1DB, "--appctl-target", "node1=/canned/node1/none.ctl"}

func runTraceOn(t *testing.T, b OVSBackend, args ...string) runResult {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(append([]string{"trace"}, args...), cannedNode1Flags...)
	code := Main(context.Background(), args, Options{Out: &out, ErrOut: &errOut, Clients: traceClients(), OVS: b})
	return runResult{stdout: out.String(), stderr: errOut.String(), code: code}
}

// TestTraceServiceGolden: the whole output of a trace to a ClusterIP with a
// local endpoint, and to one with two remote endpoints whose node sdnctl
// cannot reach.
func TestTraceServiceGolden(t *testing.T) {
	for golden, args := range map[string][]string{
		"service-web-local.txt":   {"proj1/client", "172.30.0.10"},
		"service-db-remote.txt":   {"proj1/client", "172.30.0.20:80"},
		"service-nodeport.txt":    {"198.18.0.254", "192.168.126.10:30080"},
		"service-no-endpoint.txt": {"proj3/app", "172.30.0.30", "--port", "80"},
	} {
		got := runTraceOn(t, cannedNode1(t), args...)
		if got.code != ExitOK || got.stderr != "" {
			t.Errorf("%v: exit %d: %s", args, got.code, got.stderr)
		}
		assertGolden(t, filepath.Join("trace", golden), got.stdout)
	}
}

// TestTraceService: the facts each Service trace must state.
func TestTraceService(t *testing.T) {
	learned := stickyLearnedFlow(t)
	for _, tc := range []struct {
		name  string
		args  []string
		extra []ovs.Flow
		want  []string
	}{
		{"policy after DNAT", []string{"proj1/client", "172.30.0.20"}, nil, []string{
			"destination: service proj2/db port p, ClusterIP 172.30.0.20:80/tcp",
			"bucket 0: 10.128.2.5:5432 on node node2 (pod proj2/db-0)",
			"bucket 1: 10.128.2.6:5432 on node node2 (pod proj2/db-1)",
			"DNAT 172.30.0.20:80 -> 10.128.2.5:5432",
			// Egress allows 10.128.2.0/23 on 5432 only: judged after DNAT, the client may.
			"NetworkPolicy egress: allowed by NetworkPolicy proj1/restrict-egress rule egress[1]",
			"=> sent through the VXLAN tunnel to node node2 (192.168.126.11) with VNID 10",
			"node2: not traced: sdnctl cannot reach this node's OVS. Run on node node2:\n  sdnctl trace proj1/client 172.30.0.20:80 --protocol tcp --endpoint 10.128.2.6\n",
		}},
		{"isolated endpoint", []string{"proj3/app", "172.30.0.10:80"}, nil, []string{
			"bucket 0: 10.128.0.6:8080 local (pod proj1/server)",
			"=> dropped in PolicyIngress(80) on node1: NetworkPolicy ingress: dropped: pod proj1/server is isolated for ingress by NetworkPolicy proj1/allow-server",
		}},
		{"one endpoint", []string{"proj1/client", "172.30.0.20", "--endpoint", "10.128.2.6"}, nil, []string{
			"bucket 0: 10.128.2.5:5432",
			"\nnode1: bucket 1 -> 10.128.2.6:5432\n",
		}},
		{"session affinity learned", []string{"proj1/client", "172.30.0.11"}, []ovs.Flow{learned}, []string{
			"node1: session affinity: OVS learned 10.128.0.6:8080 local (pod proj1/server) for this client; the group is not consulted",
			"session affinity: the endpoint OVS learned for this client",
			"=> delivered to pod proj1/server (ofport 4) on node1",
		}},
		{"session affinity first", []string{"proj1/client", "172.30.0.11"}, nil, []string{
			"session affinity: no earlier choice for this client",
			"select group ",
			"bucket 0 of 1 -> 10.128.0.6:8080\n",
			"DNAT 172.30.0.11:8080 -> 10.128.0.6:8080: conntrack commits the connection; its replies are un-DNATed in Routing(31); OVS learns this choice for the client (sessionAffinity ClientIP)",
		}},
		{"UDP multipath", []string{"proj3/app", "172.30.0.21"}, nil, []string{
			"Trace udp 10.128.0.7 -> 172.30.0.21 port 53",
			"node1: multipath over the 5-tuple, 2 links (traced by sdnctl over br0's flows and groups, once per link)",
			"link 0: 10.128.2.5:5353 on node node2 (pod proj2/db-0)",
			"link 1: 10.128.2.6:5353 on node node2 (pod proj2/db-1)",
			"multipath over the 5-tuple: link 1 of 2 -> 10.128.2.6:5353",
			"\nnode1: link 1 -> 10.128.2.6:5353\n",
			"DNAT 172.30.0.21:53 -> 10.128.2.6:5353",
		}},
		{"dropped by a foreign flow before the Service", []string{"proj1/client", "172.30.0.10"}, []ovs.Flow{foreignFlow(t, "cookie=0xdead, table=0, priority=10000,tcp,tp_dst=80 actions=drop")}, []string{
			"node1: br0 drops the packet in Classifier(0) before it is load-balanced (the path follows)",
			"p10000 tcp,tp_dst=80 -> drop",
			"dropped: the flow is not ovs-sdn's (cookie 0xdead): an out-of-band edit of the bridge, which the agent's next full sync removes",
			"=> dropped in Classifier(0) on node1: the flow is not ovs-sdn's (cookie 0xdead)",
		}},
		{"dropped by a foreign flow in a policy table", []string{"proj1/client", "172.30.0.10"}, []ovs.Flow{foreignFlow(t, "cookie=0xbeef, table=80, priority=65000,tcp actions=drop")}, []string{
			"bucket 0: 10.128.0.6:8080 local (pod proj1/server)",
			"=> dropped in PolicyIngress(80) on node1: dropped: the flow is not ovs-sdn's (cookie 0xbeef): an out-of-band edit of the bridge",
		}},
		{"hairpin", []string{"proj1/server", "172.30.0.10"}, nil, []string{
			"SNAT to 10.128.0.1: the reply must come back through this node",
			"=> delivered to pod proj1/server (ofport 4) on node1",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runTraceOn(t, cannedNode1(t, tc.extra...), tc.args...)
			if got.code != ExitOK || got.stderr != "" {
				t.Fatalf("exit %d: %s\n%s", got.code, got.stderr, got.stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(got.stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, got.stdout)
				}
			}
			if strings.Contains(tc.name, "one endpoint") && strings.Contains(got.stdout, "bucket 0 ->") {
				t.Errorf("--endpoint traced another endpoint:\n%s", got.stdout)
			}
			// A packet dropped before the Service says nothing about br0's
			// Service flows, and the table's own drop reasons do not apply.
			if strings.Contains(tc.name, "foreign") {
				for _, wrong := range []string{"no flow of br0 load-balances", "the agent has not caught up", "not IP or ARP"} {
					if strings.Contains(got.stdout, wrong) {
						t.Errorf("output says %q:\n%s", wrong, got.stdout)
					}
				}
			}
		})
	}
}

// foreignFlow is a flow someone added to br0 by hand (a cookie of no ovs-sdn category).
func foreignFlow(t *testing.T, line string) ovs.Flow {
	f, err := ovs.ParseFlow(line)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// stickyLearnedFlow is the flow OVS learns when proj1/client first reaches
// proj1/sticky on node1.
func stickyLearnedFlow(t *testing.T) ovs.Flow {
	flows, groups, _ := traceNodeState(t, traceNodes[0])
	tr, err := ovs.TraceWithGroups(flows, groups, ovs.Packet{InPort: 3, Proto: ovs.ProtoTCP,
		Src: netip.MustParseAddr("10.128.0.5"), Dst: netip.MustParseAddr("172.30.0.11"), TpSrc: 40000, TpDst: 8080})
	if err != nil || len(tr.Learned) != 1 {
		t.Fatalf("learned %v, %v\n%s", tr.Learned, err, tr)
	}
	return tr.Learned[0]
}

// TestTraceServiceDisagreements: br0 without the Service's flows, or with
// fewer endpoints than the API gives, is said so.
func TestTraceServiceDisagreements(t *testing.T) {
	// The agent has not programmed db-1 yet.
	b := cannedNode1(t)
	c := traceConfig(traceNodes[0])
	stale := append([]fxService(nil), traceServices...)
	stale[2].eps = stale[2].eps[:1]
	flows, _ := traceNodeFlows(t, traceNodes[0])
	svcFlows, groups := serviceState(t, c, "node1", stale)
	b.flows[cannedNode1Target] = append(append(flows, pipeline.ServiceProxyFlows(c)...), svcFlows...)
	b.groups[cannedNode1Target] = groups
	got := runTraceOn(t, b, "proj1/client", "172.30.0.20")
	want := "note: the API gives this traffic 2 ready endpoints on node node1 (10.128.2.5:5432, 10.128.2.6:5432), br0 has 10.128.2.5:5432: the agent has not caught up, or is not running"
	if got.code != ExitOK || !strings.Contains(got.stdout, want) {
		t.Errorf("stale group: exit %d, stderr %s, stdout lacks %q:\n%s", got.code, got.stderr, want, got.stdout)
	}
	// kube-proxy mode: no proxy flows, no Service flows.
	b.flows[cannedNode1Target], b.groups[cannedNode1Target] = flows, nil
	got = runTraceOn(t, b, "proj1/client", "172.30.0.10")
	want = "node1: br0 has no service proxy flows: the node runs --proxy-mode=kube-proxy"
	if got.code != ExitOK || !strings.Contains(got.stdout, want) {
		t.Errorf("kube-proxy mode: exit %d, stderr %s, stdout lacks %q:\n%s", got.code, got.stderr, want, got.stdout)
	}
}

// TestTraceServiceErrors: bad Service destinations and flags.
func TestTraceServiceErrors(t *testing.T) {
	usage := "\nSee 'sdnctl trace -h' for help and examples\n"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"proj1/client", "172.30.0.10", "--endpoint", "server"}, `error: --endpoint must be an IP address, got "server"` + usage},
		{[]string{"proj1/client", "proj1/server", "--endpoint", "10.128.0.6"}, "error: --endpoint needs a Service destination (a ClusterIP, or a node address and node port); proj1/server is none" + usage},
		{[]string{"proj1/client", "172.30.0.10:81"}, "error: service proj1/web (ClusterIP 172.30.0.10) has no port 81: its ports are 80/TCP\n"},
		{[]string{"proj1/client", "172.30.0.10", "--protocol", "udp"}, "error: service proj1/web (ClusterIP 172.30.0.10) has no UDP port: its ports are 80/TCP\n"},
		{[]string{"proj1/client", "172.30.0.10:80", "--port", "81"}, "error: 172.30.0.10:80 names port 80, --port 81: give one\n"},
		{[]string{"proj1/client", "192.168.126.10:31999"}, "error: no Service has node port 31999 (the host of node node1 refuses it)\n"},
		{[]string{"proj1/client", "192.168.126.10", "--port", "30080", "--protocol", "udp"}, "error: no Service has node port 30080/UDP (the host of node node1 refuses it)\n"},
		{[]string{"proj1/client", "10.128.0.6:8080"}, "error: 10.128.0.6:8080: no Service has ClusterIP 10.128.0.6, and 10.128.0.6 is no node's address with a node port\n"},
		{[]string{"198.18.0.254", "172.30.0.10"}, "error: 198.18.0.254 is not a pod: a ClusterIP is traced from a pod (SRC NAMESPACE/POD or a pod's IP)\n"},
		{[]string{"proj1/client", "172.30.0.20", "--endpoint", "10.9.9.9"}, "error: --endpoint 10.9.9.9: not an endpoint of service proj2/db in br0 of node node1\n"},
	} {
		got := runTraceOn(t, cannedNode1(t), tc.args...)
		if got.code != ExitFailure || !strings.HasSuffix(got.stderr, tc.want) {
			t.Errorf("sdnctl trace %v: exit %d, stderr %q, want %q", tc.args, got.code, got.stderr, tc.want)
		}
	}
	// No node reachable: the entry node is skipped with the command to run there, and
	// with --endpoint the endpoint's node too.
	got := runTrace(t, "proj1/client", "172.30.0.20:80", "--endpoint", "10.128.2.6", "--local-node", "none")
	for _, w := range []string{
		"node1: not traced: sdnctl cannot reach this node's OVS. Run on node node1:\n  sdnctl trace proj1/client 172.30.0.20:80 --protocol tcp\n",
		"node2: not traced: sdnctl cannot reach this node's OVS. Run on node node2:\n  sdnctl trace proj1/client 172.30.0.20:80 --protocol tcp --endpoint 10.128.2.6\n",
	} {
		if got.code != ExitOK || !strings.Contains(got.stdout, w) {
			t.Errorf("nothing reachable: exit %d, output lacks %q:\n%s%s", got.code, w, got.stdout, got.stderr)
		}
	}
	// Addresses that are no Service keep the plain trace, with --port as their port.
	for _, args := range [][]string{{"proj1/client", "10.128.0.6", "--port", "9090"}, {"proj1/client", "192.168.126.10", "--port", "22"}} {
		got := runTrace(t, append(args, "--local-node", "none")...)
		want := "Trace tcp 10.128.0.5 -> " + args[1] + " port " + args[3] + "\n"
		if got.code != ExitOK || !strings.HasPrefix(got.stdout, want) || strings.Contains(got.stdout, "service") {
			t.Errorf("sdnctl trace %v: exit %d, stderr %q, stdout:\n%s", args, got.code, got.stderr, got.stdout)
		}
	}
}
