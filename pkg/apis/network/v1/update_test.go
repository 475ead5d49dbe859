package v1_test

import (
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

// updateCase is one update of a ClusterNetwork created from base.
type updateCase struct {
	name string
	base map[string]any         // the object as created (nil: OpenShift's defaults)
	edit func(o map[string]any) // applied to the stored object before Update
	// wantField and wantWhy: the refused field and a fragment of the reason;
	// both empty: the update must pass.
	wantField, wantWhy string
}

func without(fields ...string) func(map[string]any) {
	return func(o map[string]any) {
		for _, f := range fields {
			delete(o, f)
		}
	}
}

// clusterNetworkUpdateCases: every field a running cluster cannot take is
// refused with a message saying why; metadata and no-op rewrites pass.
func clusterNetworkUpdateCases() []updateCase {
	minimal := clusterNetwork(without("vxlanPort", "mtu", "pluginName", "network", "hostsubnetlength"))
	forbidFrom := func(name, field string, base map[string]any, edit func(map[string]any)) updateCase {
		return updateCase{name: name, base: base, edit: edit, wantField: field, wantWhy: field + " cannot be changed on a running cluster: "}
	}
	forbid := func(name, field string, edit func(map[string]any)) updateCase {
		return forbidFrom(name, field, nil, edit)
	}
	return []updateCase{
		{name: "labels and annotations", edit: func(o map[string]any) {
			o["metadata"].(map[string]any)["labels"] = map[string]any{"owner": "ops"}
			o["metadata"].(map[string]any)["annotations"] = map[string]any{"note": "x"}
		}},
		{name: "same values rewritten", edit: func(map[string]any) {}},
		{name: "defaults made explicit", base: minimal, edit: func(o map[string]any) {
			set("mtu", int64(1450))(o)
			set("vxlanPort", int64(4789))(o)
			set("pluginName", networkv1.NetworkPolicyPluginName)(o)
			set("network", "10.128.0.0/14")(o)
			set("hostsubnetlength", int64(9))(o)
		}},
		{name: "explicit defaults removed", edit: without("mtu", "vxlanPort", "pluginName", "network", "hostsubnetlength")},
		{name: "pluginName case", edit: set("pluginName", "Redhat/OpenShift-OVS-NetworkPolicy")},
		forbid("clusterNetworks CIDR", "clusterNetworks", entries(entry("10.132.0.0/14", 9))),
		forbid("clusterNetworks hostSubnetLength", "clusterNetworks", entries(entry("10.128.0.0/14", 8))),
		forbid("clusterNetworks appended", "clusterNetworks", entries(entry("10.128.0.0/14", 9), entry("10.132.0.0/14", 9))),
		forbid("serviceNetwork", "serviceNetwork", set("serviceNetwork", "172.31.0.0/16")),
		forbid("pluginName", "pluginName", set("pluginName", networkv1.MultiTenantPluginName)),
		forbidFrom("pluginName removed from multitenant", "pluginName", clusterNetwork(set("pluginName", networkv1.MultiTenantPluginName)), without("pluginName")),
		forbid("vxlanPort", "vxlanPort", set("vxlanPort", int64(4790))),
		forbidFrom("vxlanPort set from default", "vxlanPort", clusterNetwork(without("vxlanPort")), set("vxlanPort", int64(8472))),
		forbid("mtu", "mtu", set("mtu", int64(1400))),
		forbidFrom("mtu removed", "mtu", clusterNetwork(set("mtu", int64(9000))), without("mtu")),
		forbid("network", "network", set("network", "10.132.0.0/14")),
		forbid("hostsubnetlength", "hostsubnetlength", set("hostsubnetlength", int64(8))),
	}
}

// TestClusterNetworkUpdates runs each case on a fresh ClusterNetwork on a
// real API server: create the base, edit what was stored, Update.
func TestClusterNetworkUpdates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver; skipped with -short")
	}
	env := testenv.StartT(t, testenv.Options{})
	client := dynamic.NewForConfigOrDie(env.Config).Resource(networkv1.SchemeGroupVersion.WithResource("clusternetworks"))
	for i, tc := range clusterNetworkUpdateCases() {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.base
			if base == nil {
				base = clusterNetwork()
			}
			obj := &unstructured.Unstructured{Object: base}
			obj.SetName(fmt.Sprintf("update-%d", i))
			created, err := client.Create(t.Context(), obj, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("creating: %v", err)
			}
			tc.edit(created.Object)
			_, err = client.Update(t.Context(), created, metav1.UpdateOptions{})
			checkUpdate(t, tc, err)
		})
	}
}

func checkUpdate(t *testing.T, tc updateCase, err error) {
	t.Helper()
	if tc.wantField == "" {
		if err != nil {
			t.Fatalf("update refused: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("update of %s accepted; want it refused", tc.wantField)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("error is %v, want Invalid", err)
	}
	msg := err.Error()
	t.Logf("refused: %s", msg)
	if !strings.Contains(msg, tc.wantField+": Forbidden: ") || !strings.Contains(msg, tc.wantWhy) {
		t.Errorf("error %q\nwant field %q Forbidden and %q", msg, tc.wantField, tc.wantWhy)
	}
}
