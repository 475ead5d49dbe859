package sdnctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	networkfake "github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned/fake"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/testutil"
)

// testdata/flows/services-dump.txt and services-groups.txt are ovs-ofctl's
// dump-flows and dump-groups of flowsServicesScenario on a real bridge
// (TestFlowsServicesOVS -update writes them).
const (
	servicesDumpFile   = "services-dump.txt"
	servicesGroupsFile = "services-groups.txt"
)

func loadServicesDump(t *testing.T) ([]ovs.DumpedFlow, []ovs.GroupEntry) {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", "flows", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	flows, err := ovs.ParseDump(read(servicesDumpFile))
	if err != nil {
		t.Fatal(err)
	}
	groups, err := ovs.ParseGroupDump(read(servicesGroupsFile))
	if err != nil {
		t.Fatal(err)
	}
	return flows, groups
}

// servicesAPI is the fake API of the services scenario: the flows scenario's
// network objects and the Services with their EndpointSlices.
func servicesAPI() Options {
	return Options{Clients: &Clients{
		Network: networkfake.NewSimpleClientset(fxNetworkObjects()...),
		Kube:    kubefake.NewSimpleClientset(serviceObjects(fxFlowsServices)...),
	}}
}

// TestFlowsServicesCannedIsTheRenderers: the committed dump holds exactly
// what the agent renders for the scenario's Services (and the learned
// flow); when pkg/proxy changes, rerun TestFlowsServicesOVS -update.
func TestFlowsServicesCannedIsTheRenderers(t *testing.T) {
	dump, groups := loadServicesDump(t)
	wantFlows, wantGroups, learned := flowsServicesScenario(t)
	var got []ovs.Flow
	for _, d := range dump {
		got = append(got, d.Flow)
	}
	assertSameFlows(t, append(wantFlows, learned), got)
	if diff := cmp.Diff(ovstest.RenderGoldenWithGroups(wantGroups, nil), ovstest.RenderGoldenWithGroups(groups, nil)); diff != "" {
		t.Errorf("groups of %s differ from the renderer's (-want +got; rerun TestFlowsServicesOVS -update):\n%s", servicesGroupsFile, diff)
	}
}

// TestFlowsServicesCanned: Service blocks named from the API with their
// ClusterIP and followed by their groups; --service with its learned
// affinity flows; what cannot be named or read is a note.
func TestFlowsServicesCanned(t *testing.T) {
	dump, groups := loadServicesDump(t)
	failingKube := kubefake.NewSimpleClientset()
	failingKube.PrependReactor("list", "services", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	noKube := Options{Clients: &Clients{Network: networkfake.NewSimpleClientset(fxNetworkObjects()...), Kube: failingKube}}
	for _, tc := range []struct {
		golden string
		args   []string
		opts   Options
		stderr string
	}{
		{golden: "services-owner.txt", args: []string{"--owner", "service"}, opts: servicesAPI()},
		{golden: "service-web.txt", args: []string{"--service", "proj1/web"}, opts: servicesAPI()},
		{golden: "service-sticky.txt", args: []string{"--service", "proj1/sticky"}, opts: servicesAPI()},
		{golden: "service-web-table.txt", args: []string{"--service", "proj1/web", "--table", "ServiceLB", "--owner", "Service"}, opts: servicesAPI()},
		{golden: "learned-unnamed.txt", args: []string{"--owner", "learned"}, opts: noKube,
			stderr: "note: 1 learned owner is shown by cookie only: listing services: connection refused\n"},
		{golden: "services-owner-unnamed.txt", args: []string{"--owner", "service"}, opts: noKube,
			stderr: "note: 2 service owners are shown by cookie only: listing services: connection refused\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			b := &cannedBackend{dump: dump, groups: groups, ports: fxPorts()}
			got := runFlows(t, tc.opts, b.backend(), tc.args...)
			if got.code != ExitOK || got.stderr != tc.stderr {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 0, stderr:\n%s", got.code, got.stderr, tc.stderr)
			}
			assertGolden(t, filepath.Join("flows", tc.golden), got.stdout)
		})
	}
}

