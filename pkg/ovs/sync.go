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

// currentFlow is one flow on the bridge, as far as a sync needs it: its
// text fingerprint, and either the typed flow (FakeBridge) or the dump line
// (OfctlBridge), parsed only when the fingerprint finds no desired flow.
type currentFlow struct {
	print string
	flow  *Flow
	line  string
}

// syncState is the bridge's current state; groups is nil when the sync
// leaves groups alone.
type syncState struct {
	flows  []currentFlow
	groups map[uint32]GroupEntry
}

func currentOf(f Flow) currentFlow { return currentFlow{print: fingerprint(f), flow: &f} }

// planReplace returns the changes that turn cur into the desired state:
// group adds (new or changed, by ID), flow deletes (flows not desired),
// flow adds (new or changed), group deletes (groups not desired). With
// keepGroups the current groups stay and desired groups are ignored. Learned
// flows must already be absent from cur. Duplicate desired keys are not
// detected here (the last one wins on the bridge, as with OVS's own
// replace-flows); FakeBridge checks them first.
//
// Most flows of a periodic sync are unchanged, so the diff first compares
// text fingerprints (table, priority, cookie, the sorted match clauses and
// the actions, as OVS prints them); only flows left over on either side are
// parsed and compared by Key and Canonical, which also absorbs OVS's
// rewritings (tcp_dst → tp_dst, arp+nw_src → arp_spa, …).
func planReplace(cur syncState, groups []GroupEntry, keepGroups bool, flows []Flow) ([]Change, error) {
	if err := checkDesired(flows, false); err != nil {
		return nil, err
	}
	wantGroups := cur.groups
	if !keepGroups {
		var err error
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
	changes = append(changes, flowChanges(cur.flows, flows)...)
	if !keepGroups {
		changes = append(changes, groupDeletes(cur.groups, wantGroups)...)
	}
	return changes, nil
}

// PlanReplace is the diff of the full syncs, for Bridge implementations
// outside this package that decode their dumps into typed flows
// (pkg/ovs/openflow): it returns the changes that make a bridge holding
// current flows and currentGroups hold exactly groups and flows
// (ReplaceAll) or, with keepGroups, exactly flows with its groups left
// alone (ReplaceFlows; currentGroups and groups are then ignored). Only
// differing flows and groups are in the result, in Bundle's order: group
// adds, flow deletes, flow adds, group deletes. current must not hold
// learned flows (CookieLearned), nor flows the caller removes by other
// means (one it could not decode).
func PlanReplace(current []Flow, currentGroups map[uint32]GroupEntry, groups []GroupEntry, keepGroups bool, flows []Flow) ([]Change, error) {
	cur := syncState{flows: make([]currentFlow, len(current))}
	for i, f := range current {
		cur.flows[i] = currentOf(f)
	}
	if !keepGroups {
		cur.groups = currentGroups
		if cur.groups == nil {
			cur.groups = map[uint32]GroupEntry{}
		}
	}
	return planReplace(cur, groups, keepGroups, flows)
}

// flowChanges diffs current against desired flows: deletes, then adds.
func flowChanges(cur []currentFlow, flows []Flow) []Change {
	if len(cur) == 0 {
		changes := make([]Change, len(flows))
		for i, f := range flows {
			changes[i] = AddFlow(f)
		}
		return changes
	}
	matched, pending := matchByPrint(cur, flows)
	wanted := make(map[string]bool, len(pending))
	for _, f := range pending {
		wanted[f.Key()] = true
	}
	left := map[string]string{} // Key → Canonical of unmatched current flows still wanted
	var changes []Change
	for i, c := range cur {
		if matched[i] {
			continue
		}
		if key, canon, del := c.resolve(); wanted[key] {
			left[key] = canon
		} else {
			changes = append(changes, del)
		}
	}
	for _, f := range pending {
		k := f.Key()
		if canon, ok := left[k]; !ok || canon != f.canonicalFrom(k) {
			changes = append(changes, AddFlow(f))
		}
	}
	return changes
}

// matchByPrint pairs desired flows with current flows of the same
// fingerprint; it returns which current flows matched and the desired flows
// that did not.
func matchByPrint(cur []currentFlow, flows []Flow) ([]bool, []Flow) {
	byPrint := make(map[string]int, len(cur))
	for i, c := range cur {
		byPrint[c.print] = i
	}
	matched := make([]bool, len(cur))
	var pending []Flow
	for _, f := range flows {
		if i, ok := byPrint[fingerprint(f)]; ok && !matched[i] {
			matched[i] = true
			continue
		}
		pending = append(pending, f)
	}
	return matched, pending
}

// resolve parses a current flow left over by the fingerprint pass. A flow
// we cannot parse gets a key no desired flow has and is deleted through its
// match text as OVS printed it (a full sync must repair any out-of-band
// edit, not only those in our typed subset); a flow with timeouts never
// equals a desired one (we install none), so it is replaced.
func (c currentFlow) resolve() (key, canon string, del Change) {
	if c.flow != nil {
		k := c.flow.Key()
		return k, c.flow.canonicalFrom(k), DeleteFlow(*c.flow)
	}
	d, err := parseLine(c.line)
	if err != nil {
		raw := rawMatch(c.line)
		return "raw:" + raw, "", Change{Op: OpDeleteStrict, raw: raw}
	}
	k := d.Key()
	if strings.Contains(c.line, "idle_timeout=") || strings.Contains(c.line, "hard_timeout=") {
		return k, "", DeleteFlow(d.Flow)
	}
	return k, d.canonicalFrom(k), DeleteFlow(d.Flow)
}

// fingerprint is a flow's text as OVS prints it, reduced to what identifies
// an unchanged flow: "table|priority|cookie|sorted match clauses|actions".
// Our two legacy spellings of zero ("reg0=0x0", "load:0x0->") are written
// the way OVS prints them.
func fingerprint(f Flow) string {
	clauses := make([]string, len(f.Match))
	for i, m := range f.Match {
		clauses[i] = m.String()
		if r, ok := m.(RegMatch); ok && r.Value == 0 && r.Mask == ^uint32(0) {
			clauses[i] = r.Key() + "=0"
		}
	}
	acts := actionsString(f.Actions)
	if strings.Contains(acts, "load:0x0->") {
		acts = strings.ReplaceAll(acts, "load:0x0->", "load:0->")
	}
	return printOf(int(f.Table.ID), int(f.Priority), f.Cookie, clauses, acts)
}

func printOf(table, priority int, cookie uint64, clauses []string, actions string) string {
	slices.Sort(clauses)
	var b strings.Builder
	b.Grow(64 + len(actions) + 24*len(clauses))
	b.WriteString(strconv.Itoa(table))
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(priority))
	b.WriteString("|0x")
	b.WriteString(strconv.FormatUint(cookie, 16))
	for _, c := range clauses {
		b.WriteByte('|')
		b.WriteString(c)
	}
	b.WriteString("|actions=")
	b.WriteString(actions)
	return b.String()
}

