package v1_test

import (
	"fmt"
	"strings"
	"testing"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// validationCase is one object sent to a real API server with our CRDs installed. Objects
// are untyped maps so a case can carry what the Go types cannot (a negative netid).
type validationCase struct {
	name     string
	resource string         // plural of the network.openshift.io/v1 resource
	object   map[string]any // without metadata.name; the case name is used
	// wantField is the field path the error must name ("clusterNetworks[0].CIDR") and
	// wantReason a fragment of the reason; both empty means the object must be accepted.
	wantField, wantReason string
}

const egressNamespace = "validation"

// TestCRDValidation checks that the API server, with the CRDs of pkg/apis/network/crds,
// refuses invalid objects with an Invalid error naming the field and the reason, and accepts
// OpenShift's default objects.
func TestCRDValidation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver; skipped with -short")
	}
	env := testenv.StartT(t, testenv.Options{})
	client := dynamic.NewForConfigOrDie(env.Config)
	kube := kubernetes.NewForConfigOrDie(env.Config)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: egressNamespace}}
	if _, err := kube.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", egressNamespace, err)
	}

	var cases []validationCase
	cases = append(cases, clusterNetworkCases()...)
	cases = append(cases, hostSubnetCases()...)
	cases = append(cases, netNamespaceCases()...)
	cases = append(cases, egressNetworkPolicyCases()...)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := &unstructured.Unstructured{Object: tc.object}
			obj.SetName(objectName(tc, i))
			gvr := networkv1.SchemeGroupVersion.WithResource(tc.resource)
			_, err := resourceClient(client, gvr, tc.resource).Create(t.Context(), obj, metav1.CreateOptions{})
			checkValidation(t, tc, err)
		})
	}
}

// objectName is the case's object name; a NetNamespace case may fix it via netname.
func objectName(tc validationCase, i int) string {
	if name, ok := tc.object["metadata-name"].(string); ok {
		delete(tc.object, "metadata-name")
		return name
	}
	return fmt.Sprintf("case-%d", i)
}

func resourceClient(c dynamic.Interface, gvr schema.GroupVersionResource, resource string) dynamic.ResourceInterface {
	if resource == "egressnetworkpolicies" {
		return c.Resource(gvr).Namespace(egressNamespace)
	}
	return c.Resource(gvr)
}

