package ovs_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
)

// canonicalSet maps Flow.Canonical to the flow, failing on duplicates.
func canonicalSet(t *testing.T, flows []Flow) map[string]Flow {
	t.Helper()
	set := map[string]Flow{}
	for _, f := range flows {
		if _, dup := set[f.Canonical()]; dup {
			t.Fatalf("duplicate flow %s", f)
		}
		set[f.Canonical()] = f
	}
	return set
}

func dumped(t *testing.T, br Bridge, filter Filter) []Flow {
	t.Helper()
	d, err := br.DumpFlows(context.Background(), filter)
	if err != nil {
		t.Fatal(err)
	}
	flows := make([]Flow, len(d))
	for i := range d {
		flows[i] = d[i].Flow
	}
	return flows
}

// assertSameFlows checks that got and want hold the same flows after
// normalization, and prints a diff otherwise.
func assertSameFlows(t *testing.T, got, want []Flow) {
	t.Helper()
	g, w := canonicalSet(t, got), canonicalSet(t, want)
	for k := range w {
		if _, ok := g[k]; !ok {
			t.Errorf("missing on bridge: %s", k)
		}
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			t.Errorf("unexpected on bridge: %s", k)
		}
	}
}

// TestOfctlRoundTrip is the key property of the package: every flow we
// render, added to a real OVS and dumped back, parses equal to what we
// rendered. The sample pipeline uses every supported match and action.
func TestOfctlRoundTrip(t *testing.T) {
	inst := ovstest.Start(t)
	br := inst.AddBridge("br0")
	var ops atomic.Int64
	br.OnOperation = func(string, time.Duration, error) { ops.Add(1) }
	ctx := context.Background()
	inst.Ofctl("add-group", "br0", "group_id=9,type=select,bucket=output:2")

	want := samplePipeline()
	changes := make([]Change, len(want))
	for i, f := range want {
		changes[i] = AddFlow(f)
	}
	if err := br.Bundle(ctx, changes); err != nil {
		t.Fatal(err)
	}
	assertSameFlows(t, dumped(t, br, Filter{}), want)
	if ops.Load() < 2 {
		t.Errorf("OnOperation called %d times, want >= 2", ops.Load())
	}

	t.Run("FakeAgrees", func(t *testing.T) {
		fake := NewFakeBridge()
		if err := fake.Bundle(ctx, append(changes, AddGroup(sampleGroups()[0]))); err != nil {
			t.Fatal(err)
		}
		assertSameFlows(t, dumped(t, fake, Filter{}), dumped(t, br, Filter{}))
	})
	t.Run("DumpFilter", func(t *testing.T) {
		got := dumped(t, br, ByCookie(MatchCategory(CookiePod)))
		if len(got) != 15 {
			t.Errorf("pod flows = %d, want 15 (5 per pod)", len(got))
		}
		got = dumped(t, br, InTable(TablePolicyIngress))
		if len(got) != 9 {
			t.Errorf("table 80 flows = %d, want 9", len(got))
		}
	})
	t.Run("BundleIsAtomic", func(t *testing.T) {
		bad := []Change{
			DeleteFlows(ByCookie(MatchOwner(CookieNode, "hostsubnet-uid-1"))),
			AddFlow(NewFlow(TableEgressRouting, 5).MatchIPv4().Action(GroupAction(77))), // no such group
		}
		if err := br.Bundle(ctx, bad); err == nil {
			t.Fatal("bundle with a bad flow succeeded")
		}
		assertSameFlows(t, dumped(t, br, Filter{}), want)
	})
	t.Run("DeleteByOwnerAndStrict", func(t *testing.T) {
		err := br.Bundle(ctx, []Change{
			DeleteFlows(ByCookie(MatchOwner(CookiePod, "pod/ns/"+podA.ip.String()))),
			DeleteFlow(nodeFlows()[0]),
			DeleteFlow(nodeFlows()[0]), // deleting a missing flow is fine
		})
		if err != nil {
			t.Fatal(err)
		}
		exp := without(want, append(podFlows(podA), nodeFlows()[0]))
		assertSameFlows(t, dumped(t, br, Filter{}), exp)
	})
	t.Run("ReplaceFlowsKeepsUnchanged", func(t *testing.T) {
		inst.Ofctl("add-flow", "br0", "table=70,priority=7,ip actions=drop") // out-of-band edit
		time.Sleep(1100 * time.Millisecond)                                  // so durations tell old from new
		next := without(samplePipeline(), podFlows(podC))
		if err := br.ReplaceFlows(ctx, next); err != nil {
			t.Fatal(err)
		}
		d, err := br.DumpFlows(ctx, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]Flow, len(d))
		readded := canonicalSet(t, podFlows(podA))
		for i := range d {
			got[i] = d[i].Flow
			_, isNew := readded[d[i].Canonical()]
			if young := d[i].Stats.Duration < time.Second; young != isNew && d[i].Table != TableVXLANIngress {
				t.Errorf("flow %s: duration %v, re-added=%v: replace-flows touched an unchanged flow", d[i].Flow, d[i].Stats.Duration, isNew)
			}
		}
		assertSameFlows(t, got, next)
	})
	t.Run("DeleteAll", func(t *testing.T) {
		if err := br.Bundle(ctx, []Change{DeleteFlows(Filter{})}); err != nil {
			t.Fatal(err)
		}
		if got := dumped(t, br, Filter{}); len(got) != 0 {
			t.Errorf("%d flows left", len(got))
		}
	})
}

// without returns flows minus those in drop (by Canonical).
func without(flows, drop []Flow) []Flow {
	skip := map[string]bool{}
	for _, f := range drop {
		skip[f.Canonical()] = true
	}
	var out []Flow
	for _, f := range flows {
		if !skip[f.Canonical()] {
			out = append(out, f)
		}
	}
	return out
}

func TestOfctlErrorsAndRetry(t *testing.T) {
	inst := ovstest.Start(t)
	br := inst.AddBridge("br0")
	var attempts atomic.Int64
	br.OnOperation = func(op string, _ time.Duration, err error) {
		if err != nil {
			attempts.Add(1)
		}
	}
	br.Retry = Retry{Attempts: 3, Initial: time.Millisecond, Factor: 2}
	err := br.Bundle(context.Background(), []Change{AddFlow(NewFlow(Table{ID: 7}, 1).MatchIPv4().Action(Goto(Table{ID: 3})))})
	if err == nil || !strings.Contains(err.Error(), "bundle") {
		t.Fatalf("backward goto accepted by OVS: %v", err)
	}
	if attempts.Load() != 3 {
		t.Errorf("failed attempts = %d, want 3", attempts.Load())
	}
}
