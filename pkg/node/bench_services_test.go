package node_test

// Benchmarks of Services in br0 (SPEC §10 "1,000 Services × 10 endpoints
// synced ≤ 1.5× raw ovs-ofctl of the same flows and groups"), on the same
// private OVS as bench_test.go. Numbers: docs/benchmarks.md, "Services".
//
//	BenchmarkOVSServicesFullSync/empty      FullSync (ReplaceAll) on an empty bridge vs raw `--bundle add-groups` + `--bundle add-flows`, and vs one raw `bundle` of the same lines
//	BenchmarkOVSServicesFullSync/unchanged  FullSync of an already synced bridge vs raw dump-groups + dump-flows
//	BenchmarkOVSServiceEndpointChange       one endpoint removed from / added back to one Service (render + Sync), vs raw `ovs-ofctl bundle` of the same changes
//	BenchmarkRenderServices                 Build + Render + FlowStore.SetWithGroups of the 1,000 Services, no OVS

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-sdn/ovs-sdn/pkg/node"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/proxy"
)

const (
	benchServices         = 1000
	benchEndpointsPerSvc  = 10
	benchEndpointNodes    = 500 // the endpoints are pods of the 10,000-pod / 500-node cluster
	benchServiceNamespace = 50
)

// benchServiceKind is one kind of Service in the mix, by i % 20.
type benchServiceKind struct {
	name     string
	nodePort bool
	ports    []corev1.ServicePort
	affinity bool
}

// benchServiceMix is a cluster's Services, by i % 20: 70% ClusterIP TCP
// with one port, 5% UDP (one port), 5% DNS-like (53/UDP + 53/TCP), 15%
// NodePort TCP, 5% two TCP ports (http + https), half of those with
// sessionAffinity ClientIP. 1,000 Services have 1,100 ports: 1,000 TCP (150
// of them with a NodePort) and 100 UDP.
func benchServiceMix(i int) benchServiceKind {
	tcp := func(name string, port, target int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(target)}
	}
	udp := func(name string, port int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolUDP, Port: port, TargetPort: intstr.FromInt32(5353)}
	}
	switch k := i % 20; {
	case k < 14:
		return benchServiceKind{name: "tcp", ports: []corev1.ServicePort{tcp("http", 80, 8080)}}
	case k == 14:
		return benchServiceKind{name: "udp", ports: []corev1.ServicePort{udp("udp", 5000)}}
	case k == 15:
		return benchServiceKind{name: "dns", ports: []corev1.ServicePort{udp("dns", 53), tcp("dns-tcp", 53, 5353)}}
	case k < 19:
		return benchServiceKind{name: "nodeport", nodePort: true, ports: []corev1.ServicePort{tcp("http", 80, 8080)}}
	default:
		return benchServiceKind{name: "web", affinity: i%40 == 19,
			ports: []corev1.ServicePort{tcp("http", 80, 8080), tcp("https", 443, 8443)}}
	}
}

// benchService returns Service i and its EndpointSlice. Endpoint e of
// Service i is pod k = 10i+e of the cluster, on node k % 500 (node-0 is the
// node rendered for: 20 of the 10,000 endpoints are local), at an address
// of that node's /23 of 10.128.0.0/12.
func benchService(i, endpoints int) (*corev1.Service, *discoveryv1.EndpointSlice) {
	kind := benchServiceMix(i)
	ns, name := fmt.Sprintf("ns-%d", i%benchServiceNamespace), fmt.Sprintf("svc-%d-%s", i, kind.name)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: slices.Clone(kind.ports),
			ClusterIP: fmt.Sprintf("172.30.%d.%d", i/250, i%250+1)}}
	if kind.nodePort {
		svc.Spec.Type = corev1.ServiceTypeNodePort
		svc.Spec.Ports[0].NodePort = int32(30000 + i)
	}
	if kind.affinity {
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range kind.ports {
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: ptr(p.Name), Protocol: ptr(p.Protocol), Port: ptr(p.TargetPort.IntVal)})
	}
	for e := range endpoints {
		k := i*benchEndpointsPerSvc + e
		n := k % benchEndpointNodes
		subnet := uint32(10)<<24 | uint32(128)<<16 | uint32(n)<<9
		ip := subnet + 2 + uint32(k/benchEndpointNodes)
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}).String()},
			NodeName:   ptr(fmt.Sprintf("node-%d", n)),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
		})
	}
	return svc, es
}

// benchServiceSet is one node's Services, rendered as the agent's services
// feature does (proxy.Build per Service, IDs assigned in key order by one
// IDAllocator, proxy.Render, SetWithGroups of the Service's owner).
type benchServiceSet struct {
	cfg   pipeline.FlowConfig
	ids   *proxy.IDAllocator
	svcs  []*corev1.Service
	eps   []*discoveryv1.EndpointSlice
	flows int // of the Services, without the static proxy flows
	grps  int
	ports int
}