// TestFlowsServicesEverything: the whole bridge names every Service block
// and counts the groups in the header.
func TestFlowsServicesEverything(t *testing.T) {
	dump, groups := loadServicesDump(t)
	b := &cannedBackend{dump: dump, groups: groups, ports: fxPorts()}
	got := runFlows(t, servicesAPI(), b.backend())
	web, sticky := pipeline.ServiceOwner("proj1", "web").Cookie(), pipeline.ServiceOwner("proj1", "sticky").Cookie()
	webFlows, webGroups := serviceState(t, fxFlowsConfig, "node1", fxFlowsServices[:1])
	stickyFlows, stickyGroups := serviceState(t, fxFlowsConfig, "node1", fxFlowsServices[1:2])
	// proj1/sticky is UDP: multipath, no group.
	if len(webGroups) != 2 || len(stickyGroups) != 0 {
		t.Fatalf("groups: web %d, sticky %d; the scenario expects 2 (ClusterIP and NodePort) and 0 (UDP)", len(webGroups), len(stickyGroups))
	}
	for _, want := range []string{
		fmt.Sprintf("# br0: %d flows, %d owners, 2 groups\n", len(dump), strings.Count(got.stdout, "\n# ")),
		fmt.Sprintf("\n# service proj1/web (172.30.0.10; cookie %#x, %d flows, 2 groups)\n", web, len(webFlows)),
		fmt.Sprintf("\n# service proj1/sticky (172.30.0.11; cookie %#x, %d flows)\n", sticky, len(stickyFlows)),
		fmt.Sprintf("\n# learned service proj1/sticky (session affinity; cookie %#x, 1 flow)\n", affinityCookie("proj1", "sticky").Cookie),
	} {
		if !strings.Contains(got.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, got.stdout)
		}
	}
	// Only the notes of the flows scenario (a stale pod, a deleted node).
	if got.code != ExitOK || strings.Count(got.stderr, "note:") != 2 || strings.Contains(got.stderr, "service") {
		t.Errorf("exit %d, stderr:\n%s", got.code, got.stderr)
	}
	// Raw output stays a flow file: no group lines.
	raw := runFlows(t, servicesAPI(), (&cannedBackend{dump: dump, groups: groups}).backend(), "--service", "proj1/web", "-o", "raw")
	if strings.Contains(raw.stdout, "group_id=") || len(parseRaw(t, raw.stdout)) != len(webFlows) {
		t.Errorf("--service -o raw:\n%s", raw.stdout)
	}
}

// TestFlowsServicesFilters: --service asks ovs-ofctl for the Service owner's
// cookie and for its learned flows' cookie, then for the groups its flows use.
func TestFlowsServicesFilters(t *testing.T) {
	dump, groups := loadServicesDump(t)
	b := &cannedBackend{dump: dump, groups: groups, ports: fxPorts()}
	if got := runFlows(t, servicesAPI(), b.backend(), "--service", "proj1/web"); got.code != ExitOK {
		t.Fatalf("exit %d: %s", got.code, got.stderr)
	}
	want := []string{
		fmt.Sprintf("br0 cookie=%#x/%#x", pipeline.ServiceOwner("proj1", "web").Cookie(), ovs.OwnerMask),
		fmt.Sprintf("br0 cookie=%#x/%#x", affinityCookie("proj1", "web").Cookie, ovs.OwnerMask),
		"br0 groups",
	}
	if diff := cmp.Diff(want, b.filters); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestFlowsServicesGroupsUnreadable: a backend that cannot dump groups, or a
// dump-groups that fails, still shows the flows, with a note.
func TestFlowsServicesGroupsUnreadable(t *testing.T) {
	dump, _ := loadServicesDump(t)
	failing := &cannedBackend{dump: dump, groupErr: errors.New("dump-groups br0: exit status 1")}
	flowsOnly := struct{ OVSBackend }{&cannedBackend{dump: dump}}
	webFlows, _ := serviceState(t, fxFlowsConfig, "node1", fxFlowsServices[:1])
	for name, tc := range map[string]struct {
		b    OVSBackend
		note string
	}{
		"failing":    {failing, "note: the flows use OpenFlow groups, not shown: dump-groups br0: exit status 1\n"},
		"flows only": {flowsOnly, "note: the flows use OpenFlow groups, not shown: this OVS backend cannot dump OpenFlow groups\n"},
	} {
		got := runFlows(t, servicesAPI(), tc.b, "--service", "proj1/web")
		header := fmt.Sprintf("# service proj1/web (172.30.0.10; cookie %#x, %d flows)\n", pipeline.ServiceOwner("proj1", "web").Cookie(), len(webFlows))
		if got.code != ExitOK || got.stderr != tc.note || !strings.Contains(got.stdout, header) || strings.Contains(got.stdout, "group_id") {
			t.Errorf("%s: exit %d, stderr %q, stdout:\n%s", name, got.code, got.stderr, got.stdout)
		}
	}
}

// TestFlowsServicesErrors: bad --service input is a usage error naming the
// flag; a Service without flows says why it may have none.
func TestFlowsServicesErrors(t *testing.T) {
	usage := func(msg string) runResult {
		return runResult{stderr: "error: " + msg + "\nSee 'sdnctl flows -h' for help and examples\n", code: ExitFailure}
	}
	dump, groups := loadServicesDump(t)
	for _, tc := range []struct {
		args []string
		want runResult
	}{
		{[]string{"--service", "foo"}, usage(`--service must be NAMESPACE/NAME, got "foo"`)},
		{[]string{"--service", "a/b/c"}, usage(`--service must be NAMESPACE/NAME, got "a/b/c"`)},
		{[]string{"--service", "/web"}, usage(`--service must be NAMESPACE/NAME, got "/web"`)},
		{[]string{"--service", "a/b", "--pod", "a/c"}, usage("--service and --pod cannot be combined")},
		{[]string{"--service", "a/b", "--policy", "a/c"}, usage("--service and --policy cannot be combined")},
		{[]string{"--service", "a/b", "--owner", "pod"}, usage("--service selects service flows; it cannot be combined with --owner pod")},
		{[]string{"--service", "proj2/empty"}, runResult{stderr: "No flows found on br0 matching service proj2/empty\n" +
			"A Service has flows on a node running --proxy-mode=ovs once it has a ready endpoint (for internalTrafficPolicy Local: on this node); until then the host rejects its traffic.\n"}},
	} {
		b := &cannedBackend{dump: dump, groups: groups, ports: fxPorts()}
		got := runFlows(t, servicesAPI(), b.backend(), tc.args...)
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(runResult{})); diff != "" {
			t.Errorf("sdnctl flows %v (-want +got):\n%s", tc.args, diff)
		}
	}
}

