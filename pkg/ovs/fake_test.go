package ovs_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

func TestValidateFlowRejects(t *testing.T) {
	p := netip.MustParsePrefix("10.0.0.0/8")
	tests := []struct {
		name    string
		flow    Flow
		wantErr string
	}{
		{"nw_src without ip", NewFlow(TableLocalPod, 1).MatchNwSrc(p).Action(DropAction()), "requires ip"},
		{"nw_dst with arp", NewFlow(TableLocalPod, 1).MatchARP().MatchNwDst(p).Action(DropAction()), "requires ip"},
		{"arp_tpa with ip", NewFlow(TableLocalPod, 1).MatchIPv4().MatchArpTpa(p).Action(DropAction()), "requires arp"},
		{"tp_dst without protocol", NewFlow(TableLocalPod, 1).MatchIPv4().MatchTpDst(80).Action(DropAction()), "requires tcp"},
		{"unknown table", NewFlow(Table{ID: 42}, 1).Action(DropAction()), "unknown table"},
		{"backward goto", NewFlow(TableLocalPod, 1).Action(Goto(TablePodAntiSpoof)), "backward"},
		{"goto same table", NewFlow(TableLocalPod, 1).Action(Goto(TableLocalPod)), "backward"},
		{"goto unknown", NewFlow(TableLocalPod, 1).Action(Goto(Table{ID: 75})), "unknown table"},
		{"backward ct", NewFlow(TableLocalPod, 1).MatchIPv4().Action(CTThen(TableRouting, false, true)), "backward"},
		{"goto not last", NewFlow(TableLocalPod, 1).Action(Goto(TablePolicyIngress), Output(2)), "last"},
		{"drop with others", NewFlow(TableLocalPod, 1).Action(DropAction(), Output(2)), "only action"},
		{"conjunction mixed", NewFlow(TableLocalPod, 1).Action(Conj(1, 1, 2), Output(2)), "mixed"},
		{"conjunction k>n", NewFlow(TableLocalPod, 1).Action(Conj(1, 3, 2)), "k <= n"},
		{"field twice", NewFlow(TableLocalPod, 1).MatchInPort(1).MatchInPort(2).Action(DropAction()), "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateFlow(tt.flow)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ValidateFlow(%s) = %v, want error containing %q", tt.flow, err, tt.wantErr)
			}
		})
	}
	ok := []Flow{
		NewFlow(TableClassifier, 1000).MatchIPv4().Action(CTThen(TableClassifier, false, false)),
		NewFlow(TableVXLANIngress, 1).Action(ResubmitTo(TableVXLANIngress)),
		NewFlow(TableLocalPod, 1).MatchProto(ProtoSCTP).MatchNwSrc(p).MatchTpDst(9).Action(Goto(TablePolicyIngress)),
	}
	for _, f := range ok {
		if err := ValidateFlow(f); err != nil {
			t.Errorf("ValidateFlow(%s): %v", f, err)
		}
	}
}

func TestValidatePipeline(t *testing.T) {
	if err := ValidatePipeline(samplePipeline()); err != nil {
		t.Fatalf("sample pipeline: %v", err)
	}
	missing := without(samplePipeline(), []Flow{NewFlow(TableARPRemote, 0).Action(DropAction())})
	missing = slices.DeleteFunc(missing, func(f Flow) bool { return f.Table == TableVersion })
	err := ValidatePipeline(missing)
	for _, want := range []string{"ARPRemote(50) has no priority-0", "exactly one note flow, has 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidatePipeline = %v, want %q", err, want)
		}
	}
	dup := append(samplePipeline(), NewFlow(TableLocalPod, 0).Action(Output(9)))
	if err := ValidatePipeline(dup); err == nil || !strings.Contains(err.Error(), "same table, priority and match") {
		t.Errorf("duplicate not reported: %v", err)
	}
}

func TestValidateConjunctions(t *testing.T) {
	tcp80 := NewFlow(TablePolicyIngress, 150).MatchProto(ProtoTCP).MatchTpDst(80)
	final := func(id uint32) Flow {
		return NewFlow(TablePolicyIngress, 150).MatchIPv4().MatchConjID(id).Action(OutPortField.Output())
	}
	base := func(extra ...Flow) []Flow {
		return append(without(samplePipeline(), policyFlows()), extra...)
	}
	// Conjunction 8 (VNID 5 → any tcp/80) overlaps with 7 (VNID 5 → podB tcp/80).
	overlapping := base(append(policyFlows(),
		NewFlow(TablePolicyIngress, 150).MatchIPv4().MatchReg(SrcVNIDField, 5).MatchReg(DstVNIDField, 6).Action(Conj(8, 1, 2)),
		tcp80.MatchReg(DstVNIDField, 6).Action(Conj(8, 2, 2)), final(8))...)
	if err := ValidatePipeline(overlapping); err == nil || !strings.Contains(err.Error(), "conjunctions 7 and 8 can match the same packet") {
		t.Errorf("overlap not reported: %v", err)
	}
	// Same shape but VNID 4 sources: disjoint from conjunction 7.
	disjoint := base(append(policyFlows(),
		NewFlow(TablePolicyIngress, 150).MatchIPv4().MatchReg(SrcVNIDField, 4).Action(Conj(8, 1, 2)),
		tcp80.Action(Conj(8, 2, 2)), final(8))...)
	if err := ValidatePipeline(disjoint); err != nil {
		t.Errorf("disjoint conjunctions reported: %v", err)
	}
	incomplete := base(NewFlow(TablePolicyIngress, 150).MatchIPv4().Action(Conj(9, 1, 2)), final(9))
	if err := ValidatePipeline(incomplete); err == nil || !strings.Contains(err.Error(), "conjunction 9 has no flow for dimension 2/2") {
		t.Errorf("incomplete conjunction not reported: %v", err)
	}
}