// checkValidation asserts err is nil for an accepted case, and otherwise Invalid with
// "<field>:" and the reason in its message.
func checkValidation(t *testing.T, tc validationCase, err error) {
	t.Helper()
	if tc.wantField == "" {
		if err != nil {
			t.Fatalf("valid object refused: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("invalid object accepted; want an error on %s: %q", tc.wantField, tc.wantReason)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("error is %v (reason %q), want Invalid", err, apierrors.ReasonForError(err))
	}
	msg := err.Error()
	t.Logf("refused: %s", msg)
	if !strings.Contains(msg, tc.wantField+":") || !strings.Contains(msg, tc.wantReason) {
		t.Errorf("error %q\nwant field %q and reason %q", msg, tc.wantField, tc.wantReason)
	}
}

// object builds a network.openshift.io/v1 object of kind from a base and edits.
func object(kind string, base map[string]any, edits ...func(map[string]any)) map[string]any {
	o := map[string]any{"apiVersion": networkv1.SchemeGroupVersion.String(), "kind": kind}
	for k, v := range base {
		o[k] = v
	}
	for _, edit := range edits {
		edit(o)
	}
	return o
}

// set returns an edit that sets a top-level field.
func set(field string, v any) func(map[string]any) {
	return func(o map[string]any) { o[field] = v }
}

// clusterNetwork is OpenShift's default ClusterNetwork with edits applied.
func clusterNetwork(edits ...func(map[string]any)) map[string]any {
	return object("ClusterNetwork", map[string]any{
		"network":          "10.128.0.0/14",
		"hostsubnetlength": int64(9),
		"serviceNetwork":   "172.30.0.0/16",
		"pluginName":       networkv1.NetworkPolicyPluginName,
		"clusterNetworks":  []any{entry("10.128.0.0/14", 9)},
		"vxlanPort":        int64(4789),
		"mtu":              int64(1450),
	}, edits...)
}

func entry(cidr string, hostSubnetLength int64) map[string]any {
	return map[string]any{"CIDR": cidr, "hostSubnetLength": hostSubnetLength}
}

// entries returns an edit replacing clusterNetworks; no arguments means an empty list.
func entries(e ...any) func(map[string]any) { return set("clusterNetworks", append([]any{}, e...)) }

func clusterNetworkCases() []validationCase {
	const res = "clusternetworks"
	bad := func(name, field, reason string, edits ...func(map[string]any)) validationCase {
		return validationCase{name: "ClusterNetwork/" + name, resource: res, object: clusterNetwork(edits...), wantField: field, wantReason: reason}
	}
	cases := []validationCase{
		{name: "ClusterNetwork/OpenShift defaults", resource: res, object: clusterNetwork()},
		{name: "ClusterNetwork/defaults without optional fields", resource: res, object: clusterNetwork(func(o map[string]any) {
			delete(o, "vxlanPort")
			delete(o, "mtu")
			delete(o, "pluginName")
			delete(o, "network")
			delete(o, "hostsubnetlength")
		})},
		{name: "ClusterNetwork/two cluster networks", resource: res, object: clusterNetwork(entries(entry("10.128.0.0/14", 9), entry("10.132.0.0/14", 8)))},
		{name: "ClusterNetwork/hostSubnetLength equal to host bits", resource: res, object: clusterNetwork(entries(entry("10.1.0.0/24", 8)))},
		{name: "ClusterNetwork/vxlanPort and mtu at bounds", resource: res, object: clusterNetwork(set("vxlanPort", int64(65535)), set("mtu", int64(576)))},
		bad("bad CIDR", "clusterNetworks[0].CIDR", "must be an IPv4 CIDR", entries(entry("10.128.0.0/33", 9))),
		bad("CIDR not a CIDR", "clusterNetworks[0].CIDR", "must be an IPv4 CIDR", entries(entry("not-a-cidr", 9))),
		bad("CIDR IPv6", "clusterNetworks[0].CIDR", "must be an IPv4 CIDR", entries(entry("fd00::/48", 9))),
		bad("CIDR host bits set", "clusterNetworks[0].CIDR", "host bits zero", entries(entry("10.128.0.1/14", 9))),
		bad("second entry bad", "clusterNetworks[1].CIDR", "must be an IPv4 CIDR", entries(entry("10.128.0.0/14", 9), entry("10.132.0.0", 9))),
		bad("serviceNetwork not a CIDR", "serviceNetwork", "must be an IPv4 CIDR", set("serviceNetwork", "172.30.0.0")),
		bad("serviceNetwork host bits set", "serviceNetwork", "host bits zero", set("serviceNetwork", "172.30.0.1/16")),
		bad("serviceNetwork missing", "serviceNetwork", "Required value", func(o map[string]any) { delete(o, "serviceNetwork") }),
		bad("network not a CIDR", "network", "must be an IPv4 CIDR", set("network", "10.128.0.0")),
		bad("hostSubnetLength too large", "clusterNetworks[0].hostSubnetLength", "less than or equal to 30", entries(entry("10.0.0.0/1", 31))),
		bad("hostSubnetLength too small", "clusterNetworks[0].hostSubnetLength", "greater than or equal to 2", entries(entry("10.128.0.0/14", 1))),
		bad("hostSubnetLength beyond CIDR host bits", "clusterNetworks[0].hostSubnetLength", "must not exceed the host bits of CIDR", entries(entry("10.128.0.0/24", 9))),
		bad("legacy hostsubnetlength out of range", "hostsubnetlength", "less than or equal to 30", set("hostsubnetlength", int64(31))),
		bad("clusterNetworks missing", "clusterNetworks", "Required value", func(o map[string]any) { delete(o, "clusterNetworks") }),
		bad("clusterNetworks empty", "clusterNetworks", "should have at least 1 items", entries()),
		bad("unknown pluginName", "pluginName", "must be one of", set("pluginName", "redhat/openshift-ovs-bogus")),
		bad("vxlanPort 0", "vxlanPort", "greater than or equal to 1", set("vxlanPort", int64(0))),
		bad("vxlanPort 65536", "vxlanPort", "less than or equal to 65535", set("vxlanPort", int64(65536))),
		bad("mtu 100", "mtu", "greater than or equal to 576", set("mtu", int64(100))),
	}
	for _, name := range []string{networkv1.SingleTenantPluginName, networkv1.MultiTenantPluginName, networkv1.NetworkPolicyPluginName} {
		for _, variant := range []string{name, strings.ToUpper(name), "Redhat/OpenShift-OVS-" + strings.TrimPrefix(name, "redhat/openshift-ovs-")} {
			cases = append(cases, validationCase{name: "ClusterNetwork/pluginName " + variant, resource: res, object: clusterNetwork(set("pluginName", variant))})
		}
	}
	return cases
}

func hostSubnet(edits ...func(map[string]any)) map[string]any {
	return object("HostSubnet", map[string]any{
		"host":        "node-1",
		"hostIP":      "192.0.2.1",
		"subnet":      "10.128.2.0/23",
		"egressIPs":   []any{"192.0.2.100"},
		"egressCIDRs": []any{"192.0.2.128/25"},
	}, edits...)
}

func hostSubnetCases() []validationCase {
	const res = "hostsubnets"
	bad := func(name, field, reason string, edits ...func(map[string]any)) validationCase {
		return validationCase{name: "HostSubnet/" + name, resource: res, object: hostSubnet(edits...), wantField: field, wantReason: reason}
	}
	return []validationCase{
		{name: "HostSubnet/valid", resource: res, object: hostSubnet()},
		{name: "HostSubnet/pending assign-subnet, empty subnet", resource: res, object: hostSubnet(set("subnet", ""))},
		bad("hostIP not an IP", "hostIP", "must be an IPv4 address", set("hostIP", "300.1.1.1")),
		bad("hostIP IPv6", "hostIP", "must be an IPv4 address", set("hostIP", "fd00::1")),
		bad("hostIP CIDR", "hostIP", "must be an IPv4 address", set("hostIP", "192.0.2.1/24")),
		bad("subnet not a CIDR", "subnet", "must be an IPv4 CIDR", set("subnet", "10.128.2.0")),
		bad("subnet host bits set", "subnet", "host bits zero", set("subnet", "10.128.2.1/23")),
		bad("egressIPs entry bad", "egressIPs[0]", "must be an IPv4 address", set("egressIPs", []any{"nope"})),
		bad("egressCIDRs entry bad", "egressCIDRs[0]", "must be an IPv4 CIDR", set("egressCIDRs", []any{"192.0.2.1"})),
	}
}

// netNamespace names the object name and sets netname to it, then applies edits.
func netNamespace(name string, netid int64, edits ...func(map[string]any)) map[string]any {
	base := map[string]any{"metadata-name": name, "netname": name, "netid": netid}
	return object("NetNamespace", base, edits...)
}

func netNamespaceCases() []validationCase {
	const res = "netnamespaces"
	return []validationCase{
		{name: "NetNamespace/valid", resource: res, object: netNamespace("ns-valid", 4242)},
		{name: "NetNamespace/netid 0 (global)", resource: res, object: netNamespace("ns-zero", 0)},
		{name: "NetNamespace/netid max", resource: res, object: netNamespace("ns-max", 16777215)},
		{name: "NetNamespace/netid 16777216", resource: res, object: netNamespace("ns-big", 16777216),
			wantField: "netid", wantReason: "less than or equal to 16777215"},
		{name: "NetNamespace/netid -1", resource: res, object: netNamespace("ns-neg", -1),
			wantField: "netid", wantReason: "greater than or equal to 0"},
		{name: "NetNamespace/netname differs from name", resource: res, object: netNamespace("ns-a", 11, set("netname", "ns-b")),
			wantField: "netname", wantReason: "netname must equal metadata.name"},
		{name: "NetNamespace/egressIPs entry bad", resource: res, object: netNamespace("ns-egress", 12, set("egressIPs", []any{"10.0.0.0/8"})),
			wantField: "egressIPs[0]", wantReason: "must be an IPv4 address"},
	}
}

func rule(typ string, to map[string]any) any { return map[string]any{"type": typ, "to": to} }

func egressPolicy(rules ...any) map[string]any {
	return object("EgressNetworkPolicy", map[string]any{"spec": map[string]any{"egress": append([]any{}, rules...)}})
}

func egressNetworkPolicyCases() []validationCase {
	const res = "egressnetworkpolicies"
	cidr := map[string]any{"cidrSelector": "192.0.2.0/24"}
	many := func(n int) []any {
		rules := make([]any, n)
		for i := range rules {
			rules[i] = rule("Deny", cidr)
		}
		return rules
	}
	ok := func(name string, rules ...any) validationCase {
		return validationCase{name: "EgressNetworkPolicy/" + name, resource: res, object: egressPolicy(rules...)}
	}
	bad := func(name, field, reason string, rules ...any) validationCase {
		return validationCase{name: "EgressNetworkPolicy/" + name, resource: res, object: egressPolicy(rules...), wantField: field, wantReason: reason}
	}
	cases := []validationCase{
		ok("valid", rule("Allow", dnsName("www.example.com")), rule("Deny", cidrSel("0.0.0.0/0"))),
		ok("no rules"),
		ok("1000 rules", many(1000)...),
		ok("every rule form", rule("Allow", cidrSel("203.0.113.0/24")), rule("Deny", cidrSel("203.0.113.8/29")),
			rule("Allow", cidrSel("203.0.113.9/32")), rule("Allow", cidrSel("0.0.0.0/32")), rule("Deny", dnsName("example.com"))),
		bad("1001 rules", "spec.egress", "must have at most 1000 items", many(1001)...),
		bad("both cidrSelector and dnsName", "spec.egress[0].to", "exactly one of cidrSelector and dnsName",
			rule("Allow", map[string]any{"cidrSelector": "192.0.2.0/24", "dnsName": "example.com"})),
		bad("neither cidrSelector nor dnsName", "spec.egress[0].to", "exactly one of cidrSelector and dnsName",
			rule("Allow", map[string]any{})),
		bad("type Maybe", "spec.egress[0].type", `Unsupported value: "Maybe"`, rule("Maybe", cidr)),
		bad("type lower case", "spec.egress[0].type", `Unsupported value: "allow"`, rule("allow", cidr)),
		bad("type missing", "spec.egress[0].type", "Required value", map[string]any{"to": cidr}),
		bad("to missing", "spec.egress[0].to", "Required value", map[string]any{"type": "Allow"}),
		{name: "EgressNetworkPolicy/egress missing", resource: res, wantField: "spec.egress", wantReason: "Required value",
			object: object("EgressNetworkPolicy", map[string]any{"spec": map[string]any{}})},
	}
	// The third rule is the bad one: the error must name its index.
	for _, c := range []struct{ name, cidr, reason string }{
		{"not a CIDR", "192.0.2.1", "must be an IPv4 CIDR"},
		{"prefix length 33", "192.0.2.0/33", "must be an IPv4 CIDR"},
		{"octet 256", "192.0.256.0/24", "must be an IPv4 CIDR"},
		{"IPv6", "2001:db8::/32", "must be an IPv4 CIDR"},
		{"empty", "", "must be an IPv4 CIDR"},
		{"host bits set", "192.0.2.1/24", "must be a network address (host bits zero)"},
	} {
		cases = append(cases, bad("cidrSelector "+c.name, "spec.egress[2].to.cidrSelector", c.reason,
			rule("Allow", cidr), rule("Deny", dnsName("example.com")), rule("Deny", cidrSel(c.cidr))))
	}
	label63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(label63+".", 3) + strings.Repeat("b", 61) // 3*64 + 61 = 253
	for _, name := range []string{"example.com", "example.com.", "Example.COM", "a", "localhost",
		"xn--bcher-kva.example", "1.example.com", "a-b.c-d.example", label63 + ".example", name253, name253 + "."} {
		cases = append(cases, ok("dnsName "+name, rule("Allow", dnsName(name))))
	}
	const subdomain = "must be a DNS-1123 subdomain"
	for _, c := range []struct{ name, dns, reason string }{
		{"with spaces", "not a host", subdomain},
		{"wildcard", "*.example.com", "wildcards are not supported"},
		{"inner wildcard", "www.*.example.com", "wildcards are not supported"},
		{"empty label", "www..example.com", subdomain},
		{"leading dot", ".example.com", subdomain},
		{"two trailing dots", "example.com..", subdomain},
		{"label starts with -", "-www.example.com", subdomain},
		{"label ends with -", "www-.example.com", subdomain},
		{"underscore", "_sip.example.com", subdomain},
		{"label of 64", strings.Repeat("a", 64) + ".example", subdomain},
		{"254 characters", name253 + "b", "must be at most 253 characters"},
		{"IPv4 address", "192.0.2.1", "not an IP address (use cidrSelector)"},
		{"all-digit last label", "example.123.", "not an IP address"},
		{"empty", "", subdomain},
		{"URL", "https://example.com/", subdomain},
	} {
		cases = append(cases, bad("dnsName "+c.name, "spec.egress[1].to.dnsName", c.reason,
			rule("Allow", cidr), rule("Allow", dnsName(c.dns))))
	}
	return cases
}

func cidrSel(s string) map[string]any { return map[string]any{"cidrSelector": s} }
func dnsName(s string) map[string]any { return map[string]any{"dnsName": s} }
