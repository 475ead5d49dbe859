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
// does (table, priority, normalized match), validates every added flow with
// ValidateFlow — stricter than OVS, which silently widens some mistakes — and
// applies bundles all-or-nothing. It does not model groups, counters or
// packet processing (use Trace on Flows() for that).
//
// Like every fake it can drift from the real thing; the integration tests in
// this package run the same operations against a real ovs-vswitchd.
type FakeBridge struct {
	mu       sync.Mutex
	flows    map[string]Flow
	flowMods int
	failNext error
}

var _ Bridge = (*FakeBridge)(nil)

// NewFakeBridge returns an empty fake bridge.
func NewFakeBridge() *FakeBridge { return &FakeBridge{flows: map[string]Flow{}} }

// FailNext makes the next Bundle or ReplaceFlows fail with err without
// changing anything, to test error paths.
func (b *FakeBridge) FailNext(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failNext = err
}

// FlowMods returns how many flows have been added, modified or deleted so
// far; a ReplaceFlows that finds nothing to change does not increase it.
func (b *FakeBridge) FlowMods() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flowMods
}

// Bundle implements Bridge. Two adds with the same Key but different cookie
// or actions in one bundle are rejected: one would silently lose.
func (b *FakeBridge) Bundle(_ context.Context, changes []Change) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.takeFailure(); err != nil {
		return err
	}
	next := maps.Clone(b.flows)
	added := map[string]Flow{}
	mods := 0
	for i, c := range changes {
		n, err := applyChange(next, added, c)
		if err != nil {
			return fmt.Errorf("bundle change %d (%s): %w", i, c, err)
		}
		mods += n
	}
	b.flows, b.flowMods = next, b.flowMods+mods
	return nil
}

func applyChange(flows, added map[string]Flow, c Change) (int, error) {
	switch c.Op {
	case OpAdd:
		if err := ValidateFlow(c.Flow); err != nil {
			return 0, err
		}
		k := c.Flow.Key()
		if prev, ok := added[k]; ok && !prev.Equal(c.Flow) {
			return 0, fmt.Errorf("conflicts with %q added in the same bundle", prev)
		}
		added[k], flows[k] = c.Flow, c.Flow
		return 1, nil
	case OpDeleteStrict:
		k := c.Flow.Key()
		if _, ok := flows[k]; !ok {
			return 0, nil
		}
		delete(flows, k)
		return 1, nil
	case OpDelete:
		n := 0
		for k, f := range flows {
			if c.Filter.Selects(f) {
				delete(flows, k)
				n++
			}
		}
		return n, nil
	}
	return 0, fmt.Errorf("unknown change op %d", c.Op)
}

// ReplaceFlows implements Bridge; flows must be valid and have unique keys.
func (b *FakeBridge) ReplaceFlows(_ context.Context, flows []Flow) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.takeFailure(); err != nil {
		return err
	}
	next := make(map[string]Flow, len(flows))
	for _, f := range flows {
		if err := ValidateFlow(f); err != nil {
			return fmt.Errorf("replace-flows: %w", err)
		}
		k := f.Key()
		if prev, ok := next[k]; ok {
			return fmt.Errorf("replace-flows: %q and %q have the same key", prev, f)
		}
		next[k] = f
	}
	mods := 0
	for k, f := range next {
		if old, ok := b.flows[k]; !ok || !old.Equal(f) {
			mods++
		}
	}
	for k := range b.flows {
		if _, ok := next[k]; !ok {
			mods++
		}
	}
	b.flows, b.flowMods = next, b.flowMods+mods
	return nil
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

// Flows returns the installed flows, sorted.
func (b *FakeBridge) Flows() []Flow {
	b.mu.Lock()
	defer b.mu.Unlock()
	flows := slices.Collect(maps.Values(b.flows))
	SortFlows(flows)
	return flows
}

// Dump returns the installed flows as sorted StringNamed lines, one per line.
func (b *FakeBridge) Dump() string {
	var sb strings.Builder
	for _, f := range b.Flows() {
		sb.WriteString(f.StringNamed())
		sb.WriteByte('\n')
	}
	return sb.String()
}

func (b *FakeBridge) takeFailure() error {
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
