package egressip

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func ip(s string) netip.Addr       { return netip.MustParseAddr(s) }
func cidr(s string) netip.Prefix   { return netip.MustParsePrefix(s) }
func ips(s ...string) []netip.Addr { return slices.Collect(mapSeq(s, ip)) }

func mapSeq[T, U any](in []T, f func(T) U) func(func(U) bool) {
	return func(yield func(U) bool) {
		for _, v := range in {
			if !yield(f(v)) {
				return
			}
		}
	}
}

func auto(name, hostIP string, cidrs ...string) Node {
	return Node{Name: name, HostIP: ip(hostIP), EgressCIDRs: slices.Collect(mapSeq(cidrs, cidr))}
}

func manual(name, hostIP string, egress ...string) Node {
	return Node{Name: name, HostIP: ip(hostIP), EgressIPs: ips(egress...)}
}

func ns(name string, vnid uint32, egress ...string) Namespace {
	return Namespace{Name: name, VNID: vnid, EgressIPs: ips(egress...)}
}

// loads returns the number of IPs per automatic node.
func loads(a Allocation) map[string]int {
	out := map[string]int{}
	for n, ips := range a.EgressIPs {
		out[n] = len(ips)
	}
	return out
}

func TestAllocateSixNamespacesTwoNodes(t *testing.T) {
	nodes := []Node{auto("n1", "192.168.0.1", "192.0.2.0/24"), auto("n2", "192.168.0.2", "192.0.2.0/24")}
	var nss []Namespace
	for i := range 6 {
		nss = append(nss, ns(fmt.Sprintf("ns%d", i), uint32(10+i), fmt.Sprintf("192.0.2.%d", 10+i)))
	}
	a := Allocate(nodes, nss)
	if got := loads(a); got["n1"] != 3 || got["n2"] != 3 {
		t.Fatalf("loads %v, want 3/3 (%v)", got, a.EgressIPs)
	}
	st := Evaluate(a.Apply(nodes), nss)
	for vnid, e := range st.Egress {
		if len(e.Active) != 1 {
			t.Errorf("VNID %d: active %v", vnid, e.Active)
		}
	}
	if len(st.Problems) != 0 || len(a.Unassigned) != 0 {
		t.Errorf("problems %v unassigned %v", st.Problems, a.Unassigned)
	}
}

func TestAllocateTwoIPsOfOneNamespaceGoToTwoNodes(t *testing.T) {
	nodes := []Node{auto("n1", "192.168.0.1", "192.0.2.0/24"), auto("n2", "192.168.0.2", "192.0.2.0/24")}
	nss := []Namespace{ns("a", 10, "192.0.2.10", "192.0.2.11")}
	a := Allocate(nodes, nss)
	if got := loads(a); got["n1"] != 1 || got["n2"] != 1 {
		t.Fatalf("loads %v, want 1/1", got)
	}
	if e := Evaluate(a.Apply(nodes), nss).Egress[10]; len(e.Active) != 2 || e.Active[0].Node == e.Active[1].Node {
		t.Fatalf("active %v, want one IP on each node", e.Active)
	}
	// With one node left, the second IP has nowhere to go.
	nodes[1].Unreachable = true
	a = Allocate(a.Apply(nodes), nss)
	if len(a.Unassigned) != 1 || !strings.Contains(slices.Collect(maps.Values(a.Unassigned))[0], "n2 unreachable; n1 already hosting another egress IP of the namespace") {
		t.Errorf("unassigned %v", a.Unassigned)
	}
}

func TestAllocateFailoverAndStability(t *testing.T) {
	nodes := []Node{auto("n1", "192.168.0.1", "192.0.2.0/24"), auto("n2", "192.168.0.2", "192.0.2.0/24")}
	var nss []Namespace
	for i := range 4 {
		nss = append(nss, ns(fmt.Sprintf("ns%d", i), uint32(10+i), fmt.Sprintf("192.0.2.%d", 10+i)))
	}
	before := Allocate(nodes, nss).Apply(nodes)
	// n2 down: the survivor carries all; each of n2's IPs is a Move.
	down := slices.Clone(before)
	down[1].Unreachable = true
	a := Allocate(down, nss)
	if got := loads(a); got["n1"] != 4 || got["n2"] != 0 {
		t.Fatalf("loads %v, want 4/0", got)
	}
	if len(a.Moved) != 2 || a.Moved[0].From != "n2" || a.Moved[0].To != "n1" {
		t.Fatalf("moved %v", a.Moved)
	}
	// n2 back: nothing moves back; a new namespace goes to the emptier n2.
	back := a.Apply(down)
	back[1].Unreachable = false
	nss = append(nss, ns("new", 99, "192.0.2.99"))
	a2 := Allocate(back, nss)
	if !slices.Equal(a2.EgressIPs["n1"], a.EgressIPs["n1"]) || !slices.Equal(a2.EgressIPs["n2"], ips("192.0.2.99")) {
		t.Fatalf("after recovery %v, want n1 unchanged and only the new IP on n2", a2.EgressIPs)
	}
}

