package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// recordingBridge wraps a FakeBridge and records every bundle and replace,
// so tests can assert exactly what was sent.
type recordingBridge struct {
	*ovs.FakeBridge
	mu       sync.Mutex
	bundles  [][]ovs.Change
	replaces [][]ovs.Flow
}

func newRecordingBridge() *recordingBridge {
	return &recordingBridge{FakeBridge: ovs.NewFakeBridge()}
}

func (b *recordingBridge) Bundle(ctx context.Context, changes []ovs.Change) error {
	b.mu.Lock()
	b.bundles = append(b.bundles, slices.Clone(changes))
	b.mu.Unlock()
	return b.FakeBridge.Bundle(ctx, changes)
}

func (b *recordingBridge) ReplaceFlows(ctx context.Context, flows []ovs.Flow) error {
	return b.ReplaceAll(ctx, nil, flows)
}

func (b *recordingBridge) ReplaceAll(ctx context.Context, groups []ovs.GroupEntry, flows []ovs.Flow) error {
	b.mu.Lock()
	b.replaces = append(b.replaces, slices.Clone(flows))
	b.mu.Unlock()
	return b.FakeBridge.ReplaceAll(ctx, groups, flows)
}

// lastBundle returns the last bundle as sorted lines.
func (b *recordingBridge) lastBundle(t *testing.T) []string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.bundles) == 0 {
		t.Fatal("no bundle was sent")
	}
	var lines []string
	for _, c := range b.bundles[len(b.bundles)-1] {
		lines = append(lines, c.String())
	}
	slices.Sort(lines)
	return lines
}

func (b *recordingBridge) nBundles() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.bundles)
}

// testPod renders a small but valid stand-in for a pod's flows: anti-spoof,
// ARP delivery and local delivery, owned by "pod/<ns>/<name>".
type testPod struct {
	ns, name string
	ip       string
	port     uint32
	vnid     uint32
}

func (p testPod) owner() pipeline.Owner { return pipeline.PodOwner(p.ns, p.name) }

func (p testPod) flows() []ovs.Flow {
	ip := netip.MustParsePrefix(p.ip + "/32")
	c := p.owner().Cookie()
	return []ovs.Flow{
		ovs.NewFlow(ovs.TablePodAntiSpoof, 100).WithCookie(c).MatchInPort(p.port).MatchIPv4().MatchNwSrc(ip).
			Action(ovs.SrcVNIDField.Load(p.vnid), ovs.Goto(ovs.TablePolicyEgress)),
		ovs.NewFlow(ovs.TableARPLocal, 100).WithCookie(c).MatchARP().MatchArpTpa(ip).Action(ovs.Output(p.port)),
		ovs.NewFlow(ovs.TableLocalPod, 100).WithCookie(c).MatchIPv4().MatchNwDst(ip).
			Action(ovs.DstVNIDField.Load(p.vnid), ovs.OutPortField.Load(p.port), ovs.Goto(ovs.TablePolicyIngress)),
	}
}

func testPipeline() []ovs.Flow {
	c := ovs.CookieFor(ovs.CookiePipeline, "pipeline")
	var out []ovs.Flow
	for _, tb := range []ovs.Table{ovs.TablePodAntiSpoof, ovs.TableARPLocal, ovs.TableLocalPod, ovs.TablePolicyIngress} {
		out = append(out, ovs.NewFlow(tb, 0).WithCookie(c).Action(ovs.DropAction()))
	}
	return out
}

func testVersion(v byte) []ovs.Flow {
	return []ovs.Flow{ovs.NewFlow(ovs.TableVersion, 300).WithCookie(pipeline.OwnerVersion.Cookie()).
		Action(ovs.NoteBytes(0, v))}
}

func mustSet(t *testing.T, s *FlowStore, owner pipeline.Owner, flows []ovs.Flow) {
	t.Helper()
	if err := s.Set(owner, flows); err != nil {
		t.Fatalf("Set(%s): %v", owner, err)
	}
}

