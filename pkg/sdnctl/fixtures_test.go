package sdnctl

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

// fixtureTime is the creationTimestamp of every pure fixture; tests print with
// fixtureNow so the AGE column reads "30m" (the real-apiserver test uses the same offset
// from its objects' real timestamps, so both compare with one golden).
var fixtureTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

const fixtureAge = 30 * time.Minute

var fixtureNow = fixtureTime.Add(fixtureAge)

// fixtureNamespaces are the namespaces the EgressNetworkPolicy fixtures live in.
var fixtureNamespaces = []string{"proj-a", "proj-b"}

// fixtures returns, per resource, the objects the golden tests print, in the order the API
// lists them (by namespace, then name). They cover: absent egress lists, populated ones,
// an explicitly empty one (hs "node3", created as unstructured so "egressIPs: []" survives),
// VNIDs 0/1/shared, and EgressNetworkPolicies in two namespaces.
func fixtures() map[string][]runtime.Object {
	return map[string][]runtime.Object{
		"clusternetworks": {
			&networkv1.ClusterNetwork{
				ObjectMeta:       metav1.ObjectMeta{Name: "default"},
				Network:          "10.128.0.0/14",
				HostSubnetLength: 9,
				ServiceNetwork:   "172.30.0.0/16",
				PluginName:       networkv1.MultiTenantPluginName,
				ClusterNetworks:  []networkv1.ClusterNetworkEntry{{CIDR: "10.128.0.0/14", HostSubnetLength: 9}},
			},
		},
		"hostsubnets": {
			&networkv1.HostSubnet{
				ObjectMeta:  metav1.ObjectMeta{Name: "node1", Labels: map[string]string{"zone": "a"}},
				Host:        "node1",
				HostIP:      "192.168.111.11",
				Subnet:      "10.128.0.0/23",
				EgressCIDRs: []networkv1.HostSubnetEgressCIDR{"192.168.111.0/24"},
				EgressIPs:   []networkv1.HostSubnetEgressIP{"192.168.111.100", "192.168.111.101"},
			},
			&networkv1.HostSubnet{
				ObjectMeta: metav1.ObjectMeta{Name: "node2", Labels: map[string]string{"zone": "b"}},
				Host:       "node2",
				HostIP:     "192.168.111.12",
				Subnet:     "10.129.0.0/23",
			},
			unstructuredObject(map[string]interface{}{
				"apiVersion":  "network.openshift.io/v1",
				"kind":        "HostSubnet",
				"metadata":    map[string]interface{}{"name": "node3", "labels": map[string]interface{}{"zone": "b"}},
				"host":        "node3",
				"hostIP":      "192.168.111.13",
				"subnet":      "10.130.0.0/23",
				"egressCIDRs": []interface{}{},
				"egressIPs":   []interface{}{},
			}),
		},
		"netnamespaces": {
			netNamespace("default", 0),
			netNamespace("kube-system", 1),
			multicast(netNamespace("proj-a", 4711, "192.168.111.100")),
			netNamespace("proj-b", 4711),
			multicast(netNamespace("proj-c", 16777215, "192.168.111.101", "192.168.111.102")),
		},
		"egressnetworkpolicies": {
			egressPolicy("proj-a", "default"),
			egressPolicy("proj-b", "default"),
			egressPolicy("proj-b", "extra"),
		},
	}
}

func netNamespace(name string, netid uint32, egressIPs ...networkv1.NetNamespaceEgressIP) *networkv1.NetNamespace {
	return &networkv1.NetNamespace{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		NetName:    name,
		NetID:      netid,
		EgressIPs:  egressIPs,
	}
}

// multicast sets the multicast-enabled annotation on nn.
func multicast(nn *networkv1.NetNamespace) *networkv1.NetNamespace {
	nn.Annotations = map[string]string{networkv1.MulticastEnabledAnnotation: "true"}
	return nn
}

func egressPolicy(ns, name string) *networkv1.EgressNetworkPolicy {
	return &networkv1.EgressNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkv1.EgressNetworkPolicySpec{Egress: []networkv1.EgressNetworkPolicyRule{
			{Type: networkv1.EgressNetworkPolicyRuleAllow, To: networkv1.EgressNetworkPolicyPeer{DNSName: "www.example.com"}},
			{Type: networkv1.EgressNetworkPolicyRuleDeny, To: networkv1.EgressNetworkPolicyPeer{CIDRSelector: "0.0.0.0/0"}},
		}},
	}
}

func unstructuredObject(m map[string]interface{}) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: m}
}

// toUnstructured converts a typed or unstructured fixture into what the dynamic client
// returns, with apiVersion and kind set.
func toUnstructured(t testing.TB, obj runtime.Object) unstructured.Unstructured {
	t.Helper()
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return *u.DeepCopy()
	}
	// Through JSON, as the API server's objects reach the dynamic client: numbers become
	// int64 and omitempty fields are absent.
	data, err := json.Marshal(obj)
	if err != nil {
		t.Fatalf("encoding %T: %v", obj, err)
	}
	var m map[string]interface{}
	if err := utiljson.Unmarshal(data, &m); err != nil {
		t.Fatalf("decoding %T: %v", obj, err)
	}
	u := unstructured.Unstructured{Object: m}
	gvks, _, err := testScheme(t).ObjectKinds(obj)
	if err != nil {
		t.Fatalf("kind of %T: %v", obj, err)
	}
	u.SetGroupVersionKind(gvks[0])
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u
}

// pureFixtures returns the fixtures of one resource as the API server would serve them:
// unstructured, with the fixed creation time.
func pureFixtures(t testing.TB, resource string) []unstructured.Unstructured {
	t.Helper()
	var out []unstructured.Unstructured
	for _, obj := range fixtures()[resource] {
		u := toUnstructured(t, obj)
		u.SetCreationTimestamp(metav1.NewTime(fixtureTime))
		out = append(out, u)
	}
	return out
}

func testScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := networkv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := corev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}
