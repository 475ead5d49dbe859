package ovs_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	. "github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// realGroupDump is verbatim `ovs-ofctl -O OpenFlow13 dump-groups` output of
// OVS 3.1 (weight 1 is not printed; all groups print no weight; a group may
// have no bucket).
const realGroupDump = `OFPST_GROUP_DESC reply (OF1.3) (xid=0x2):
 group_id=10,type=select,bucket=weight:100,actions=load:0xa800005->NXM_NX_REG3[],load:0x1f90->NXM_NX_REG4[0..15],resubmit(,70),bucket=weight:50,actions=ct(commit,table=80,zone=65520,nat(dst=10.128.0.5:8080),exec(load:0x1->NXM_NX_CT_MARK[4]))
 group_id=7,type=all,bucket=actions=output:3,bucket=actions=output:4
 group_id=15,type=select,bucket=actions=group:7
 group_id=9,type=select
 group_id=13,type=all,bucket=actions=drop
`

func realGroups() []GroupEntry {
	return []GroupEntry{
		SelectGroup(10,
			NewBucket(100, RegBits(3, 0, 31, "").Load(0xa800005), RegBits(4, 0, 15, "").Load(0x1f90), ResubmitTo(TableLocalPod)),
			NewBucket(50, CTCommit().WithTable(TablePolicyIngress).WithZone(65520).WithDNAT(ep5, 8080).WithMark(exampleServiceCT))),
		AllGroup(7, BucketOf(Output(3)), BucketOf(Output(4))),
		SelectGroup(15, NewBucket(1, GroupAction(7))),
		SelectGroup(9),
		AllGroup(13, BucketOf()),
	}
}

