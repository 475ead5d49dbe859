package manifests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

const fieldManager = "ovs-sdn-manifests"

// applier server-side applies rendered documents in order, the way
// `kubectl apply --server-side -f manifests/` does.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	crds   []string // CRDs applied and not yet seen Established
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{
		dyn:    dynamic.NewForConfigOrDie(cfg),
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
	}
}

// decodeDocuments splits a rendered stream into objects.
func decodeDocuments(t *testing.T, stream []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(doc, &obj.Object); err != nil {
			t.Fatal(err)
		}
		if len(obj.Object) > 0 {
			out = append(out, obj)
		}
	}
}

// applyAll applies every object (not forcing: a conflict is a failure) and returns the
// resourceVersion of each by "kind/namespace/name".
func (a *applier) applyAll(ctx context.Context, t *testing.T, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	versions := map[string]string{}
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		if gvk.Group == networkv1.GroupName {
			a.waitCRDs(ctx, t)
		}
		mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("mapping %s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = a.dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = a.dyn.Resource(mapping.Resource).Namespace(obj.GetNamespace())
		}
		data, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		force := false
		got, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: fieldManager, Force: &force})
		key := fmt.Sprintf("%s/%s/%s", gvk.Kind, obj.GetNamespace(), obj.GetName())
		if err != nil {
			t.Fatalf("server-side apply of %s: %v", key, err)
		}
		versions[key] = got.GetResourceVersion()
		if gvk.Kind == "CustomResourceDefinition" {
			a.crds = append(a.crds, obj.GetName())
		}
	}
	return versions
}

// waitCRDs waits until the applied CRDs are Established and refreshes discovery.
func (a *applier) waitCRDs(ctx context.Context, t *testing.T) {
	t.Helper()
	if len(a.crds) == 0 {
		return
	}
	crdResource := apiextensionsv1.SchemeGroupVersion.WithResource("customresourcedefinitions")
	for _, name := range a.crds {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			u, err := a.dyn.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := runtimeFromUnstructured(u, crd); err != nil {
				return false, err
			}
			for _, c := range crd.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("CRD %s not Established: %v", name, err)
		}
	}
	a.crds = nil
	a.mapper.Reset()
}

func runtimeFromUnstructured(u *unstructured.Unstructured, into any) error {
	data, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, into)
}

func renderedObjects(t *testing.T, doc string) (*Config, []*unstructured.Unstructured) {
	t.Helper()
	cfg, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := RenderYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, decodeDocuments(t, stream)
}

// TestManifestsApplyTwiceInEveryMode: the rendering of each mode is accepted by a real
// kube-apiserver (CRD schemas and CEL rules, Pod template validation, RBAC escalation
// checks) and a second apply changes nothing: every resourceVersion stays.
func TestManifestsApplyTwiceInEveryMode(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kube-apiserver")
	}
	for _, mode := range []clusternetwork.Mode{clusternetwork.ModeSubnet, clusternetwork.ModeMultitenant, clusternetwork.ModeNetworkPolicy} {
		t.Run(string(mode), func(t *testing.T) {
			env := testenv.StartT(t, testenv.Options{})
			ctx := context.Background()
			cfg, objs := renderedObjects(t, "mode: "+string(mode))
			a := newApplier(t, env.Config)
			first := a.applyAll(ctx, t, objs)
			second := a.applyAll(ctx, t, objs)
			for key, rv := range first {
				if second[key] != rv {
					t.Errorf("second apply changed %s (resourceVersion %s → %s)", key, rv, second[key])
				}
			}
			checkClusterNetwork(ctx, t, env.Config, cfg)
		})
	}
}

