package ovs

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file computes full syncs (ReplaceFlows, ReplaceAll) for both
// bridges: compare the bridge's current groups and flows with the desired
// ones and emit one bundle of only the differences. Doing the diff here,
// rather than with `ovs-ofctl replace-flows`, is what lets a full sync leave
// learned flows alone and change groups in the same atomic bundle as the
// flows that use them.

// currentFlow is one flow on the bridge, as far as a sync needs it.
type currentFlow struct {
	key   string // Flow.Key, or a unique "raw:" key for a flow we cannot parse
	canon string // Flow.Canonical, "" for a raw flow
	del   Change // how to delete it
}

// syncState is the bridge's current state; groups is nil when the sync
// leaves groups alone.
type syncState struct {
	flows  []currentFlow
	groups map[uint32]GroupEntry
}

func currentOf(f Flow) currentFlow {
	return currentFlow{key: f.Key(), canon: f.Canonical(), del: DeleteFlow(f)}
}

// planReplace returns the changes that turn cur into the desired state:
// group adds (new or changed, by ID), flow deletes (flows not desired),
// flow adds (new or changed), group deletes (groups not desired). With
// keepGroups the current groups stay and desired groups are ignored. Learned
// flows must already be absent from cur.
func planReplace(cur syncState, groups []GroupEntry, keepGroups bool, flows []Flow) ([]Change, error) {
	want, err := desiredFlows(flows)
	if err != nil {
		return nil, err
	}
	wantGroups := cur.groups
	if !keepGroups {
		if wantGroups, err = desiredGroups(groups); err != nil {
			return nil, err
		}
	}
	if err := checkFlowGroups(flows, wantGroups); err != nil {
		return nil, err
	}
	var changes []Change
	if !keepGroups {
		changes = groupAdds(cur.groups, groups)
	}
	have := make(map[string]string, len(cur.flows))
	for _, c := range cur.flows {
		have[c.key] = c.canon
		if _, ok := want[c.key]; !ok {
			changes = append(changes, c.del)
		}
	}
	for _, f := range flows {
		if canon, ok := have[f.Key()]; !ok || canon != want[f.Key()] {
			changes = append(changes, AddFlow(f))
		}
	}
	if !keepGroups {
		changes = append(changes, groupDeletes(cur.groups, wantGroups)...)
	}
	return changes, nil
}

// desiredFlows maps Key to Canonical, rejecting duplicate keys and learned
// flows.
func desiredFlows(flows []Flow) (map[string]string, error) {
	want := make(map[string]string, len(flows))
	seen := make(map[string]Flow, len(flows))
	for _, f := range flows {
		if CookieCategoryOf(f.Cookie) == CookieLearned {
			return nil, fmt.Errorf("replace: flow %q has a cookie of category Learned: learned flows are installed by OVS, not desired", f)
		}
		k := f.Key()
		if prev, ok := seen[k]; ok {
			return nil, fmt.Errorf("replace: %q and %q have the same key", prev, f)
		}
		seen[k], want[k] = f, f.Canonical()
	}
	return want, nil
}

func desiredGroups(groups []GroupEntry) (map[uint32]GroupEntry, error) {
	want := make(map[uint32]GroupEntry, len(groups))
	for _, g := range groups {
		if _, dup := want[g.ID]; dup {
			return nil, fmt.Errorf("replace: group %d given twice", g.ID)
		}
		want[g.ID] = g
	}
	return want, nil
}

// checkFlowGroups reports the first flow or group using a group not in
// groups. A nil map (groups unknown) checks nothing.
func checkFlowGroups(flows []Flow, groups map[uint32]GroupEntry) error {
	if groups == nil {
		return nil
	}
	for _, f := range flows {
		for _, id := range referencedGroups(f.Actions) {
			if _, ok := groups[id]; !ok {
				return fmt.Errorf("flow %q outputs to group %d, which the bridge would not hold", f, id)
			}
		}
	}
	for _, g := range groups {
		for _, bk := range g.Buckets {
			for _, id := range referencedGroups(bk.Actions) {
				if _, ok := groups[id]; !ok {
					return fmt.Errorf("group %d outputs to group %d, which the bridge would not hold", g.ID, id)
				}
			}
		}
	}
	return nil
}

func groupAdds(cur map[uint32]GroupEntry, want []GroupEntry) []Change {
	var out []Change
	for _, g := range sortedGroups(want) {
		if old, ok := cur[g.ID]; !ok || !old.Equal(g) {
			out = append(out, AddGroup(g))
		}
	}
	return out
}

func groupDeletes(cur, want map[uint32]GroupEntry) []Change {
	var ids []uint32
	for id := range cur {
		if _, ok := want[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := make([]Change, len(ids))
	for i, id := range ids {
		out[i] = DeleteGroup(id)
	}
	return out
}

// parseSyncDump reads dump-flows output for a sync: learned flows are
// skipped before parsing, and a flow we cannot parse is still deleted,
// through its match text as OVS printed it (a full sync must repair any
// out-of-band edit, not only those in our typed subset).
func parseSyncDump(text string) []currentFlow {
	var out []currentFlow
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "OFPST_FLOW") || strings.HasPrefix(line, "NXST_FLOW") {
			continue
		}
		if c, ok := dumpCookie(line); ok && CookieCategoryOf(c) == CookieLearned {
			continue
		}
		d, err := parseLine(line)
		if err != nil {
			raw := rawMatch(line)
			out = append(out, currentFlow{key: "raw:" + raw, del: Change{Op: OpDeleteStrict, raw: raw}})
			continue
		}
		out = append(out, currentOf(d.Flow))
	}
	return out
}

// dumpCookie reads the leading "cookie=0x…," of a dump line.
func dumpCookie(line string) (uint64, bool) {
	rest, ok := strings.CutPrefix(line, "cookie=")
	if !ok {
		return 0, false
	}
	end := strings.IndexByte(rest, ',')
	if end < 0 {
		return 0, false
	}
	c, err := strconv.ParseUint(rest[:end], 0, 64)
	return c, err == nil
}

// rawMatch returns "table=T,priority=P,<match>" of a dump line, for strict
// deletion of a flow we cannot parse.
func rawMatch(line string) string {
	head, _, _ := cutActions(line)
	table, prio := "0", strconv.Itoa(DefaultPriority)
	var match []string
	for _, tok := range strings.Split(strings.ReplaceAll(head, ", ", ","), ",") {
		key, val, _ := strings.Cut(tok, "=")
		switch {
		case tok == "":
		case key == "table":
			table = val
		case key == "priority":
			prio = val
		case ignoredHeadKeys[key] || key == "cookie" || key == "duration" || key == "n_packets" || key == "n_bytes":
		default:
			match = append(match, tok)
		}
	}
	return strings.Join(append([]string{"table=" + table, "priority=" + prio}, match...), ",")
}
