package ovs

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// FakeBridge is an in-memory Bridge for unit tests. It keys flows the way OVS
// does (table, priority, normalized match) and groups by ID, validates every
// added flow with ValidateFlow and group with ValidateGroupEntry — stricter
// than OVS, which silently widens some mistakes — and applies bundles
// all-or-nothing. It is also stricter about groups: a bundle or replace that
// would leave a flow (or a bucket) outputting to a missing group is
// rejected, where OVS rejects adding such a flow but silently deletes the
// flows of a deleted group. It does not model counters, learning or packet
// processing (use TraceWithGroups on Flows and Groups for that); flows of
// category CookieLearned added with Bundle stand in for learned flows, and
// full syncs keep them, as on a real bridge.
//
// Like every fake it can drift from the real thing; the integration tests in
// this package run the same operations against a real ovs-vswitchd.
type FakeBridge struct {
	mu        sync.Mutex
	flows     map[string]Flow
	groups    map[uint32]GroupEntry
	flowMods  int
	groupMods int
	failNext  error
	failAll   error
}

var _ Bridge = (*FakeBridge)(nil)

// NewFakeBridge returns an empty fake bridge.
func NewFakeBridge() *FakeBridge {
	return &FakeBridge{flows: map[string]Flow{}, groups: map[uint32]GroupEntry{}}
}

// FailNext makes the next Bundle, ReplaceFlows or ReplaceAll fail with err
// without changing anything, to test error paths.
func (b *FakeBridge) FailNext(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failNext = err
}

// FailAll makes every Bundle, ReplaceFlows and ReplaceAll fail with err,
// changing nothing, until FailAll(nil): for error paths that a concurrent
// caller (an agent's sync loop) could otherwise take the one failure of
// FailNext from.
func (b *FakeBridge) FailAll(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failAll = err
}

// FlowMods returns how many flows have been added, modified or deleted so
// far; a ReplaceFlows that finds nothing to change does not increase it.
func (b *FakeBridge) FlowMods() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flowMods
}

// GroupMods returns how many groups have been added, modified or deleted so
// far.
func (b *FakeBridge) GroupMods() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.groupMods
}

// fakeTxn is a bundle being applied to copies of the fake's state.
type fakeTxn struct {
	flows     map[string]Flow
	groups    map[uint32]GroupEntry
	added     map[string]Flow
	flowMods  int
	groupMods int
}

// Bundle implements Bridge. Two adds with the same Key but different cookie
// or actions in one bundle are rejected: one would silently lose.
func (b *FakeBridge) Bundle(_ context.Context, changes []Change) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.takeFailure(); err != nil {
		return err
	}
	ordered, err := orderChanges(changes)
	if err != nil {
		return err
	}
	return b.apply("bundle", ordered)
}

// apply runs changes on copies and commits them if the result references
// no missing group.
func (b *FakeBridge) apply(what string, changes []Change) error {
	tx := &fakeTxn{flows: maps.Clone(b.flows), groups: maps.Clone(b.groups), added: map[string]Flow{}}
	for i, c := range changes {
		if err := tx.apply(c); err != nil {
			return fmt.Errorf("%s change %d (%s): %w", what, i, c, err)
		}
	}
	if err := checkReferences(tx.flows, tx.groups); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	b.flows, b.groups = tx.flows, tx.groups
	b.flowMods += tx.flowMods
	b.groupMods += tx.groupMods
	return nil
}

func (tx *fakeTxn) apply(c Change) error {
	switch c.Op {
	case OpAdd:
		if err := ValidateFlow(c.Flow); err != nil {
			return err
		}
		k := c.Flow.Key()
		if prev, ok := tx.added[k]; ok && !prev.Equal(c.Flow) {
			return fmt.Errorf("conflicts with %q added in the same bundle", prev)
		}
		tx.added[k], tx.flows[k] = c.Flow, c.Flow
		tx.flowMods++
	case OpDeleteStrict:
		k := c.Flow.Key()
		if _, ok := tx.flows[k]; ok {
			delete(tx.flows, k)
			tx.flowMods++
		}
	case OpDelete:
		for k, f := range tx.flows {
			if c.Filter.Selects(f) {
				delete(tx.flows, k)
				tx.flowMods++
			}
		}
	case OpAddGroup:
		if err := ValidateGroupEntry(c.Group); err != nil {
			return err
		}
		tx.groups[c.Group.ID] = c.Group
		tx.groupMods++
	case OpDeleteGroup:
		if _, ok := tx.groups[c.Group.ID]; ok {
			delete(tx.groups, c.Group.ID)
			tx.groupMods++
		}
	default:
		return fmt.Errorf("unknown change op %d", c.Op)
	}
	return nil
}

