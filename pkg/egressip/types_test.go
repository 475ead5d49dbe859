package egressip

import (
	"net/netip"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

func TestFromAPI(t *testing.T) {
	hss := []*networkv1.HostSubnet{
		{ObjectMeta: metav1.ObjectMeta{Name: "b", Annotations: map[string]string{networkv1.EgressUnreachableAnnotation: "2025-01-01T00:00:00Z"}},
			HostIP: "192.168.0.2", EgressCIDRs: []networkv1.HostSubnetEgressCIDR{"192.0.2.1/24", "bogus"},
			EgressIPs: []networkv1.HostSubnetEgressIP{"192.0.2.9", "192.0.2.3", "192.0.2.9"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a"}, HostIP: "192.168.0.1"},
		{ObjectMeta: metav1.ObjectMeta{Name: "noip"}, HostIP: "", EgressIPs: []networkv1.HostSubnetEgressIP{"192.0.2.7"}},
	}
	netnss := []*networkv1.NetNamespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "z"}, NetID: 12, EgressIPs: []networkv1.NetNamespaceEgressIP{"192.0.2.5", "192.0.2.4", "192.0.2.5"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "none"}, NetID: 13},
	}
	nodes, nss := FromAPI(hss, netnss)
	wantNodes := []Node{
		{Name: "a", HostIP: ip("192.168.0.1")},
		{Name: "b", HostIP: ip("192.168.0.2"), EgressIPs: ips("192.0.2.3", "192.0.2.9"), EgressCIDRs: []netip.Prefix{cidr("192.0.2.0/24")}, Unreachable: true},
	}
	if !reflect.DeepEqual(nodes, wantNodes) {
		t.Errorf("nodes %+v\nwant  %+v", nodes, wantNodes)
	}
	if want := []Namespace{ns("z", 12, "192.0.2.5", "192.0.2.4")}; !reflect.DeepEqual(nss, want) {
		t.Errorf("namespaces %+v, want %+v (request order kept, duplicates dropped, empty requests left out)", nss, want)
	}
}
