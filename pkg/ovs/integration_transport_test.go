package ovs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/openflow"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
)

// The transport conformance tests: the OpenFlow transport
// (pkg/ovs/openflow) against ovs-ofctl on a real ovs-vswitchd. Run them
// under the shared lock:
//
//	flock /tmp/ovs-sdn-heavy.lock go test ./pkg/ovs/ -run 'TestTransport'

// conformanceSet is one desired bridge state of the corpus.
type conformanceSet struct {
	name   string
	groups []GroupEntry
	flows  []Flow
}

// conformanceCorpus is every flow and group the repository renders: the
// model cases with the Services fixture (groups, ct with zones/NAT/exec,
// learn, hairpin), the sample pipeline, and every golden file — the
// pipeline in each isolation mode and datapath (with multicast and the
// userspace SCTP reply learning), egress IPs, each NetworkPolicy feature,
// the Services proxy's golden (select groups, multipath, affinity learn),
// the Services fixture's golden (with its groups) and OVS's own dump of the
// model — and renderedSets (Services of every protocol on both datapaths,
// egress IPs in every state).
func conformanceCorpus(t *testing.T) []conformanceSet {
	t.Helper()
	groups, flows := modelState()
	sets := []conformanceSet{{name: "model", groups: groups, flows: flows}}
	for _, pattern := range []string{"testdata/*.flows", "testdata/*.dump", "../pipeline/testdata/*.flows",
		"../networkpolicy/testdata/*.flows", "../proxy/testdata/*.flows"} {
		files, err := filepath.Glob(pattern)
		if err != nil || len(files) == 0 {
			t.Fatalf("no golden files %s: %v", pattern, err)
		}
		for _, f := range files {
			sets = append(sets, withUsedGroups(goldenSet(t, f), groups))
		}
	}
	return append(sets, renderedSets()...)
}

// withUsedGroups adds to s the groups of from that its flows use and it
// does not define (the sample pipeline's egress groups are defined in Go).
func withUsedGroups(s conformanceSet, from []GroupEntry) conformanceSet {
	have := map[uint32]bool{}
	for _, g := range s.groups {
		have[g.ID] = true
	}
	for _, f := range s.flows {
		for _, a := range f.Actions {
			if ga, ok := a.(Group); ok && !have[ga.ID] {
				for _, g := range from {
					if g.ID == ga.ID {
						s.groups = append(s.groups, g)
						have[g.ID] = true
					}
				}
			}
		}
	}
	return s
}

func goldenSet(t *testing.T, file string) conformanceSet {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := conformanceSet{name: file}
	for _, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "OFPST_FLOW"):
		case strings.HasPrefix(line, "group_id="):
			g, err := ParseGroup(line)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			s.groups = append(s.groups, g)
		default:
			f, err := ParseFlow(line)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			s.flows = append(s.flows, f)
		}
	}
	return s
}

