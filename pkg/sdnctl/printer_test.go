package sdnctl

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/testutil"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// assertGolden compares got with testdata/<name>, or rewrites it under -update.
func assertGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if testutil.Update() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got; -update rewrites):\n%s", path, diff)
	}
}

// goldenCase prints fixtures of one resource with one set of options.
type goldenCase struct {
	golden   string
	resource string
	// names, when set, keeps only these objects (namespace/name for namespaced ones).
	names []string
	opts  printOptions
}

// goldenCases are shared with the real-apiserver test, which runs the same requests through
// the command and must print the same bytes. args are the `sdnctl get` arguments.
var goldenCases = []struct {
	goldenCase
	args []string
}{
	{goldenCase{golden: "clusternetworks.txt", resource: "clusternetworks"}, []string{"clusternetworks"}},
	{goldenCase{golden: "clusternetworks-wide.txt", resource: "clusternetworks", opts: printOptions{Format: outputWide}}, []string{"cn", "-o", "wide"}},
	{goldenCase{golden: "clusternetworks-name.txt", resource: "clusternetworks", opts: printOptions{Format: outputName}}, []string{"clusternetwork", "-o", "name"}},
	{goldenCase{golden: "hostsubnets.txt", resource: "hostsubnets"}, []string{"hostsubnets"}},
	{goldenCase{golden: "hostsubnets-wide.txt", resource: "hostsubnets", opts: printOptions{Format: outputWide}}, []string{"hs", "-o", "wide"}},
	{goldenCase{golden: "hostsubnets-name.txt", resource: "hostsubnets", opts: printOptions{Format: outputName}}, []string{"hostsubnet", "-o", "name"}},
	{goldenCase{golden: "hostsubnets-selected.txt", resource: "hostsubnets", names: []string{"node2", "node3"}}, []string{"hs", "-l", "zone=b"}},
	{goldenCase{golden: "hostsubnets-noheaders.txt", resource: "hostsubnets", opts: printOptions{NoHeaders: true}}, []string{"hs", "--no-headers"}},
	{goldenCase{golden: "netnamespaces.txt", resource: "netnamespaces"}, []string{"netnamespaces"}},
	{goldenCase{golden: "netnamespaces-wide.txt", resource: "netnamespaces", opts: printOptions{Format: outputWide}}, []string{"netns", "-o", "wide"}},
	{goldenCase{golden: "netnamespaces-name.txt", resource: "netnamespaces", opts: printOptions{Format: outputName}}, []string{"netnamespace", "-o", "name"}},
	{goldenCase{golden: "netnamespaces-named.txt", resource: "netnamespaces", names: []string{"proj-b", "default"}}, []string{"netns", "proj-b", "default"}},
	{goldenCase{golden: "egressnetworkpolicies.txt", resource: "egressnetworkpolicies", names: []string{"proj-b/default", "proj-b/extra"}}, []string{"egressnetworkpolicies", "-n", "proj-b"}},
	{goldenCase{golden: "egressnetworkpolicies-all.txt", resource: "egressnetworkpolicies", opts: printOptions{WithNamespace: true}}, []string{"enp", "-A"}},
	{goldenCase{golden: "egressnetworkpolicies-all-wide.txt", resource: "egressnetworkpolicies", opts: printOptions{Format: outputWide, WithNamespace: true}}, []string{"enp", "--all-namespaces", "-o", "wide"}},
	{goldenCase{golden: "egressnetworkpolicies-all-name.txt", resource: "egressnetworkpolicies", opts: printOptions{Format: outputName, WithNamespace: true}}, []string{"egressnetworkpolicy", "-A", "-o", "name"}},
}

