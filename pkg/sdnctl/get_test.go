package sdnctl

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

// fakeDynamicClients serves every fixture through a fake dynamic client.
func fakeDynamicClients(t *testing.T) *Clients {
	t.Helper()
	listKinds := map[schema.GroupVersionResource]string{}
	var objs []runtime.Object
	reg, err := loadResources()
	if err != nil {
		t.Fatal(err)
	}
	for resource := range fixtures() {
		res, err := reg.lookup(resource)
		if err != nil {
			t.Fatal(err)
		}
		listKinds[res.GVR] = res.Kind + "List"
		for _, u := range pureFixtures(t, resource) {
			objs = append(objs, u.DeepCopy())
		}
	}
	return &Clients{Dynamic: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, objs...)}
}

// TestGetCommand runs the get command on a fake dynamic client: the golden requests print
// their goldens, and errors, notes and exit codes are kubectl's.
func TestGetCommand(t *testing.T) {
	clients := fakeDynamicClients(t)
	opts := Options{Clients: clients, Now: func() time.Time { return fixtureNow }}
	for _, c := range goldenCases {
		t.Run(c.golden, func(t *testing.T) {
			r := runSdnctl(t, opts, append([]string{"get"}, c.args...)...)
			if r.code != ExitOK || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			assertGolden(t, filepath.Join("get", c.golden), r.stdout)
		})
	}
	notFound := `Error from server (NotFound): hostsubnets.network.openshift.io "nope" not found` + "\n"
	for _, tc := range []struct {
		args []string
		want runResult
	}{
		{[]string{"get", "hs", "nope"}, runResult{stderr: notFound, code: ExitFailure}},
		{[]string{"get", "hs", "nope", "-o", "yaml"}, runResult{stderr: notFound, code: ExitFailure}},
		{[]string{"get", "hs", "node2", "nope", "-o", "name"}, runResult{stdout: "hostsubnet.network.openshift.io/node2\n", stderr: notFound, code: ExitFailure}},
		{[]string{"get", "hs", "nope", "nope", "-o", "name"}, runResult{stderr: notFound + notFound, code: ExitFailure}},
		{[]string{"get", "netns", "-l", "x=y"}, runResult{stderr: "No resources found\n"}},
		{[]string{"get", "enp"}, runResult{stderr: "No resources found in default namespace.\n"}},
		{[]string{"get", "enp", "-n", "proj-c"}, runResult{stderr: "No resources found in proj-c namespace.\n"}},
		{[]string{"get", "enp", "-A", "-l", "x=y"}, runResult{stderr: "No resources found\n"}},
		{[]string{"get", "enp", "-l", "x=y", "-o", "name"}, runResult{}},
		{[]string{"get", "bogus"}, runResult{stderr: `error: the server doesn't have a resource type "bogus"` + "\n", code: ExitFailure}},
		{[]string{"get"}, runResult{stderr: "error: you must specify the type of resource to get: one of clusternetworks, egressnetworkpolicies, hostsubnets, netnamespaces\nSee 'sdnctl get -h' for help and examples\n", code: ExitFailure}},
		{[]string{"get", "hs", "-o", "xml"}, runResult{stderr: "error: unable to match a printer suitable for the output format \"xml\", allowed formats are: wide,yaml,json,name\nSee 'sdnctl get -h' for help and examples\n", code: ExitFailure}},
		{[]string{"get", "hs", "--bogus"}, runResult{stderr: "error: unknown flag: --bogus\nSee 'sdnctl get -h' for help and examples\n", code: ExitFailure}},
		{[]string{"get", "enp", "default", "-A"}, runResult{stderr: "error: a resource cannot be retrieved by name across all namespaces\nSee 'sdnctl get -h' for help and examples\n", code: ExitFailure}},
		{[]string{"get", "hs", "node1", "-l", "zone=a"}, runResult{stderr: "error: name cannot be provided when a selector is specified\nSee 'sdnctl get -h' for help and examples\n", code: ExitFailure}},
		{[]string{"bogus"}, runResult{stderr: "error: unknown command \"bogus\" for \"sdnctl\"\n", code: ExitFailure}},
	} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			got := runSdnctl(t, opts, tc.args...)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(runResult{})); diff != "" {
				t.Errorf("sdnctl %v (-want +got):\n%s", tc.args, diff)
			}
		})
	}
}

func TestResourceAliases(t *testing.T) {
	reg, err := loadResources()
	if err != nil {
		t.Fatal(err)
	}
	for alias, want := range map[string]string{
		"cn": "clusternetworks", "clusternetwork": "clusternetworks", "ClusterNetwork": "clusternetworks",
		"hs": "hostsubnets", "hostsubnet": "hostsubnets", "hostsubnets.network.openshift.io": "hostsubnets",
		"netns": "netnamespaces", "netnamespace": "netnamespaces",
		"enp": "egressnetworkpolicies", "egressnetworkpolicy": "egressnetworkpolicies",
	} {
		res, err := reg.lookup(alias)
		if err != nil || res.GVR.Resource != want {
			t.Errorf("lookup(%q) = %v, %v; want %s", alias, res.GVR.Resource, err, want)
		}
	}
	if diff := cmp.Diff([]string{"clusternetworks", "egressnetworkpolicies", "hostsubnets", "netnamespaces"}, reg.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}