// checkClusterNetwork reads ClusterNetwork "default" back as the daemons will.
func checkClusterNetwork(ctx context.Context, t *testing.T, rc *rest.Config, cfg *Config) {
	t.Helper()
	client := versioned.NewForConfigOrDie(rc)
	cn, err := client.NetworkV1().ClusterNetworks().Get(ctx, networkv1.ClusterNetworkDefault, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := clusternetwork.Parse(cn)
	if err != nil {
		t.Fatalf("applied ClusterNetwork: %v", err)
	}
	if parsed.Mode != cfg.Mode || parsed.MTU != cfg.MTU || int(parsed.VXLANPort) != cfg.VXLANPort {
		t.Errorf("applied ClusterNetwork is %s, config says mode %s mtu %d vxlanPort %d", parsed, cfg.Mode, cfg.MTU, cfg.VXLANPort)
	}
	netns, err := client.NetworkV1().NetNamespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	switch {
	case cfg.Mode == clusternetwork.ModeMultitenant && (err != nil || netns.NetID != 0):
		t.Errorf("multitenant: NetNamespace kube-system = %v, %v; want netid 0", netns, err)
	case cfg.Mode != clusternetwork.ModeMultitenant && !apierrors.IsNotFound(err):
		t.Errorf("mode %s: NetNamespace kube-system exists (err %v)", cfg.Mode, err)
	}
}

type access struct {
	group, resource, verb string
}

// TestServiceAccountRBAC impersonates the daemons' ServiceAccounts against the applied
// RBAC: the node agent reads what it watches and writes nothing but Events; the controller
// writes HostSubnets and NetNamespaces and its Lease, and not the ClusterNetwork; it reads
// NetworkPolicies everywhere (to report invalid ones) and writes none.
func TestServiceAccountRBAC(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kube-apiserver")
	}
	env := testenv.StartT(t, testenv.Options{})
	ctx := context.Background()
	cfg, objs := renderedObjects(t, "")
	newApplier(t, env.Config).applyAll(ctx, t, objs)

	node := impersonate(env.Config, cfg, NodeName)
	t.Run("node agent reads", func(t *testing.T) {
		var want []access
		for _, r := range [][2]string{
			{networkv1.GroupName, "clusternetworks"}, {networkv1.GroupName, "hostsubnets"},
			{networkv1.GroupName, "netnamespaces"}, {networkv1.GroupName, "egressnetworkpolicies"},
			{"", "namespaces"}, {"", "pods"}, {"", "nodes"}, {"", "services"},
			{"networking.k8s.io", "networkpolicies"}, {"discovery.k8s.io", "endpointslices"},
		} {
			for _, verb := range readVerbs {
				want = append(want, access{r[0], r[1], verb})
			}
		}
		want = append(want, access{"", "events", "create"}, access{"", "events", "patch"})
		expectAccess(ctx, t, node, "", want, true)
		listEverything(ctx, t, node)
	})
	t.Run("node agent writes nothing else", func(t *testing.T) {
		var denied []access
		for _, res := range []string{"clusternetworks", "hostsubnets", "netnamespaces", "egressnetworkpolicies"} {
			for _, verb := range []string{"create", "update", "patch", "delete"} {
				denied = append(denied, access{networkv1.GroupName, res, verb})
			}
		}
		denied = append(denied, access{"", "secrets", "get"}, access{"", "configmaps", "list"},
			access{"", "pods", "delete"}, access{"", "nodes", "patch"}, access{"coordination.k8s.io", "leases", "create"})
		expectAccess(ctx, t, node, "ovs-sdn", denied, false)
		expectForbiddenWrites(ctx, t, node)
		kube := kubernetes.NewForConfigOrDie(node)
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{GenerateName: "rbac-test-"},
			InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: "n1"}, Reason: "Test", Message: "m", Type: "Normal",
		}
		if _, err := kube.CoreV1().Events("default").Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Errorf("node agent cannot create an Event: %v", err)
		}
	})
	t.Run("controller", func(t *testing.T) {
		ctrl := impersonate(env.Config, cfg, ControllerName)
		expectAccess(ctx, t, ctrl, cfg.Namespace, []access{
			{networkv1.GroupName, "hostsubnets", "create"}, {networkv1.GroupName, "hostsubnets", "delete"},
			{networkv1.GroupName, "netnamespaces", "update"}, {networkv1.GroupName, "clusternetworks", "watch"},
			{"", "nodes", "list"}, {"", "namespaces", "watch"}, {"", "events", "create"},
			{"coordination.k8s.io", "leases", "update"},
		}, true)
		expectAccess(ctx, t, ctrl, "", []access{
			{"networking.k8s.io", "networkpolicies", "list"}, {"networking.k8s.io", "networkpolicies", "watch"},
			{networkv1.GroupName, "egressnetworkpolicies", "list"}, {networkv1.GroupName, "egressnetworkpolicies", "watch"},
			{"", "events", "create"},
		}, true)
		expectAccess(ctx, t, ctrl, "kube-system", []access{
			{networkv1.GroupName, "clusternetworks", "update"}, {"", "secrets", "get"},
			{"coordination.k8s.io", "leases", "update"}, {"", "pods", "list"},
			{"networking.k8s.io", "networkpolicies", "update"}, {networkv1.GroupName, "egressnetworkpolicies", "update"},
		}, false)
	})
}