func TestFakeBridge(t *testing.T) {
	ctx := context.Background()
	br := NewFakeBridge()
	changes := []Change{AddGroup(sampleGroups()[0])}
	for _, f := range samplePipeline() {
		changes = append(changes, AddFlow(f))
	}
	if err := br.Bundle(ctx, changes); err != nil {
		t.Fatal(err)
	}
	if got, want := br.Dump(), readGolden(t, "sample"); got != want {
		t.Errorf("Dump differs from testdata/sample.flows")
	}

	t.Run("atomic", func(t *testing.T) {
		before := br.Dump()
		err := br.Bundle(ctx, []Change{
			DeleteFlows(Filter{}),
			AddFlow(NewFlow(TableLocalPod, 1).MatchNwSrc(netip.MustParsePrefix("10.0.0.0/8")).Action(DropAction())),
		})
		if err == nil || br.Dump() != before {
			t.Errorf("invalid bundle: err=%v, changed=%v", err, br.Dump() != before)
		}
		injected := errors.New("boom")
		br.FailNext(injected)
		if err := br.Bundle(ctx, []Change{DeleteFlows(Filter{})}); !errors.Is(err, injected) || br.Dump() != before {
			t.Errorf("FailNext: err=%v", err)
		}
	})
	t.Run("conflicting adds", func(t *testing.T) {
		f := NewFlow(TableLocalPod, 1).MatchIPv4()
		err := br.Bundle(ctx, []Change{AddFlow(f.Action(Output(3))), AddFlow(f.Action(Output(4)))})
		if err == nil || !strings.Contains(err.Error(), "same bundle") {
			t.Errorf("conflicting adds: %v", err)
		}
	})
	t.Run("delete by owner and strict", func(t *testing.T) {
		err := br.Bundle(ctx, []Change{
			DeleteFlows(ByCookie(MatchOwner(CookiePod, "pod/ns/"+podA.ip.String()))),
			DeleteFlow(nodeFlows()[0]), DeleteFlow(nodeFlows()[0]),
		})
		if err != nil {
			t.Fatal(err)
		}
		want := without(samplePipeline(), append(podFlows(podA), nodeFlows()[0]))
		assertSameFlows(t, br.Flows(), want)
	})
	t.Run("replace counts only differences", func(t *testing.T) {
		mods := br.FlowMods()
		if err := br.ReplaceFlows(ctx, samplePipeline()); err != nil {
			t.Fatal(err)
		}
		if got := br.FlowMods() - mods; got != 6 { // 5 pod A flows + 1 node flow re-added
			t.Errorf("replace changed %d flows, want 6", got)
		}
		mods = br.FlowMods()
		if err := br.ReplaceFlows(ctx, samplePipeline()); err != nil || br.FlowMods() != mods {
			t.Errorf("idempotent replace: err=%v, mods %d → %d", err, mods, br.FlowMods())
		}
		if got := len(dumped(t, br, InTable(TableLocalPod))); got != 4 {
			t.Errorf("table 70 has %d flows, want 4", got)
		}
	})
}

func TestCookies(t *testing.T) {
	a := CookieFor(CookiePod, "pod/ns/a")
	if a != CookieFor(CookiePod, "pod/ns/a") || a == CookieFor(CookiePod, "pod/ns/b") {
		t.Fatal("CookieFor not a stable function of the key")
	}
	if CookieCategoryOf(a) != CookiePod || a&^OwnerMask != 0 {
		t.Errorf("category/reserved bits of %#x", a)
	}
	r := a | 3<<48 // reserved bits set by someone else
	if !MatchOwner(CookiePod, "pod/ns/a").Matches(r) || MatchOwner(CookiePod, "pod/ns/b").Matches(r) {
		t.Error("MatchOwner must ignore the reserved bits and distinguish owners")
	}
	if !MatchCategory(CookiePod).Matches(a) || MatchCategory(CookieNode).Matches(a) || MatchCategory(CookiePod).Matches(0) {
		t.Error("MatchCategory")
	}
	if got, want := MatchCategory(CookieNode).String(), "cookie=0x300000000000000/0xff00000000000000"; got != want {
		t.Errorf("String = %s, want %s", got, want)
	}
	if (CookieMatch{}).String() != "" || !(CookieMatch{}).Matches(a) {
		t.Error("zero CookieMatch must match everything and render empty")
	}
}

func readGolden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".flows")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
