package ovs

import (
	"strings"
	"testing"
)

func TestParseSyncDump(t *testing.T) {
	dump := `OFPST_FLOW reply (OF1.3) (xid=0x2):
 cookie=0x8000000000000001, duration=0.1s, table=60, n_packets=0, n_bytes=0, hard_timeout=300, priority=200,tcp,nw_src=10.0.0.1 actions=load:0x2->NXM_NX_REG4[16..18]
 cookie=0x0, duration=0.1s, table=70, n_packets=3, n_bytes=180, idle_age=2, priority=7,ipv6,ipv6_dst=fd00::1 actions=drop
 cookie=0x0, duration=0.1s, table=70, n_packets=0, n_bytes=0, ip actions=dec_ttl,output:3
 cookie=0x5, duration=0.1s, table=70, n_packets=0, n_bytes=0, priority=5,ip actions=output:3
`
	got := parseSyncDump(dump)
	var lines []string
	for _, c := range got {
		key, _, del := c.resolve()
		lines = append(lines, key+" | "+del.String())
	}
	want := []string{
		"raw:table=70,priority=7,ipv6,ipv6_dst=fd00::1 | flow delete_strict table=70,priority=7,ipv6,ipv6_dst=fd00::1",
		"raw:table=70,priority=32768,ip | flow delete_strict table=70,priority=32768,ip",
		"table=70,priority=5,ip | flow delete_strict table=70,priority=5,ip",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("parseSyncDump (learned flow skipped, unparsable ones deleted raw):\n got %s\nwant %s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestPlanReplaceOrder: group adds, flow deletes, flow adds, group deletes;
// unchanged groups and flows are not touched.
func TestPlanReplaceOrder(t *testing.T) {
	keep := NewFlow(TableLocalPod, 5).MatchIPv4().Action(GroupAction(1))
	old := NewFlow(TableLocalPod, 6).MatchIPv4().Action(GroupAction(3))
	changed := NewFlow(TableLocalPod, 7).MatchIPv4().Action(Output(3))
	cur := syncState{
		flows: []currentFlow{currentOf(keep), currentOf(old), currentOf(changed)},
		groups: map[uint32]GroupEntry{
			1: SelectGroup(1, NewBucket(1, Output(3))),
			2: SelectGroup(2, NewBucket(1, Output(3))),
			3: AllGroup(3),
		},
	}
	groups := []GroupEntry{SelectGroup(2, NewBucket(1, Output(4))), SelectGroup(1, NewBucket(1, Output(3)))}
	flows := []Flow{keep, changed.Action(Output(4)), NewFlow(TableLocalPod, 8).MatchIPv4().Action(GroupAction(2))}
	changes, err := planReplace(cur, groups, false, flows)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	want := []string{
		"group add_or_mod group_id=2,type=select,bucket=actions=output:4",
		"flow delete_strict table=70,priority=6,ip",
		"flow add table=70,priority=7,ip actions=output:3,output:4",
		"flow add table=70,priority=8,ip actions=group:2",
		"group delete group_id=3",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := planReplace(cur, nil, true, []Flow{NewFlow(TableLocalPod, 9).MatchIPv4().Action(GroupAction(4))}); err == nil {
		t.Error("keepGroups plan accepted a flow to a group the bridge lacks")
	}
}

func TestParseSyncGroups(t *testing.T) {
	groups, err := parseSyncGroups("OFPST_GROUP_DESC reply (OF1.3) (xid=0x2):\n group_id=3,type=all,bucket=actions=output:2\n group_id=4,type=ff,bucket=watch_port:2,actions=output:2\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || groups[3].Type != GroupAll || groups[4].Type != 0 {
		t.Fatalf("groups %v", groups)
	}
	changes, err := planReplace(syncState{groups: groups}, []GroupEntry{AllGroup(4, BucketOf(Output(2)))}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	want := "group add_or_mod group_id=4,type=all,bucket=actions=output:2\ngroup delete group_id=3"
	if strings.Join(got, "\n") != want {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
	if _, err := parseSyncGroups(" type=all\n"); err == nil {
		t.Error("a group line without group_id was accepted")
	}
}