// selectFixtures returns the fixtures of c.resource, restricted to c.names in that order.
func selectFixtures(t *testing.T, c goldenCase) []unstructured.Unstructured {
	t.Helper()
	all := pureFixtures(t, c.resource)
	if c.names == nil {
		return all
	}
	var out []unstructured.Unstructured
	for _, n := range c.names {
		for _, u := range all {
			key := u.GetName()
			if u.GetNamespace() != "" {
				key = u.GetNamespace() + "/" + key
			}
			if key == n {
				out = append(out, u)
			}
		}
	}
	if len(out) != len(c.names) {
		t.Fatalf("fixtures %v: found %d of %v", c.resource, len(out), c.names)
	}
	return out
}

func printGolden(t *testing.T, c goldenCase) string {
	t.Helper()
	reg, err := loadResources()
	if err != nil {
		t.Fatal(err)
	}
	res, err := reg.lookup(c.resource)
	if err != nil {
		t.Fatal(err)
	}
	opts := c.opts
	opts.Now = fixtureNow
	var buf bytes.Buffer
	if err := printObjects(&buf, res, selectFixtures(t, c), opts); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestPrintTableGolden(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.golden, func(t *testing.T) {
			assertGolden(t, filepath.Join("get", c.golden), printGolden(t, c.goldenCase))
		})
	}
}

// TestPrintGenericGolden covers -o yaml and -o json: a List for a listing, the bare object
// for exactly one named object, managedFields dropped unless asked for.
func TestPrintGenericGolden(t *testing.T) {
	for _, resource := range []string{"clusternetworks", "hostsubnets", "netnamespaces", "egressnetworkpolicies"} {
		for _, format := range []string{outputYAML, outputJSON} {
			name := resource + "." + format
			t.Run(name, func(t *testing.T) {
				got := printGolden(t, goldenCase{resource: resource, opts: printOptions{Format: format}})
				assertGolden(t, filepath.Join("get", name), got)
			})
		}
	}
	t.Run("single", func(t *testing.T) {
		c := goldenCase{resource: "hostsubnets", names: []string{"node1"}, opts: printOptions{Format: outputYAML, SingleItem: true}}
		assertGolden(t, filepath.Join("get", "hostsubnet-node1.yaml"), printGolden(t, c))
	})
	t.Run("empty", func(t *testing.T) {
		c := goldenCase{resource: "hostsubnets", names: []string{}, opts: printOptions{Format: outputYAML}}
		assertGolden(t, filepath.Join("get", "empty.yaml"), printGolden(t, c))
	})
}

func TestPrintManagedFields(t *testing.T) {
	reg, err := loadResources()
	if err != nil {
		t.Fatal(err)
	}
	res, _ := reg.lookup("netns")
	objs := pureFixtures(t, "netnamespaces")[:1]
	objs[0].Object["metadata"].(map[string]interface{})["managedFields"] = []interface{}{
		map[string]interface{}{"manager": "sdn-controller", "operation": "Update"},
	}
	for _, show := range []bool{false, true} {
		var buf bytes.Buffer
		if err := printObjects(&buf, res, objs, printOptions{Format: outputJSON, ShowManagedFields: show}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(buf.String(), "sdn-controller"); got != show {
			t.Errorf("ShowManagedFields=%v: managedFields printed = %v:\n%s", show, got, buf.String())
		}
	}
	if _, ok := objs[0].Object["metadata"].(map[string]interface{})["managedFields"]; !ok {
		t.Error("printing modified the caller's object")
	}
}

func TestEmptyTablePrintsNothing(t *testing.T) {
	got := printGolden(t, goldenCase{resource: "netnamespaces", names: []string{}})
	if got != "" {
		t.Errorf("empty table printed %q, want nothing (kubectl prints no headers either)", got)
	}
}

func TestFormatCell(t *testing.T) {
	for _, tc := range []struct {
		in   interface{}
		want string
	}{
		{nil, ""},
		{"plain", "plain"},
		{"two\nlines", "two..."},
		{"esc\x1b[31m", "esc^[[31m"},
		{int64(16777215), "16777215"},
		{true, "true"},
		{1.5, "1.5"},
	} {
		if got := formatCell(tc.in); got != tc.want {
			t.Errorf("formatCell(%#v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
