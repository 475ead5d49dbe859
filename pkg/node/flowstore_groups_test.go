package node

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// groupOwner renders a stand-in for a Service: one select group over its
// endpoints and one flow using it.
func groupOwner(name string, id uint32, eps ...uint32) (pipeline.Owner, []ovs.Flow, []ovs.GroupEntry) {
	owner := pipeline.PodOwner("svc", name) // any owner kind will do for the store
	var buckets []ovs.Bucket
	for _, p := range eps {
		buckets = append(buckets, ovs.NewBucket(100, ovs.Output(p)))
	}
	f := ovs.NewFlow(ovs.TableServices, 150).WithCookie(owner.Cookie()).MatchIPv4().
		MatchNwDst(netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 30, 0, byte(id)}), 32)).Action(ovs.GroupAction(id))
	return owner, []ovs.Flow{f}, []ovs.GroupEntry{ovs.SelectGroup(id, buckets...)}
}

func groupLines(b *recordingBridge) []string {
	var out []string
	for _, g := range b.FakeBridge.Groups() {
		out = append(out, g.String())
	}
	slices.Sort(out)
	return out
}

// TestFlowStoreGroups: groups are set with their flows, changed in place,
// removed with their owner, in incremental and full syncs; the bridge never
// holds a flow without its group (the fake rejects that).
func TestFlowStoreGroups(t *testing.T) {
	s, br := baseStore(t)
	ctx := context.Background()
	o1, f1, g1 := groupOwner("a", 7, 3, 4)
	o2, f2, g2 := groupOwner("b", 8, 5)
	if err := s.SetWithGroups(o1, f1, g1); err != nil {
		t.Fatal(err)
	}
	if err := s.SetWithGroups(o2, f2, g2); err != nil {
		t.Fatal(err)
	}
	mustSync(t, s, br)
	if got := groupLines(br); len(got) != 2 || !strings.Contains(got[0], "group_id=7") {
		t.Fatalf("groups after sync: %v", got)
	}
	// Endpoints change: the group is modified, the flow is not touched.
	_, _, g1b := groupOwner("a", 7, 3)
	if err := s.SetWithGroups(o1, f1, g1b); err != nil {
		t.Fatal(err)
	}
	mustSync(t, s, br)
	last := br.lastBundle(t)
	if len(last) != 1 || !strings.HasPrefix(last[0], "group add_or_mod group_id=7,") {
		t.Errorf("endpoint change bundle: %v, want the one group change", last)
	}
	// A group ID is one owner's.
	o3, f3, _ := groupOwner("c", 9, 6)
	var ge *GroupConflictError
	if err := s.SetWithGroups(o3, f3, g1); !errors.As(err, &ge) || ge.ID != 7 {
		t.Errorf("claiming group 7 again: %v, want a GroupConflictError", err)
	}
	// Deleting the owner deletes its flow and its group in one bundle.
	s.Delete(o2)
	mustSync(t, s, br)
	if got := groupLines(br); len(got) != 1 {
		t.Errorf("groups after deleting b: %v", got)
	}
	last = br.lastBundle(t)
	if !slices.Contains(last, "group delete group_id=8") || len(last) != 2 {
		t.Errorf("delete bundle: %v, want the flow delete and the group delete", last)
	}
	// A full sync restores a group deleted out of band (with its flow, which
	// OVS deletes along with it) and removes a stray group.
	if err := br.FakeBridge.Bundle(ctx, []ovs.Change{ovs.DeleteFlows(ovs.ByCookie(o1.CookieMatch())), ovs.DeleteGroup(7),
		ovs.AddGroup(ovs.SelectGroup(99, ovs.NewBucket(1, ovs.Output(9))))}); err != nil {
		t.Fatal(err)
	}
	if err := s.FullSync(ctx, br); err != nil {
		t.Fatal(err)
	}
	if got := groupLines(br); len(got) != 1 || !strings.HasPrefix(got[0], "group_id=7,") {
		t.Errorf("groups after full sync: %v", got)
	}
	if got, want := br.Dump(), dumpOf(s.All()); got != want {
		t.Errorf("flows after full sync:\n%s\nwant:\n%s", got, want)
	}
	if len(s.Groups(o1.String())) != 1 || len(s.Groups(o2.String())) != 0 {
		t.Errorf("store groups: a=%v b=%v", s.Groups(o1.String()), s.Groups(o2.String()))
	}
}