// impersonate returns the admin config acting as a daemon's ServiceAccount.
func impersonate(admin *rest.Config, cfg *Config, serviceAccount string) *rest.Config {
	rc := rest.CopyConfig(admin)
	rc.Impersonate = rest.ImpersonationConfig{
		UserName: cfg.ServiceAccountUser(serviceAccount),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + cfg.Namespace, "system:authenticated"},
	}
	return rc
}

// expectAccess asks the API server, as the impersonated identity, whether it may do each
// access (SelfSubjectAccessReview; namespace "" = all namespaces).
func expectAccess(ctx context.Context, t *testing.T, rc *rest.Config, namespace string, list []access, want bool) {
	t.Helper()
	kube := kubernetes.NewForConfigOrDie(rc)
	for _, a := range list {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Group: a.group, Resource: a.resource, Verb: a.verb},
		}}
		got, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("access review: %v", err)
		}
		if got.Status.Allowed != want {
			t.Errorf("%s %s.%s in %q: allowed=%v, want %v", a.verb, a.resource, a.group, namespace, got.Status.Allowed, want)
		}
	}
}

// listEverything lists what the agent watches, for real.
func listEverything(ctx context.Context, t *testing.T, rc *rest.Config) {
	t.Helper()
	kube := kubernetes.NewForConfigOrDie(rc)
	net := versioned.NewForConfigOrDie(rc).NetworkV1()
	lists := map[string]func() error{
		"clusternetworks":       func() error { _, err := net.ClusterNetworks().List(ctx, metav1.ListOptions{}); return err },
		"hostsubnets":           func() error { _, err := net.HostSubnets().List(ctx, metav1.ListOptions{}); return err },
		"netnamespaces":         func() error { _, err := net.NetNamespaces().List(ctx, metav1.ListOptions{}); return err },
		"egressnetworkpolicies": func() error { _, err := net.EgressNetworkPolicies("").List(ctx, metav1.ListOptions{}); return err },
		"pods":                  func() error { _, err := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); return err },
		"networkpolicies": func() error {
			_, err := kube.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
			return err
		},
		"endpointslices": func() error {
			_, err := kube.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
			return err
		},
	}
	for what, list := range lists {
		if err := list(); err != nil {
			t.Errorf("node agent listing %s: %v", what, err)
		}
	}
}

// expectForbiddenWrites tries to create and change the network objects as the agent.
func expectForbiddenWrites(ctx context.Context, t *testing.T, rc *rest.Config) {
	t.Helper()
	net := versioned.NewForConfigOrDie(rc).NetworkV1()
	attempts := map[string]func() error{
		"create NetNamespace": func() error {
			_, err := net.NetNamespaces().Create(ctx, &networkv1.NetNamespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}, NetName: "x", NetID: 42}, metav1.CreateOptions{})
			return err
		},
		"create HostSubnet": func() error {
			hs := &networkv1.HostSubnet{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Host: "n1", HostIP: "192.0.2.1", Subnet: "10.128.0.0/23"}
			_, err := net.HostSubnets().Create(ctx, hs, metav1.CreateOptions{})
			return err
		},
		"create ClusterNetwork": func() error {
			cn := &networkv1.ClusterNetwork{ObjectMeta: metav1.ObjectMeta{Name: "other"}, ServiceNetwork: "172.30.0.0/16",
				ClusterNetworks: []networkv1.ClusterNetworkEntry{{CIDR: "10.0.0.0/14", HostSubnetLength: 9}}}
			_, err := net.ClusterNetworks().Create(ctx, cn, metav1.CreateOptions{})
			return err
		},
		"patch ClusterNetwork default": func() error {
			_, err := net.ClusterNetworks().Patch(ctx, "default", types.MergePatchType, []byte(`{"mtu":1400}`), metav1.PatchOptions{})
			return err
		},
		"delete ClusterNetwork default": func() error {
			return net.ClusterNetworks().Delete(ctx, "default", metav1.DeleteOptions{})
		},
	}
	for what, try := range attempts {
		if err := try(); !apierrors.IsForbidden(err) {
			t.Errorf("node agent: %s: got %v, want Forbidden", what, err)
		}
	}
}