func TestGroupTextAndParse(t *testing.T) {
	got, err := ParseGroupDump(realGroupDump)
	if err != nil {
		t.Fatal(err)
	}
	want := realGroups()
	lines := strings.Split(strings.TrimSpace(realGroupDump), "\n")[1:]
	if len(got) != len(want) {
		t.Fatalf("parsed %d groups, want %d", len(got), len(want))
	}
	for i := range want {
		if s := want[i].String(); s != strings.TrimSpace(lines[i]) {
			t.Errorf("String()\n got %s\nwant %s", s, strings.TrimSpace(lines[i]))
		}
		if !got[i].Equal(want[i]) {
			t.Errorf("parsed %s, want %s", got[i], want[i])
		}
		if err := ValidateGroupEntry(want[i]); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range []string{"group_id=1,type=ff,bucket=actions=drop", "group_id=1,type=select,selection_method=hash",
		"group_id=1,type=select,bucket=watch_port:3,actions=drop", "group_id=x,type=all"} {
		if g, err := ParseGroup(bad); err == nil {
			t.Errorf("ParseGroup(%q) = %s, want error", bad, g)
		}
	}
	if got, want := AddGroup(want[3]).String(), "group add_or_mod group_id=9,type=select"; got != want {
		t.Errorf("AddGroup = %q, want %q", got, want)
	}
	if got, want := DeleteGroup(9).String(), "group delete group_id=9"; got != want {
		t.Errorf("DeleteGroup = %q, want %q", got, want)
	}
}

// TestParseMaskedSetField: OVS prints a load of part of a register added
// through OpenFlow 1.5 as a masked set_field; it parses to the same load.
func TestParseMaskedSetField(t *testing.T) {
	g, err := ParseGroup("group_id=7,type=select,bucket=bucket_id:0,weight:100,actions=set_field:0xa800002->reg3,set_field:0x1f90/0xffff->reg4,set_field:0x20000/0x30000->reg4,resubmit(,21)")
	if err != nil {
		t.Fatal(err)
	}
	want := SelectGroup(7, NewBucket(100, RegBits(3, 0, 31, "").Load(0xa800002), RegBits(4, 0, 15, "").Load(0x1f90),
		RegBits(4, 16, 17, "").Load(2), ResubmitTo(TableServiceLB)))
	if !g.Equal(want) {
		t.Errorf("parsed %s\nwant %s", g, want)
	}
	if _, err := ParseGroup("group_id=1,type=select,bucket=actions=set_field:0x5/0x5->reg4"); err == nil {
		t.Error("a non-contiguous set_field mask parsed")
	}
}

func TestValidateGroups(t *testing.T) {
	flowTo := func(id uint32) Flow { return NewFlow(TableLocalPod, 5).MatchIPv4().Action(GroupAction(id)) }
	tests := []struct {
		name    string
		groups  []GroupEntry
		flows   []Flow
		wantErr string
	}{
		{"id 0", []GroupEntry{SelectGroup(0)}, nil, "ID must be"},
		{"weight 0", []GroupEntry{SelectGroup(1, NewBucket(0, Output(2)))}, nil, "weight 0"},
		{"weight in all group", []GroupEntry{AllGroup(1, NewBucket(5, Output(2)))}, nil, "only select groups"},
		{"goto in bucket", []GroupEntry{SelectGroup(1, NewBucket(1, Goto(TablePolicyIngress)))}, nil, "not allowed in a bucket"},
		{"nat without commit", []GroupEntry{SelectGroup(1, NewBucket(1, ConnTrack{}.WithDNAT(ep5, 80)))}, nil, "need commit"},
		{"duplicate", []GroupEntry{SelectGroup(1), AllGroup(1)}, nil, "defined twice"},
		{"flow to missing group", []GroupEntry{SelectGroup(1)}, []Flow{flowTo(2)}, "missing group 2"},
		{"bucket to missing group", []GroupEntry{SelectGroup(1, NewBucket(1, GroupAction(3)))}, nil, "missing group 3"},
		{"loop", []GroupEntry{SelectGroup(1, NewBucket(1, GroupAction(2))), AllGroup(2, BucketOf(GroupAction(1)))}, nil, "reaches itself"},
		{"bucket jumps back", []GroupEntry{SelectGroup(1, NewBucket(1, ResubmitTo(TableRouting)))}, []Flow{flowTo(1)}, "jumps back"},
		{"bucket learns ports of an ip flow", []GroupEntry{SelectGroup(1, NewBucket(1, affinityLearn()))}, []Flow{flowTo(1)}, "do not have"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateGroups(tt.groups, tt.flows)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ValidateGroups = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
	if err := ValidateGroups(append(realGroups()[1:4], serviceGroups()...), serviceFlows()); err != nil {
		t.Errorf("valid groups: %v", err)
	}
}

// TestFakeBridgeGroups: the fake orders group changes around flow changes
// and rejects any state in which a flow points at a missing group.
func TestFakeBridgeGroups(t *testing.T) {
	ctx := context.Background()
	g := SelectGroup(5, NewBucket(1, Output(3)))
	uses := NewFlow(TableLocalPod, 10).MatchIPv4().Action(GroupAction(5))
	br := NewFakeBridge()
	// Flow listed before its group: Bundle adds groups first.
	if err := br.Bundle(ctx, []Change{AddFlow(uses), AddGroup(g)}); err != nil {
		t.Fatalf("flow then group: %v", err)
	}
	if len(br.Groups()) != 1 || len(br.Flows()) != 1 {
		t.Fatalf("state: %v %v", br.Groups(), br.Flows())
	}
	before := br.Dump()
	errTests := []struct {
		name    string
		changes []Change
		wantErr string
	}{
		{"flow to missing group", []Change{AddFlow(uses.MatchNwDst(host(ep5)).Action(GroupAction(6)))}, "missing group 6"},
		{"delete group in use", []Change{DeleteGroup(5)}, "missing group 5"},
		{"add and delete", []Change{AddGroup(SelectGroup(7)), DeleteGroup(7)}, "both adds and deletes group 7"},
		{"invalid group", []Change{AddGroup(SelectGroup(8, NewBucket(0, Output(1))))}, "weight 0"},
		{"bucket to missing group", []Change{AddGroup(AllGroup(8, BucketOf(GroupAction(9))))}, "group 8 would point at missing group 9"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			err := br.Bundle(ctx, tt.changes)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Bundle = %v, want error containing %q", err, tt.wantErr)
			}
			if br.Dump() != before || len(br.Groups()) != 1 {
				t.Error("a failed bundle changed the bridge")
			}
		})
	}
	// Deleting the flows and the group together is fine, in either order.
	if err := br.Bundle(ctx, []Change{DeleteGroup(5), DeleteFlow(uses)}); err != nil {
		t.Fatalf("delete group and its flow: %v", err)
	}
	if len(br.Groups()) != 0 || len(br.Flows()) != 0 {
		t.Errorf("left: %v %v", br.Groups(), br.Flows())
	}
}

// TestFakeBridgeReplaceAll: a full sync with groups changes only what
// differs, keeps learned flows, and refuses states with dangling groups.
func TestFakeBridgeReplaceAll(t *testing.T) {
	ctx := context.Background()
	br := NewFakeBridge()
	groups, flows := serviceGroups(), serviceFlows()
	if err := br.ReplaceAll(ctx, groups, flows); err != nil {
		t.Fatal(err)
	}
	if br.GroupMods() != 2 || br.FlowMods() != len(flows) {
		t.Errorf("first sync: %d group mods, %d flow mods", br.GroupMods(), br.FlowMods())
	}
	learned := NewFlow(TableServices, 200).WithCookie(learnCookie).MatchProto(ProtoTCP).MatchNwSrc(host(client)).Action(exampleLBSelected.Load())
	if err := br.Bundle(ctx, []Change{AddFlow(learned)}); err != nil {
		t.Fatal(err)
	}
	gm, fm := br.GroupMods(), br.FlowMods()
	if err := br.ReplaceAll(ctx, groups, flows); err != nil || br.GroupMods() != gm || br.FlowMods() != fm {
		t.Errorf("idempotent sync: err=%v, group mods %d→%d, flow mods %d→%d", err, gm, br.GroupMods(), fm, br.FlowMods())
	}
	// One endpoint fewer in group 1, group 2 gone with the flow using it.
	groups2 := []GroupEntry{SelectGroup(svcGroup, serviceGroups()[0].Buckets[:2]...)}
	flows2 := without(flows, []Flow{flows[6]})
	if err := br.ReplaceAll(ctx, groups2, flows2); err != nil {
		t.Fatal(err)
	}
	if br.GroupMods()-gm != 2 || br.FlowMods()-fm != 1 {
		t.Errorf("sync changed %d groups and %d flows, want 2 and 1", br.GroupMods()-gm, br.FlowMods()-fm)
	}
	if got := br.Flows(); !containsFlow(got, learned) || len(got) != len(flows2)+1 {
		t.Errorf("learned flow lost or flows wrong: %d flows", len(got))
	}
	if err := br.ReplaceFlows(ctx, flows2); err != nil || !containsFlow(br.Flows(), learned) {
		t.Errorf("ReplaceFlows: err=%v, learned kept=%v", err, containsFlow(br.Flows(), learned))
	}
	bad := []struct {
		name    string
		groups  []GroupEntry
		flows   []Flow
		wantErr string
	}{
		{"flow to group not desired", nil, flows2, "outputs to group 1"},
		{"learned flow desired", groups2, append(without(flows2, nil), learned), "category Learned"},
		{"duplicate group", append(groups2, groups2...), flows2, "given twice"},
	}
	before := br.Dump()
	for _, tt := range bad {
		if err := br.ReplaceAll(ctx, tt.groups, tt.flows); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: ReplaceAll = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
	if err := br.ReplaceFlows(ctx, append(flows2, NewFlow(TableLocalPod, 9).MatchIPv4().Action(GroupAction(4)))); err == nil {
		t.Error("ReplaceFlows with a flow to a missing group succeeded")
	}
	injected := errors.New("boom")
	br.FailNext(injected)
	if err := br.ReplaceAll(ctx, nil, nil); !errors.Is(err, injected) || br.Dump() != before {
		t.Errorf("FailNext: %v", err)
	}
	if br.Dump() != before {
		t.Error("a failed replace changed the bridge")
	}
}

func containsFlow(flows []Flow, f Flow) bool {
	for _, g := range flows {
		if g.Equal(f) {
			return true
		}
	}
	return false
}