// dumpPrint is the fingerprint of a dump-flows line; ok is false for a line
// that does not look like a flow.
func dumpPrint(line string) (string, bool) {
	head, actions, ok := cutActions(line)
	if !ok {
		return "", false
	}
	table, priority := 0, DefaultPriority
	var cookie uint64
	clauses := make([]string, 0, 8)
	for _, tok := range strings.Split(strings.ReplaceAll(head, ", ", ","), ",") {
		key, val, _ := strings.Cut(tok, "=")
		var err error
		switch key {
		case "":
		case "table":
			table, err = strconv.Atoi(val)
		case "priority":
			priority, err = strconv.Atoi(val)
		case "cookie":
			cookie, err = strconv.ParseUint(val, 0, 64)
		case "duration", "n_packets", "n_bytes", "idle_age", "hard_age":
		default:
			clauses = append(clauses, tok)
		}
		if err != nil {
			return "", false
		}
	}
	return printOf(table, priority, cookie, clauses, actions), true
}

// checkDesired rejects desired flows of category CookieLearned and, with
// keys, two desired flows with the same Key (computing keys costs a
// normalization per flow, so only FakeBridge pays it).
func checkDesired(flows []Flow, keys bool) error {
	seen := map[string]Flow{}
	for _, f := range flows {
		if CookieCategoryOf(f.Cookie) == CookieLearned {
			return fmt.Errorf("flow %q has a cookie of category Learned: learned flows are installed by OVS, not desired", f)
		}
		if !keys {
			continue
		}
		k := f.Key()
		if prev, ok := seen[k]; ok {
			return fmt.Errorf("%q and %q have the same key", prev, f)
		}
		seen[k] = f
	}
	return nil
}

func desiredGroups(groups []GroupEntry) (map[uint32]GroupEntry, error) {
	want := make(map[uint32]GroupEntry, len(groups))
	for _, g := range groups {
		if _, dup := want[g.ID]; dup {
			return nil, fmt.Errorf("group %d given twice", g.ID)
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
// skipped, every other flow is kept as its fingerprint and its line.
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
		p, ok := dumpPrint(line)
		if !ok {
			p = "bad:" + line
		}
		out = append(out, currentFlow{print: p, line: line})
	}
	return out
}

// parseSyncGroups reads dump-groups output for a sync. A group we cannot
// parse (a type or property outside our model, added out of band) is kept
// with its ID only, so that the sync replaces or deletes it instead of
// failing.
func parseSyncGroups(text string) (map[uint32]GroupEntry, error) {
	groups := map[uint32]GroupEntry{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "OFPST_GROUP_DESC") || strings.HasPrefix(line, "NXST_GROUP_DESC") {
			continue
		}
		g, err := ParseGroup(line)
		if err != nil {
			id, _, _ := strings.Cut(strings.TrimPrefix(line, "group_id="), ",")
			n, err := strconv.ParseUint(id, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("dump-groups line %q: no group_id", line)
			}
			g = GroupEntry{ID: uint32(n)} // Type 0: equals no desired group
		}
		groups[g.ID] = g
	}
	return groups, nil
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