// checkReferences reports a flow or bucket outputting to a missing group
// (the first flow in sorted order, so that the message is deterministic).
func checkReferences(flows map[string]Flow, groups map[uint32]GroupEntry) error {
	var bad []Flow
	for _, f := range flows {
		for _, id := range referencedGroups(f.Actions) {
			if _, ok := groups[id]; !ok {
				bad = append(bad, f)
			}
		}
	}
	if len(bad) > 0 {
		SortFlows(bad)
		for _, id := range referencedGroups(bad[0].Actions) {
			if _, ok := groups[id]; !ok {
				return fmt.Errorf("flow %q would point at missing group %d", bad[0], id)
			}
		}
	}
	for _, g := range sortedGroups(slices.Collect(maps.Values(groups))) {
		for _, bk := range g.Buckets {
			for _, id := range referencedGroups(bk.Actions) {
				if _, ok := groups[id]; !ok {
					return fmt.Errorf("group %d would point at missing group %d", g.ID, id)
				}
			}
		}
	}
	return nil
}

// ReplaceFlows implements Bridge; flows must be valid and have unique keys.
func (b *FakeBridge) ReplaceFlows(_ context.Context, flows []Flow) error {
	return b.replace("replace-flows", nil, true, flows)
}

// ReplaceAll implements Bridge; groups and flows must be valid.
func (b *FakeBridge) ReplaceAll(_ context.Context, groups []GroupEntry, flows []Flow) error {
	return b.replace("replace", groups, false, flows)
}

// replace plans the sync exactly as OfctlBridge does and applies it.
func (b *FakeBridge) replace(what string, groups []GroupEntry, keepGroups bool, flows []Flow) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.takeFailure(); err != nil {
		return err
	}
	for _, f := range flows {
		if err := ValidateFlow(f); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if err := checkDesired(flows, true); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	cur := syncState{groups: b.groups}
	for _, f := range b.flows {
		if CookieCategoryOf(f.Cookie) != CookieLearned {
			cur.flows = append(cur.flows, currentOf(f))
		}
	}
	changes, err := planReplace(cur, groups, keepGroups, flows)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return b.apply(what, changes)
}

// DumpFlows implements Bridge; counters are zero. Flows come back sorted
// (see SortFlows).
func (b *FakeBridge) DumpFlows(_ context.Context, filter Filter) ([]DumpedFlow, error) {
	var out []DumpedFlow
	for _, f := range b.Flows() {
		if filter.Selects(f) {
			out = append(out, DumpedFlow{Flow: f})
		}
	}
	return out, nil
}

// DumpGroups implements Bridge; groups come back sorted by ID.
func (b *FakeBridge) DumpGroups(context.Context) ([]GroupEntry, error) { return b.Groups(), nil }

// Flows returns the installed flows, sorted.
func (b *FakeBridge) Flows() []Flow {
	b.mu.Lock()
	defer b.mu.Unlock()
	flows := slices.Collect(maps.Values(b.flows))
	SortFlows(flows)
	return flows
}

// Groups returns the installed groups, sorted by ID.
func (b *FakeBridge) Groups() []GroupEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	return sortedGroups(slices.Collect(maps.Values(b.groups)))
}

// Dump returns the installed flows as sorted StringNamed lines, one per line
// (groups are not included: see Groups).
func (b *FakeBridge) Dump() string {
	var sb strings.Builder
	for _, f := range b.Flows() {
		sb.WriteString(f.StringNamed())
		sb.WriteByte('\n')
	}
	return sb.String()
}

func (b *FakeBridge) takeFailure() error {
	if b.failAll != nil {
		return b.failAll
	}
	err := b.failNext
	b.failNext = nil
	return err
}

// SortFlows sorts flows in pipeline order: table ID, then priority
// descending, then canonical text. The order is total and deterministic.
func SortFlows(flows []Flow) {
	slices.SortFunc(flows, func(a, b Flow) int {
		if a.Table.ID != b.Table.ID {
			return int(a.Table.ID) - int(b.Table.ID)
		}
		if a.Priority != b.Priority {
			return int(b.Priority) - int(a.Priority)
		}
		return strings.Compare(a.Canonical(), b.Canonical())
	})
}
