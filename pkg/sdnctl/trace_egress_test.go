package sdnctl

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

func egressFixture(unreachable bool) ([]networkv1.HostSubnet, []*networkv1.NetNamespace) {
	hs := []networkv1.HostSubnet{
		{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Host: "node1", HostIP: "192.168.126.10",
			EgressIPs: []networkv1.HostSubnetEgressIP{"192.168.126.100"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "node2"}, Host: "node2", HostIP: "192.168.126.11",
			EgressIPs: []networkv1.HostSubnetEgressIP{"192.168.126.101"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "node3"}, Host: "node3", HostIP: "192.168.126.12"},
	}
	if unreachable {
		hs[0].Annotations = map[string]string{networkv1.EgressUnreachableAnnotation: "2026-12-06T05:00:00Z"}
	}
	nns := []*networkv1.NetNamespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "one"}, NetName: "one", NetID: 10,
			EgressIPs: []networkv1.NetNamespaceEgressIP{"192.168.126.100"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "two"}, NetName: "two", NetID: 11,
			EgressIPs: []networkv1.NetNamespaceEgressIP{"192.168.126.100", "192.168.126.101"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, NetName: "plain", NetID: 12},
	}
	return hs, nns
}

func egressSrc(ns, node string, vnid uint32) endpoint {
	return endpoint{pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}}, node: node, vnid: vnid}
}

func TestEgressWords(t *testing.T) {
	hs, nns := egressFixture(false)
	two := nns[1]
	for _, c := range []struct {
		name string
		src  endpoint
		nns  []*networkv1.NetNamespace
		want []string
	}{
		{"no request", egressSrc("plain", "node3", 12), nns[:1], []string{"requests no egress IP", "node node3 with the node's address"}},
		{"remote egress node", egressSrc("one", "node3", 10), nns[:1], []string{"source 192.168.126.100 via node node1 (192.168.126.10)", "tunnelled with VNID 10"}},
		{"on the egress node", egressSrc("one", "node1", 10), nns[:1], []string{"source 192.168.126.100, SNATed in br0 on node node1"}},
		{"two nodes", egressSrc("two", "node3", 11), []*networkv1.NetNamespace{two},
			[]string{"select group", "192.168.126.100 via node node1", " or source 192.168.126.101 via node node2"}},
		{"requested twice", egressSrc("one", "node3", 10), nns, []string{"none is active", "dropped in table 101", "requested by NetNamespaces one, two"}},
	} {
		got := strings.Join(egressWords(c.src, hs, c.nns), "\n")
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", c.name, got, w)
			}
		}
	}
	hs, nns = egressFixture(true)
	got := strings.Join(egressWords(egressSrc("one", "node3", 10), hs, nns[:1]), "\n")
	if !strings.Contains(got, "none is active") || !strings.Contains(got, "does not answer health checks") {
		t.Errorf("unreachable egress node: %q", got)
	}
	if w := egressWords(endpoint{}, hs, nns); w != nil {
		t.Errorf("a source that is no pod: %q, want nothing", w)
	}
}