// TestAffinityCookieIsTheRenderers: the learn actions pkg/proxy renders for a
// sessionAffinity Service (in its flows or its groups' buckets) stamp
// affinityCookie.
func TestAffinityCookieIsTheRenderers(t *testing.T) {
	flows, groups := serviceState(t, fxFlowsConfig, "node1", fxFlowsServices[1:2])
	var cookies []uint64
	collect := func(actions []ovs.Action) {
		for _, a := range actions {
			if l, ok := a.(ovs.Learn); ok {
				cookies = append(cookies, l.Cookie)
			}
		}
	}
	for _, f := range flows {
		collect(f.Actions)
	}
	for _, g := range groups {
		for _, b := range g.Buckets {
			collect(b.Actions)
		}
	}
	if len(cookies) == 0 || slices.ContainsFunc(cookies, func(c uint64) bool { return !affinityCookie("proj1", "sticky").Matches(c) }) {
		t.Errorf("learn cookies %#x, want %s", cookies, affinityCookie("proj1", "sticky"))
	}
}

// TestFlowsServicesOVS loads the services scenario into a private OVS and
// runs sdnctl flows --service against it; with -update it stores the dumps
// the canned tests read. It also checks that the stored dumps are what this
// OVS dumps now.
func TestFlowsServicesOVS(t *testing.T) {
	in := ovstest.Start(t)
	br := in.AddBridge("br0")
	ctx := context.Background()
	flows, groups, learned := flowsServicesScenario(t)
	if err := br.ReplaceAll(ctx, groups, flows); err != nil {
		t.Fatal(err)
	}
	in.Ofctl("add-flow", "br0", learned.String())
	addPodPort(t, in, "veth-client", fxClient)
	addPodPort(t, in, "veth-server", fxServer)
	dumpText, groupText := in.Ofctl("dump-flows", "br0")+"\n", in.Ofctl("dump-groups", "br0")+"\n"
	if testutil.Update() {
		for name, text := range map[string]string{servicesDumpFile: dumpText, servicesGroupsFile: groupText} {
			if err := os.WriteFile(filepath.Join("testdata", "flows", name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	realFlows, err := ovs.ParseDump(dumpText)
	if err != nil {
		t.Fatal(err)
	}
	realGroups, err := ovs.ParseGroupDump(groupText)
	if err != nil {
		t.Fatal(err)
	}
	canned, cannedGroups := loadServicesDump(t)
	assertSameFlows(t, dumpedFlows(canned), dumpedFlows(realFlows))
	if diff := cmp.Diff(ovstest.RenderGoldenWithGroups(cannedGroups, nil), ovstest.RenderGoldenWithGroups(realGroups, nil)); diff != "" {
		t.Errorf("stored groups differ from OVS's (-stored +ovs; run with -update):\n%s", diff)
	}

	opts := servicesAPI()
	run := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		opts.Out, opts.ErrOut = &out, &errOut
		args = append([]string{"flows", "--ofctl-target", in.Target("br0"), "--ovsdb", "unix:" + in.DBSock}, args...)
		if code := Main(ctx, args, opts); code != ExitOK || errOut.Len() > 0 {
			t.Fatalf("sdnctl %v: exit %d: %s", args, code, errOut.String())
		}
		return out.String()
	}
	webFlows, webGroups := serviceState(t, fxFlowsConfig, "node1", fxFlowsServices[:1])
	assertSameFlows(t, webFlows, parseRaw(t, run("--service", "proj1/web", "-o", "raw")))
	web := run("--service", "proj1/web")
	want := []string{fmt.Sprintf("# service proj1/web (172.30.0.10; cookie %#x, %d flows, 2 groups)\n", pipeline.ServiceOwner("proj1", "web").Cookie(), len(webFlows))}
	for _, g := range webGroups {
		want = append(want, "\n"+g.String()+"\n")
	}
	for _, w := range want {
		if !strings.Contains(web, w) {
			t.Errorf("--service proj1/web lacks %q:\n%s", w, web)
		}
	}
	sticky := run("--service", "proj1/sticky")
	if !strings.Contains(sticky, "# learned service proj1/sticky (session affinity; cookie ") ||
		!strings.Contains(sticky, "table=ServiceAffinity(24),priority=200,") {
		t.Errorf("--service proj1/sticky lacks the learned flow:\n%s", sticky)
	}
}

func dumpedFlows(d []ovs.DumpedFlow) []ovs.Flow {
	out := make([]ovs.Flow, 0, len(d))
	for _, f := range d {
		out = append(out, f.Flow)
	}
	return out
}