func TestAllocateManualAndCIDRs(t *testing.T) {
	nodes := []Node{
		manual("m", "192.168.0.9", "192.0.2.5"),
		auto("n1", "192.168.0.1", "192.0.2.0/25"),
		auto("n2", "192.168.0.2", "192.0.2.128/25"),
	}
	nodes[1].EgressIPs = ips("192.0.2.5", "192.0.2.6", "198.51.100.1") // manual IP, an unrequested one, one outside
	nss := []Namespace{ns("a", 10, "192.0.2.5"), ns("b", 11, "192.0.2.200"), ns("c", 12, "203.0.113.1")}
	a := Allocate(nodes, nss)
	want := map[string][]netip.Addr{"n1": nil, "n2": ips("192.0.2.200")}
	if !reflect.DeepEqual(a.EgressIPs, want) {
		t.Fatalf("EgressIPs %v, want %v (manual IP and strays removed from n1)", a.EgressIPs, want)
	}
	if r := a.Unassigned[ip("203.0.113.1")]; r != "no node's egressCIDRs hold it" {
		t.Errorf("unassigned reason %q", r)
	}
	st := Evaluate(a.Apply(nodes), nss)
	if e := st.Egress[10]; len(e.Active) != 1 || e.Active[0].Node != "m" {
		t.Errorf("manual IP not active on m: %+v", e)
	}
}

// TestEvaluateProblems: every conflict makes the IP inactive with a
// problem naming both objects; fixing it restores the IP.
func TestEvaluateProblems(t *testing.T) {
	cases := []struct {
		name       string
		nodes      []Node
		nss        []Namespace
		want       string // "Kind IPs ns=... nodes=..."
		wantActive map[uint32]int
	}{
		{"requested twice", []Node{manual("m1", "192.168.0.1", "192.0.2.1")},
			[]Namespace{ns("a", 10, "192.0.2.1"), ns("b", 11, "192.0.2.1")},
			"RequestedTwice 192.0.2.1 ns=[a b] nodes=[m1]", map[uint32]int{10: 0, 11: 0}},
		{"hosted twice", []Node{manual("m1", "192.168.0.1", "192.0.2.1"), manual("m2", "192.168.0.2", "192.0.2.1")},
			[]Namespace{ns("a", 10, "192.0.2.1")},
			"HostedTwice 192.0.2.1 ns=[a] nodes=[m1 m2]", map[uint32]int{10: 0}},
		{"two IPs of one namespace on one node", []Node{manual("m1", "192.168.0.1", "192.0.2.1", "192.0.2.2"), manual("m2", "192.168.0.2", "192.0.2.3")},
			[]Namespace{ns("a", 10, "192.0.2.1", "192.0.2.2", "192.0.2.3")},
			"SameNode 192.0.2.1,192.0.2.2 ns=[a] nodes=[m1]", map[uint32]int{10: 1}},
		{"not hosted", nil, []Namespace{ns("a", 10, "192.0.2.1")}, "NotHosted 192.0.2.1 ns=[a] nodes=[]", map[uint32]int{10: 0}},
		{"unreachable", []Node{{Name: "m1", HostIP: ip("192.168.0.1"), EgressIPs: ips("192.0.2.1"), Unreachable: true}},
			[]Namespace{ns("a", 10, "192.0.2.1")}, "NodeUnreachable 192.0.2.1 ns=[a] nodes=[m1]", map[uint32]int{10: 0}},
		{"joined namespaces share their IPs", []Node{manual("m1", "192.168.0.1", "192.0.2.1")},
			[]Namespace{ns("a", 10, "192.0.2.1"), ns("b", 10, "192.0.2.1")}, "", map[uint32]int{10: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := Evaluate(tc.nodes, tc.nss)
			var got []string
			for _, p := range st.Problems {
				got = append(got, fmt.Sprintf("%s %s ns=%v nodes=%v", p.Kind, strings.ReplaceAll(joinAddrs(p.IPs), ", ", ","), p.Namespaces, p.Nodes))
				for _, o := range append(p.Namespaces, p.Nodes...) {
					if !strings.Contains(p.Message(), o) {
						t.Errorf("message %q does not name %s", p.Message(), o)
					}
				}
			}
			if want := tc.want; (want == "" && len(got) != 0) || (want != "" && (len(got) != 1 || got[0] != want)) {
				t.Errorf("problems %q, want %q", got, want)
			}
			for vnid, n := range tc.wantActive {
				if e := st.Egress[vnid]; e == nil || len(e.Active) != n {
					t.Errorf("VNID %d: egress %+v, want %d active", vnid, e, n)
				}
			}
		})
	}
}

func TestHosted(t *testing.T) {
	nodes := []Node{manual("m1", "192.168.0.1", "192.0.2.2", "192.0.2.1"), manual("m2", "192.168.0.2", "192.0.2.3", "192.0.2.9")}
	st := Evaluate(nodes, []Namespace{ns("a", 10, "192.0.2.1"), ns("b", 11, "192.0.2.2", "192.0.2.3")})
	got := st.Hosted("m1")
	if len(got) != 2 || got[0].IP != ip("192.0.2.1") || got[1].IP != ip("192.0.2.2") || got[0].HostIP != ip("192.168.0.1") {
		t.Errorf("Hosted(m1) = %v", got)
	}
	if got := st.Hosted("m2"); len(got) != 1 || got[0].IP != ip("192.0.2.3") {
		t.Errorf("Hosted(m2) = %v (an unrequested IP is not hosted)", got)
	}
}