func newBenchServiceSet(cfg pipeline.FlowConfig) *benchServiceSet {
	s := &benchServiceSet{cfg: cfg, ids: proxy.NewIDAllocator()}
	for i := range benchServices {
		svc, es := benchService(i, benchEndpointsPerSvc)
		s.svcs, s.eps = append(s.svcs, svc), append(s.eps, es)
	}
	slices.SortFunc(s.svcs, func(a, b *corev1.Service) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return s
}

// render renders Service svc with slice es into store, as the agent does.
func (s *benchServiceSet) render(tb testing.TB, store *node.FlowStore, svc *corev1.Service, es *discoveryv1.EndpointSlice) (flows, groups, ports int) {
	ps, errs := proxy.Build(proxy.Sources{Node: "node-0", Services: []*corev1.Service{svc}, Slices: []*discoveryv1.EndpointSlice{es}})
	if len(errs) > 0 {
		tb.Fatal(errs[0])
	}
	s.ids.Assign(ps)
	f, g := proxy.Render(s.cfg, ps)
	if err := store.SetWithGroups(pipeline.ServiceOwner(svc.Namespace, svc.Name), f, g); err != nil {
		tb.Fatal(err)
	}
	return len(f), len(g), len(ps)
}

// renderAll adds the proxy's static flows and every Service to store.
func (s *benchServiceSet) renderAll(tb testing.TB, store *node.FlowStore) {
	if err := store.Set(pipeline.OwnerServiceProxy, pipeline.ServiceProxyFlows(s.cfg)); err != nil {
		tb.Fatal(err)
	}
	slice := map[string]*discoveryv1.EndpointSlice{}
	for _, es := range s.eps {
		slice[es.Namespace+"/"+es.Labels[discoveryv1.LabelServiceName]] = es
	}
	s.flows, s.grps, s.ports = 0, 0, 0
	for _, svc := range s.svcs {
		f, g, p := s.render(tb, store, svc, slice[svc.Namespace+"/"+svc.Name])
		s.flows, s.grps, s.ports = s.flows+f, s.grps+g, s.ports+p
	}
}

// benchServicesNode is the node of BenchmarkOVSFullSync's share-20pods
// cluster (its 20 pods, 499 remote nodes, base pipeline) plus the 1,000
// Services: a node of the 10,000-pod / 500-node cluster running them.
func benchServicesNode(tb testing.TB) (*node.FlowStore, *benchServiceSet) {
	c := benchClusters[0]
	store := c.store(tb)
	set := newBenchServiceSet(c.config())
	set.renderAll(tb, store)
	return store, set
}

// allGroups returns every desired group of the store.
func allGroups(store *node.FlowStore) []ovs.GroupEntry {
	var out []ovs.GroupEntry
	for _, o := range store.Owners() {
		out = append(out, store.Groups(o.String())...)
	}
	return out
}

// emptyAll deletes every flow and then every group of br0.
func (o *benchOVS) emptyAll() {
	o.raw("del-flows")
	o.raw("del-groups")
}

// groupCount returns the number of groups on br0.
func (o *benchOVS) groupCount() int {
	o.tb.Helper()
	out, err := exec.Command("ovs-ofctl", "-O", "OpenFlow13", "dump-groups", o.target).CombinedOutput()
	if err != nil {
		o.tb.Fatalf("dump-groups: %v: %s", err, out)
	}
	return strings.Count(string(out), "group_id=")
}

// BenchmarkOVSServicesFullSync measures FlowStore.FullSync of a node with
// 1,000 Services × 10 endpoints (flows and groups) against raw ovs-ofctl
// doing the same from prepared files. SPEC §10 target: empty ≤ 1.5× raw.
// Run with -benchtime=Nx.
func BenchmarkOVSServicesFullSync(b *testing.B) {
	for _, tr := range benchTransports {
		b.Run(tr, func(b *testing.B) { benchOVSServicesFullSync(b, tr) })
	}
}

func benchOVSServicesFullSync(b *testing.B, transport string) {
	o := startBenchOVS(b)
	o.use(transport)
	store, set := benchServicesNode(b)
	flows, groups := store.All(), allGroups(store)
	b.Logf("1,000 Services: %d ports, %d flows and %d groups; node total %d flows, %d groups",
		set.ports, set.flows, set.grps, len(flows), len(groups))
	if len(groups) != set.grps {
		b.Fatalf("store holds %d groups, the Services rendered %d", len(groups), set.grps)
	}
	groupLines, bundleLines := make([]string, 0, len(groups)), make([]string, 0, len(groups)+len(flows))
	for _, g := range groups {
		groupLines = append(groupLines, g.String())
		bundleLines = append(bundleLines, ovs.AddGroup(g).String())
	}
	for _, f := range flows {
		bundleLines = append(bundleLines, ovs.AddFlow(f).String())
	}
	files := benchServiceFiles{
		groups: o.writeFile("groups.txt", groupLines),
		flows:  o.writeFile("flows.txt", benchFlowText(flows)),
		bundle: o.writeFile("all.bundle", bundleLines),
	}
	counts := func(b *testing.B) {
		b.ReportMetric(float64(set.flows), "svc-flows")
		b.ReportMetric(float64(set.grps), "svc-groups")
		b.ReportMetric(float64(len(flows)), "flows")
	}
	b.Run("empty", func(b *testing.B) {
		benchServicesEmpty(b, o, store, files, len(flows), len(groups))
		counts(b)
	})
	b.Run("unchanged", func(b *testing.B) {
		benchServicesUnchanged(b, o, store, len(flows))
		counts(b)
	})
}

// benchServiceFiles are the raw baselines' inputs: the groups (add-groups),
// the flows (add-flows), and both as one `ovs-ofctl bundle` (the same lines
// as FullSync's bundle on an empty bridge).
type benchServiceFiles struct{ groups, flows, bundle string }

// benchServicesEmpty alternates, on an emptied bridge, raw `--bundle
// add-groups` + `--bundle add-flows` (the budget's baseline), raw `bundle`
// of both, and FullSync.
func benchServicesEmpty(b *testing.B, o *benchOVS, store *node.FlowStore, files benchServiceFiles, nFlows, nGroups int) {
	ctx := context.Background()
	load := benchLoadAvg()
	var raw, rawBundle time.Duration
	o.ofctl, o.cpu = 0, 0
	for b.Loop() {
		b.StopTimer()
		o.emptyAll()
		raw += o.raw("add-groups", files.groups)
		raw += o.raw("add-flows", files.flows)
		o.checkServiceBridge(nFlows, nGroups, "raw add-groups + add-flows")
		o.emptyAll()
		rawBundle += o.rawFrom(files.bundle, "bundle", "-")
		o.checkServiceBridge(nFlows, nGroups, "raw bundle")
		o.emptyAll()
		b.StartTimer()
		cpu0 := benchCPU()
		if err := store.FullSync(ctx, o.br); err != nil {
			b.Fatal(err)
		}
		o.cpu += benchCPU() - cpu0
	}
	b.StopTimer()
	o.checkServiceBridge(nFlows, nGroups, "FullSync")
	benchReport(b, o, "raw-add", raw, nFlows, load)
	b.ReportMetric(benchMS(rawBundle)/float64(b.N), "raw-bundle-ms/op")
	b.ReportMetric(float64(b.Elapsed())/float64(rawBundle), "x-raw-bundle")
	b.ReportMetric(float64(nGroups), "groups")
}

// checkServiceBridge fails unless br0 holds n flows and g groups.
func (o *benchOVS) checkServiceBridge(n, g int, after string) {
	o.tb.Helper()
	if got := o.count(); got != n {
		o.tb.Fatalf("after %s br0 holds %d flows, want %d", after, got, n)
	}
	if got := o.groupCount(); got != g {
		o.tb.Fatalf("after %s br0 holds %d groups, want %d", after, got, g)
	}
}

// benchServicesUnchanged measures FullSync of a bridge that already holds
// the node (two dumps, the Go diff, no bundle) against raw dump-groups +
// dump-flows.
func benchServicesUnchanged(b *testing.B, o *benchOVS, store *node.FlowStore, n int) {
	ctx := context.Background()
	if err := store.FullSync(ctx, o.br); err != nil {
		b.Fatal(err)
	}
	load := benchLoadAvg()
	var raw time.Duration
	o.ofctl, o.cpu = 0, 0
	for b.Loop() {
		b.StopTimer()
		raw += o.raw("dump-groups") + o.raw("dump-flows")
		b.StartTimer()
		cpu0 := benchCPU()
		if err := store.FullSync(ctx, o.br); err != nil {
			b.Fatal(err)
		}
		o.cpu += benchCPU() - cpu0
	}
	b.StopTimer()
	benchReport(b, o, "raw-dump", raw, n, load)
}

// benchChangeRecorder records the changes of the last bundle sent through it.
type benchChangeRecorder struct {
	ovs.Bridge
	last []ovs.Change
}

func (r *benchChangeRecorder) Bundle(ctx context.Context, changes []ovs.Change) error {
	r.last = slices.Clone(changes)
	return r.Bridge.Bundle(ctx, changes)
}

// BenchmarkOVSServiceEndpointChange removes one endpoint from one Service
// of the 1,000 (re-render of that Service + Sync: one bundle) and adds it
// back, on a bridge holding the whole node, and reports per-op latency and
// the bundle size. The baseline, interleaved, is raw `ovs-ofctl bundle br0
// -` of the very changes the two Syncs sent (recorded), on the same bridge
// state: the floor of a transport that execs ovs-ofctl. This is the
// node-local part of "endpoint change → forwarding on every node".
// Run with -benchtime=100x or more.
func BenchmarkOVSServiceEndpointChange(b *testing.B) {
	for _, tr := range benchTransports {
		b.Run(tr, func(b *testing.B) { benchOVSServiceEndpointChange(b, tr) })
	}
}

func benchOVSServiceEndpointChange(b *testing.B, transport string) {
	o := startBenchOVS(b)
	o.use(transport)
	store, set := benchServicesNode(b)
	ctx := context.Background()
	if err := store.FullSync(ctx, o.br); err != nil {
		b.Fatal(err)
	}
	rec := &benchChangeRecorder{Bridge: o.br}
	var del, add, rawDel, rawAdd benchLatencies
	var changes []int
	apply := func(l *benchLatencies, svc *corev1.Service, es *discoveryv1.EndpointSlice) []ovs.Change {
		start := time.Now()
		set.render(b, store, svc, es)
		if err := store.Sync(ctx, rec); err != nil {
			b.Fatal(err)
		}
		*l = append(*l, time.Since(start))
		changes = append(changes, len(rec.last))
		return rec.last
	}
	load := benchLoadAvg()
	i := 0
	for b.Loop() {
		// Every 7th Service in turn: all kinds of the mix come by.
		n := (i * 7) % benchServices
		i++
		svc, full := benchService(n, benchEndpointsPerSvc)
		_, fewer := benchService(n, benchEndpointsPerSvc-1)
		d := apply(&del, svc, fewer)
		a := apply(&add, svc, full)
		b.StopTimer()
		delFile, addFile := o.writeFile("del.bundle", benchChangeLines(d)), o.writeFile("add.bundle", benchChangeLines(a))
		rawDel = append(rawDel, o.rawFrom(delFile, "bundle", "-"))
		rawAdd = append(rawAdd, o.rawFrom(addFile, "bundle", "-"))
		b.StartTimer()
	}
	b.StopTimer()
	if got, want := o.count(), store.Len(); got != want {
		b.Fatalf("bridge holds %d flows, store %d", got, want)
	}
	del.report(b, "del")
	add.report(b, "add")
	rawDel.report(b, "raw-del")
	rawAdd.report(b, "raw-add")
	b.ReportMetric(float64(slices.Max(changes)), "max-changes/op")
	b.ReportMetric(float64(store.Len()), "flows")
	b.ReportMetric(load, "load1")
}

// benchChangeLines renders changes as `ovs-ofctl bundle` input, in the
// order OfctlBridge sends them (group adds, flow changes, group deletes).
func benchChangeLines(changes []ovs.Change) []string {
	var groups, flows, deletes []string
	for _, c := range changes {
		switch c.Op {
		case ovs.OpAddGroup:
			groups = append(groups, c.String())
		case ovs.OpDeleteGroup:
			deletes = append(deletes, c.String())
		default:
			flows = append(flows, c.String())
		}
	}
	return append(append(groups, flows...), deletes...)
}

// BenchmarkRenderServices renders the 1,000 Services into a new FlowStore
// as the agent does on start-up (no OVS).
func BenchmarkRenderServices(b *testing.B) {
	cfg := benchClusters[0].config()
	b.ReportAllocs()
	var set *benchServiceSet
	for b.Loop() {
		set = newBenchServiceSet(cfg)
		set.renderAll(b, node.NewFlowStore())
	}
	b.ReportMetric(float64(set.ports), "ports")
	b.ReportMetric(float64(set.flows), "flows")
	b.ReportMetric(float64(set.grps), "groups")
}

// BenchmarkServicesFullSyncGo is FullSync of the Services node through
// OfctlBridge with ovs-ofctl replaced by a no-op (the dumps come back
// empty, so every group and flow is rendered into the bundle): the Go share
// of BenchmarkOVSServicesFullSync/empty, without OVS or root.
func BenchmarkServicesFullSyncGo(b *testing.B) {
	store, _ := benchServicesNode(b)
	br := &ovs.OfctlBridge{Name: "br0", Runner: benchNopRunner{}}
	if err := store.FullSync(context.Background(), br); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0 := benchCPU()
	for b.Loop() {
		if err := store.FullSync(context.Background(), br); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(benchMS(benchCPU()-cpu0)/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(store.Len()), "flows")
}