func mustSync(t *testing.T, s *FlowStore, br ovs.Bridge) {
	t.Helper()
	if err := s.Sync(context.Background(), br); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// dumpOf renders flows the way FakeBridge.Dump does: an independent oracle
// for "the bridge holds exactly the desired flows".
func dumpOf(flows []ovs.Flow) string {
	flows = slices.Clone(flows)
	ovs.SortFlows(flows)
	var sb strings.Builder
	for _, f := range flows {
		sb.WriteString(f.StringNamed() + "\n")
	}
	return sb.String()
}

var (
	podA  = testPod{"ns1", "a", "10.128.0.2", 3, 11}
	podB  = testPod{"ns1", "b", "10.128.0.3", 4, 11}
	podC  = testPod{"ns2", "c", "10.128.0.4", 5, 12}
	podA2 = testPod{"ns1", "a", "10.128.0.2", 3, 0}  // podA after its namespace went global
	podA3 = testPod{"ns1", "a", "10.128.0.9", 7, 11} // podA recreated with another IP and port
)

// baseStore returns a store holding pipeline, version, podA and podB, synced
// to a fresh recording bridge.
func baseStore(t *testing.T) (*FlowStore, *recordingBridge) {
	t.Helper()
	s, br := NewFlowStore(), newRecordingBridge()
	mustSet(t, s, pipeline.OwnerPipeline, testPipeline())
	mustSet(t, s, pipeline.OwnerVersion, testVersion(1))
	mustSet(t, s, podA.owner(), podA.flows())
	mustSet(t, s, podB.owner(), podB.flows())
	mustSync(t, s, br)
	return s, br
}

func TestFlowStoreApply(t *testing.T) {
	s, br := baseStore(t)
	want := dumpOf(slices.Concat(testPipeline(), testVersion(1), podA.flows(), podB.flows()))
	if got := br.Dump(); got != want {
		t.Fatalf("bridge:\n%s\nwant:\n%s", got, want)
	}
	if got := br.FlowMods(); got != 11 {
		t.Errorf("FlowMods = %d, want 11 (one add per flow)", got)
	}
	if br.nBundles() != 1 {
		t.Errorf("%d bundles, want one for all owners", br.nBundles())
	}
	if last := br.bundles[0][len(br.bundles[0])-1]; last.Flow.Table != ovs.TableVersion {
		t.Errorf("last change of the first bundle is %s, want the version flow", last)
	}
	if s.Len() != 11 || s.Pending() != 0 {
		t.Errorf("Len=%d Pending=%d, want 11, 0", s.Len(), s.Pending())
	}
	mustSync(t, s, br) // nothing pending: no I/O
	if br.nBundles() != 1 {
		t.Errorf("an idle Sync sent a bundle")
	}
}

func TestFlowStoreChangeOnePodSendsOnlyItsChangedFlows(t *testing.T) {
	s, br := baseStore(t)
	before := br.FlowMods()
	mustSet(t, s, podA.owner(), podA2.flows()) // VNID change: ARP flow is unchanged
	mustSync(t, s, br)
	want := []string{"flow add " + podA2.flows()[0].String(), "flow add " + podA2.flows()[2].String()}
	slices.Sort(want)
	if got := br.lastBundle(t); !slices.Equal(got, want) {
		t.Errorf("bundle:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d := br.FlowMods() - before; d != 2 {
		t.Errorf("FlowMods grew by %d, want 2", d)
	}

	before = br.FlowMods()
	mustSet(t, s, podA.owner(), podA3.flows()) // new IP and port: every flow has a new key
	mustSync(t, s, br)
	if got := br.lastBundle(t); len(got) != 6 || strings.Count(strings.Join(got, "\n"), "delete_strict") != 3 {
		t.Errorf("bundle for a new IP = %q, want 3 delete_strict + 3 add", got)
	}
	if d := br.FlowMods() - before; d != 6 {
		t.Errorf("FlowMods grew by %d, want 6", d)
	}
	want2 := dumpOf(slices.Concat(testPipeline(), testVersion(1), podA3.flows(), podB.flows()))
	if got := br.Dump(); got != want2 {
		t.Fatalf("bridge:\n%s\nwant:\n%s", got, want2)
	}
}

func TestFlowStoreDelete(t *testing.T) {
	s, br := baseStore(t)
	s.Delete(podB.owner())
	s.Delete(pipeline.PodOwner("never", "existed")) // no-op
	if s.Pending() != 1 {
		t.Errorf("Pending = %d after one real delete, want 1", s.Pending())
	}
	mustSync(t, s, br)
	var want []string
	for _, f := range podB.flows() {
		want = append(want, "flow delete_strict "+f.MatchString())
	}
	slices.Sort(want)
	if got := br.lastBundle(t); !slices.Equal(got, want) {
		t.Errorf("bundle:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	flows, _ := br.DumpFlows(context.Background(), ovs.ByCookie(podB.owner().CookieMatch()))
	if len(flows) != 0 {
		t.Errorf("pod B still has %d flows", len(flows))
	}
	if slices.Contains(s.Owners(), podB.owner()) || s.Len() != 8 {
		t.Errorf("Owners=%v Len=%d after delete", s.Owners(), s.Len())
	}
}

func TestFlowStoreFullSyncRepairs(t *testing.T) {
	s, br := baseStore(t)
	ctx := context.Background()
	stray := ovs.NewFlow(ovs.TableLocalPod, 200).MatchIPv4().MatchNwDst(netip.MustParsePrefix("10.128.0.77/32")).Action(ovs.Output(9))
	lost := podA.flows()[1]
	if err := br.FakeBridge.Bundle(ctx, []ovs.Change{ovs.DeleteFlow(lost), ovs.AddFlow(stray)}); err != nil {
		t.Fatal(err)
	}
	before := br.FlowMods()
	if err := s.FullSync(ctx, br); err != nil {
		t.Fatal(err)
	}
	want := dumpOf(s.All())
	if got := br.Dump(); got != want {
		t.Fatalf("after full sync:\n%s\nwant:\n%s", got, want)
	}
	if d := br.FlowMods() - before; d != 2 {
		t.Errorf("full sync touched %d flows, want 2 (restore one, remove one)", d)
	}
	last := br.replaces[len(br.replaces)-1]
	if last[len(last)-1].Table != ovs.TableVersion {
		t.Errorf("version flow is not last in the full sync: %s", last[len(last)-1])
	}
	before = br.FlowMods()
	if err := s.FullSync(ctx, br); err != nil {
		t.Fatal(err)
	}
	if d := br.FlowMods() - before; d != 0 {
		t.Errorf("a full sync of a converged bridge touched %d flows", d)
	}
}

func TestFlowStoreFailedSyncStaysPending(t *testing.T) {
	s, br := baseStore(t)
	ctx := context.Background()
	mustSet(t, s, podC.owner(), podC.flows())
	s.Delete(podB.owner())
	boom := errors.New("vswitchd busy")
	br.FailNext(boom)
	if err := s.Sync(ctx, br); !errors.Is(err, boom) {
		t.Fatalf("Sync = %v, want %v", err, boom)
	}
	if s.Pending() != 2 {
		t.Fatalf("Pending = %d after a failed sync, want 2", s.Pending())
	}
	mustSync(t, s, br)
	want := dumpOf(slices.Concat(testPipeline(), testVersion(1), podA.flows(), podC.flows()))
	if got := br.Dump(); got != want {
		t.Fatalf("after retry:\n%s\nwant:\n%s", got, want)
	}
	// Same for a failed full sync.
	s.Delete(podC.owner())
	br.FailNext(boom)
	if err := s.FullSync(ctx, br); !errors.Is(err, boom) || s.Pending() != 1 {
		t.Fatalf("FullSync = %v, Pending = %d; want %v, 1", err, s.Pending(), boom)
	}
	mustSync(t, s, br)
	if got, want := br.Dump(), dumpOf(slices.Concat(testPipeline(), testVersion(1), podA.flows())); got != want {
		t.Fatalf("after retry:\n%s\nwant:\n%s", got, want)
	}
}

func TestFlowStoreConflict(t *testing.T) {
	s, _ := baseStore(t)
	thief := testPod{"ns9", "thief", podA.ip, 9, 5} // same IP as podA: same table-70 key
	err := s.Set(thief.owner(), thief.flows())
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Owner != podA.owner().String() || ce.Claimer != thief.owner().String() {
		t.Fatalf("Set = %v, want a ConflictError between %s and %s", err, podA.owner(), thief.owner())
	}
	for _, name := range []string{podA.owner().String(), thief.owner().String()} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if s.Pending() != 0 || slices.Contains(s.Owners(), thief.owner()) {
		t.Errorf("a rejected Set changed the store")
	}
	dup := append(podC.flows(), podC.flows()[0])
	if err := s.Set(podC.owner(), dup); !errors.As(err, &ce) || ce.Owner != podC.owner().String() {
		t.Errorf("Set with a repeated key = %v, want ConflictError", err)
	}
	// Ownership can move from one owner to another within one sync.
	s.Delete(podA.owner())
	mustSet(t, s, thief.owner(), thief.flows())
	br := newRecordingBridge()
	mustSync(t, s, br)
}

// TestFlowStoreKeyMovesBetweenOwners checks that a key released by one
// owner and claimed by another in the same bundle ends up present.
func TestFlowStoreKeyMovesBetweenOwners(t *testing.T) {
	s, br := baseStore(t)
	moved := testPod{"ns9", "moved", podA.ip, podA.port, podA.vnid}
	s.Delete(podA.owner())
	mustSet(t, s, moved.owner(), moved.flows())
	mustSync(t, s, br)
	want := dumpOf(slices.Concat(testPipeline(), testVersion(1), moved.flows(), podB.flows()))
	if got := br.Dump(); got != want {
		t.Fatalf("bridge:\n%s\nwant:\n%s", got, want)
	}
	if got := br.lastBundle(t); strings.Contains(strings.Join(got, "\n"), "delete_strict") {
		t.Errorf("bundle deletes a key that is re-added: %q", got)
	}
}

// flowState is one named desired state of the whole store.
type flowState struct {
	name   string
	owners map[pipeline.Owner][]ovs.Flow
}

func (st flowState) all() []ovs.Flow {
	var out []ovs.Flow
	for _, f := range st.owners {
		out = append(out, f...)
	}
	return out
}

var flowStates = []flowState{
	{"empty", map[pipeline.Owner][]ovs.Flow{}},
	{"pipeline", map[pipeline.Owner][]ovs.Flow{pipeline.OwnerPipeline: testPipeline(), pipeline.OwnerVersion: testVersion(1)}},
	{"one pod", map[pipeline.Owner][]ovs.Flow{pipeline.OwnerPipeline: testPipeline(), pipeline.OwnerVersion: testVersion(1), podA.owner(): podA.flows()}},
	{"three pods", map[pipeline.Owner][]ovs.Flow{pipeline.OwnerPipeline: testPipeline(), pipeline.OwnerVersion: testVersion(1),
		podA.owner(): podA.flows(), podB.owner(): podB.flows(), podC.owner(): podC.flows()}},
	{"pod A global", map[pipeline.Owner][]ovs.Flow{pipeline.OwnerPipeline: testPipeline(), pipeline.OwnerVersion: testVersion(1),
		podA.owner(): podA2.flows(), podC.owner(): podC.flows()}},
	{"pod A moved, new version", map[pipeline.Owner][]ovs.Flow{pipeline.OwnerPipeline: testPipeline(), pipeline.OwnerVersion: testVersion(2),
		podA.owner(): podA3.flows(), podB.owner(): podB.flows()}},
	{"IP of A taken by another owner", map[pipeline.Owner][]ovs.Flow{pipeline.OwnerPipeline: testPipeline(), pipeline.OwnerVersion: testVersion(2),
		pipeline.PodOwner("ns9", "x"): testPod{"ns9", "x", podA.ip, 3, 11}.flows()}},
}

// setState makes the store's desired state equal st, the way the agent does:
// Set for every owner of st, Delete for every other owner.
func setState(t *testing.T, s *FlowStore, st flowState) {
	t.Helper()
	for _, o := range s.Owners() {
		if _, ok := st.owners[o]; !ok {
			s.Delete(o)
		}
	}
	for o, flows := range st.owners {
		mustSet(t, s, o, flows)
	}
}

// expectedMods counts the flows that differ between two states: what a
// sync that never touches an unchanged flow must modify.
func expectedMods(from, to flowState) int {
	index := func(st flowState) map[string]string {
		m := map[string]string{}
		for _, f := range st.all() {
			m[f.Key()] = f.Canonical()
		}
		return m
	}
	a, b := index(from), index(to)
	n := 0
	for k, v := range b {
		if a[k] != v {
			n++
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			n++
		}
	}
	return n
}

func TestFlowStoreStates(t *testing.T) {
	s, br := NewFlowStore(), newRecordingBridge()
	prev := flowStates[0]
	apply := func(step int, st flowState, full bool) {
		t.Helper()
		setState(t, s, st)
		before := br.FlowMods()
		var err error
		if full {
			err = s.FullSync(context.Background(), br)
		} else {
			err = s.Sync(context.Background(), br)
		}
		if err != nil {
			t.Fatalf("step %d %q -> %q: %v", step, prev.name, st.name, err)
		}
		if got, want := br.Dump(), dumpOf(st.all()); got != want {
			t.Fatalf("step %d %q -> %q (full=%v): bridge\n%s\nwant\n%s", step, prev.name, st.name, full, got, want)
		}
		if got, want := br.FlowMods()-before, expectedMods(prev, st); got != want {
			t.Fatalf("step %d %q -> %q (full=%v): %d flow mods, want %d", step, prev.name, st.name, full, got, want)
		}
		if s.Pending() != 0 {
			t.Fatalf("step %d: %d owners still pending", step, s.Pending())
		}
		prev = st
	}
	for i, st := range flowStates {
		apply(i, st, false)
	}
	rnd := rand.New(rand.NewSource(1))
	for i := 0; i < 500; i++ {
		apply(i, flowStates[rnd.Intn(len(flowStates))], rnd.Intn(5) == 0)
	}
}

func TestFlowStoreConcurrentSet(t *testing.T) {
	s, br := NewFlowStore(), newRecordingBridge()
	mustSet(t, s, pipeline.OwnerPipeline, testPipeline())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // the one syncing goroutine
		defer close(done)
		for ctx.Err() == nil {
			if err := s.Sync(ctx, br); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				p := testPod{fmt.Sprintf("ns%d", g), fmt.Sprintf("p%d", i%10), fmt.Sprintf("10.%d.0.%d", g, i%10+2), uint32(10 + g*10 + i%10), uint32(i)}
				if i%3 == 2 {
					s.Delete(p.owner())
				} else if err := s.Set(p.owner(), p.flows()); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	cancel()
	<-done
	mustSync(t, s, br)
	if got, want := br.Dump(), dumpOf(s.All()); got != want {
		t.Fatalf("after concurrent changes the bridge differs from the store:\n%s\nwant\n%s", got, want)
	}
}