// ofDump is `ovs-ofctl dump-flows` and `dump-groups` of a bridge, sorted,
// with the counters and ages removed: what OVS holds, in its own words.
func ofDump(inst *ovstest.Instance, bridge string) string {
	var lines []string
	for _, line := range strings.Split(inst.Ofctl("dump-flows", bridge), "\n")[1:] {
		var keep []string
		for _, tok := range strings.Split(strings.TrimSpace(line), ", ") {
			key, _, _ := strings.Cut(tok, "=")
			switch key {
			case "duration", "n_packets", "n_bytes", "idle_age", "hard_age":
			default:
				keep = append(keep, tok)
			}
		}
		lines = append(lines, strings.Join(keep, ", "))
	}
	for _, line := range strings.Split(inst.Ofctl("dump-groups", bridge), "\n")[1:] {
		lines = append(lines, strings.TrimSpace(line))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// newOpenFlowBridge adds bridge to inst and returns the OpenFlow transport
// to it.
func newOpenFlowBridge(t *testing.T, inst *ovstest.Instance, bridge string) *openflow.Bridge {
	t.Helper()
	inst.AddBridge(bridge)
	br := openflow.New(inst.Target(bridge))
	t.Cleanup(br.Close)
	return br
}

// TestTransportConformance is the acceptance test of the OpenFlow
// transport: every set of the corpus, installed through it with a full
// sync (ReplaceAll, which moves the bridge from the previous set to this
// one by a diff) and, on an emptied bridge, with one Bundle of adds, makes
// OVS hold exactly — as `ovs-ofctl dump-flows`/`dump-groups` print it —
// what the same set installed by ovs-ofctl makes it hold; and the
// transport's own dumps decode back to the desired flows and groups.
func TestTransportConformance(t *testing.T) {
	inst := ovstest.Start(t)
	of := newOpenFlowBridge(t, inst, "br0")
	ofctl := inst.AddBridge("br1")
	ctx := context.Background()
	total := 0
	for _, s := range conformanceCorpus(t) {
		if err := ofctl.ReplaceAll(ctx, s.groups, s.flows); err != nil {
			t.Fatalf("%s: ovs-ofctl: %v", s.name, err)
		}
		if err := of.ReplaceAll(ctx, s.groups, s.flows); err != nil {
			t.Fatalf("%s: openflow ReplaceAll: %v", s.name, err)
		}
		want := ofDump(inst, "br1")
		if d := ovstest.LineDiff(want, ofDump(inst, "br0")); d != "" {
			t.Errorf("%s: after ReplaceAll, OVS holds different flows or groups (- ovs-ofctl, + openflow):\n%s", s.name, d)
		}
		assertSameFlows(t, dumped(t, of, Filter{}), s.flows)
		assertSameGroups(t, of, s.groups)

		inst.Ofctl("del-flows", "br0")
		inst.Ofctl("del-groups", "br0")
		var changes []Change
		for _, f := range s.flows {
			changes = append(changes, AddFlow(f))
		}
		for _, g := range s.groups {
			changes = append(changes, AddGroup(g))
		}
		if err := of.Bundle(ctx, changes); err != nil {
			t.Fatalf("%s: openflow Bundle: %v", s.name, err)
		}
		if d := ovstest.LineDiff(want, ofDump(inst, "br0")); d != "" {
			t.Errorf("%s: after Bundle, OVS holds different flows or groups (- ovs-ofctl, + openflow):\n%s", s.name, d)
		}
		total += len(s.flows)
	}
	t.Logf("%d flows in %d sets, all over one connection (%d dials)", total, len(conformanceCorpus(t)), of.Dials())
	if of.Dials() != 1 {
		t.Errorf("%d connections, want 1", of.Dials())
	}
}

// TestTransportBadFlowNamed: a change OVS refuses fails the whole bundle —
// nothing of it is applied, neither the changes before nor after — and
// the error names the change (its text and cookie) as an
// *ovs.ChangeError. Both kinds of refusal are covered: when the flow is
// added to the bundle (a backward goto_table) and when the bundle is
// committed (a flow whose group does not exist).
func TestTransportBadFlowNamed(t *testing.T) {
	inst := ovstest.Start(t)
	br := newOpenFlowBridge(t, inst, "br0")
	ctx := context.Background()
	base := NewFlow(TableLocalPod, 1).MatchIPv4().Action(DropAction())
	if err := br.Bundle(ctx, []Change{AddFlow(base)}); err != nil {
		t.Fatal(err)
	}
	cookie := CookieFor(CookiePod, "pod/ns/bad")
	ok1 := NewFlow(TableLocalPod, 10).MatchIPv4().MatchNwDst(host(podA.ip)).Action(Output(3))
	ok2 := NewFlow(TableLocalPod, 11).MatchIPv4().MatchNwDst(host(podB.ip)).Action(Output(4))
	for name, bad := range map[string]Flow{
		"refused when added":     NewFlow(Table{ID: 7}, 5).WithCookie(cookie).MatchIPv4().Action(Goto(Table{ID: 3})),
		"refused when committed": NewFlow(TableLocalPod, 12).WithCookie(cookie).MatchIPv4().Action(GroupAction(77)),
	} {
		err := br.Bundle(ctx, []Change{DeleteFlow(base), AddFlow(ok1), AddFlow(bad), AddFlow(ok2)})
		var ce *ChangeError
		switch {
		case !errors.As(err, &ce):
			t.Errorf("%s: error %v is not a ChangeError", name, err)
		case !ce.Change.Flow.Equal(bad) || ce.Index != 2:
			t.Errorf("%s: error names change %d %s, want 2 %s", name, ce.Index, ce.Change, bad)
		case !strings.Contains(err.Error(), bad.String()) || !strings.Contains(err.Error(), fmt.Sprintf("%#x", cookie)):
			t.Errorf("%s: error %q does not name the flow's text and cookie", name, err)
		}
		t.Logf("%s: %v", name, err)
		assertSameFlows(t, dumped(t, br, Filter{}), []Flow{base})
	}
}

// TestTransportUnencodable: a flow the codec cannot encode (multipath
// over symmetric_l2, which OVS 3.1 does not know either) fails the bundle
// before anything is sent — an *ovs.ChangeError naming the flow, marked
// Unsent, wrapping openflow.ErrUnsupported (the node agent then falls back
// to ovs-ofctl) — and leaves the bridge as it was.
func TestTransportUnencodable(t *testing.T) {
	inst := ovstest.Start(t)
	br := newOpenFlowBridge(t, inst, "br0")
	ctx := context.Background()
	base := NewFlow(TableLocalPod, 1).MatchIPv4().Action(DropAction())
	if err := br.Bundle(ctx, []Change{AddFlow(base)}); err != nil {
		t.Fatal(err)
	}
	bad := NewFlow(TableServiceLB, 5).MatchIPv4().Action(NewMultipath("symmetric_l2", 2, RegBits(6, 0, 15, "")))
	ok := NewFlow(TableLocalPod, 10).MatchIPv4().MatchNwDst(host(podA.ip)).Action(Output(3))
	for name, op := range map[string]func() error{
		"Bundle":     func() error { return br.Bundle(ctx, []Change{DeleteFlow(base), AddFlow(ok), AddFlow(bad)}) },
		"ReplaceAll": func() error { return br.ReplaceAll(ctx, nil, []Flow{ok, bad}) },
	} {
		err := op()
		var ce *ChangeError
		switch {
		case !errors.Is(err, openflow.ErrUnsupported) || !errors.As(err, &ce):
			t.Errorf("%s: error %v, want an ErrUnsupported ChangeError", name, err)
		case !ce.Unsent || !ce.Change.Flow.Equal(bad) || !strings.Contains(err.Error(), bad.String()):
			t.Errorf("%s: error %q (unsent %v) does not name the flow %s", name, err, ce.Unsent, bad)
		}
		t.Logf("%s: %v", name, err)
		assertSameFlows(t, dumped(t, br, Filter{}), []Flow{base})
	}
}

// TestTransportGroupBundles: groups and the flows using them in one
// bundle, in any order; a bad group fails the whole bundle.
func TestTransportGroupBundles(t *testing.T) {
	inst := ovstest.Start(t)
	br := newOpenFlowBridge(t, inst, "br0")
	ctx := context.Background()
	g5 := SelectGroup(5, NewBucket(100, Output(3)), NewBucket(100, Output(4)))
	f5 := NewFlow(TableLocalPod, 10).MatchProto(ProtoTCP).MatchNwDst(host(vip)).Action(GroupAction(5))
	if err := br.Bundle(ctx, []Change{AddFlow(f5), AddGroup(g5)}); err != nil {
		t.Fatalf("flow listed before its group: %v", err)
	}
	g6 := AllGroup(6, BucketOf(Output(3)), BucketOf(Output(4)))
	f6 := NewFlow(TableLocalPod, 11).MatchIPv4().Action(GroupAction(6))
	bad := []Change{AddGroup(g6), AddFlow(f6), AddGroup(SelectGroup(8, NewBucket(1, ConnTrack{}.WithDNAT(ep5, 80))))}
	if err := br.Bundle(ctx, bad); err == nil {
		t.Error("bundle with a bad group succeeded")
	}
	assertSameFlows(t, dumped(t, br, Filter{}), []Flow{f5})
	assertSameGroups(t, br, []GroupEntry{g5})
	if err := br.Bundle(ctx, []Change{DeleteFlow(f5), DeleteGroup(5)}); err != nil {
		t.Fatal(err)
	}
	if got := dumped(t, br, Filter{}); len(got) != 0 {
		t.Errorf("flows left: %v", got)
	}
	assertSameGroups(t, br, nil)
}

// TestTransportReplaceRepairs: a full sync after out-of-band edits (a
// changed group, an extra group, a deleted flow, an extra flow, a flow
// outside the typed model, a flow with a timeout) repairs exactly those and
// leaves every other flow untouched (its age grows on); learned flows
// survive.
func TestTransportReplaceRepairs(t *testing.T) {
	inst := ovstest.Start(t)
	br := newOpenFlowBridge(t, inst, "br0")
	ctx := context.Background()
	groups, flows := serviceGroups(), serviceFlows()
	if err := br.ReplaceAll(ctx, groups, flows); err != nil {
		t.Fatal(err)
	}
	lost := flows[5]
	g1 := groups[0]
	learned := NewFlow(TableServices, 200).WithCookie(learn).MatchProto(ProtoTCP).MatchNwSrc(host(client)).Action(Output(3))
	inst.Ofctl("add-group", "br0", "group_id=42,type=all,bucket=actions=output:2")
	inst.Ofctl("mod-group", "br0", SelectGroup(g1.ID, g1.Buckets[:2]...).String())
	inst.Ofctl("del-flows", "br0", "--strict", lost.MatchString())
	inst.Ofctl("add-flow", "br0", "table=70,priority=7,ip actions=drop")
	inst.Ofctl("add-flow", "br0", "table=70,priority=8,ipv6,ipv6_dst=fd00::1 actions=drop")
	inst.Ofctl("add-flow", "br0", "table=70,priority=9,idle_timeout=60,ip actions=drop")
	inst.Ofctl("add-flow", "br0", learned.String())
	time.Sleep(1100 * time.Millisecond) // so durations tell old from new
	if err := br.ReplaceAll(ctx, groups, flows); err != nil {
		t.Fatal(err)
	}
	d, err := br.DumpFlows(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range d {
		if young := f.Stats.Duration < time.Second; young != f.Equal(lost) {
			t.Errorf("flow %s: duration %v: the sync touched an unchanged flow or missed the lost one", f.Flow, f.Stats.Duration)
		}
	}
	assertSameFlows(t, dumped(t, br, Filter{}), append(slices.Clone(flows), learned))
	assertSameGroups(t, br, groups)
}

// TestTransportReconnect: after ovs-vswitchd is killed, operations fail
// with ErrDisconnected; once it is back (it re-creates br0 from OVSDB, with
// no flows), the bridge reconnects by itself and works.
func TestTransportReconnect(t *testing.T) {
	inst := ovstest.Start(t)
	br := newOpenFlowBridge(t, inst, "br0")
	ctx := context.Background()
	groups, flows := serviceGroups(), serviceFlows()
	if err := br.ReplaceAll(ctx, groups, flows); err != nil {
		t.Fatal(err)
	}
	inst.KillVswitchd()
	err := br.ReplaceAll(ctx, groups, flows)
	if !errors.Is(err, openflow.ErrDisconnected) {
		t.Fatalf("with ovs-vswitchd down: %v, want ErrDisconnected", err)
	}
	inst.StartVswitchd()
	inst.WaitBridge("br0")
	if got := dumped(t, br, Filter{}); len(got) != 0 {
		t.Fatalf("restarted ovs-vswitchd holds %d flows", len(got))
	}
	if err := br.ReplaceAll(ctx, groups, flows); err != nil {
		t.Fatal(err)
	}
	assertSameFlows(t, dumped(t, br, Filter{}), flows)
	assertSameGroups(t, br, groups)
	if br.Dials() != 2 {
		t.Errorf("%d connections, want 2", br.Dials())
	}
}
