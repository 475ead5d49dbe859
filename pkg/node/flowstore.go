package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// FlowStore holds the node's desired flows and OpenFlow groups keyed by
// owner (pipeline.Owner, identified by its String: "pipeline", "version",
// "pod/<ns>/<name>", "node/<name>", "service/<ns>/<name>", …) and converges
// a bridge to them. Groups follow the flows' rules (flowstore_groups.go): an
// owner's group IDs are its own, and a sync orders group and flow changes
// so that no flow ever references a missing group. A full sync writes the
// owners in pipeline.CompareOwners order: the version note (table 253)
// after every other flow, so a bridge that holds the note holds the whole
// pipeline.
//
// It remembers, per owner, the flows it last applied successfully, so an
// incremental Sync sends only the difference of the owners changed since:
// a flow that did not change is never touched (its counters and conntrack
// state stay), and the cost of a sync is proportional to the change, not to
// the size of the bridge. FullSync replaces the whole bridge content with
// the union of all owners, which repairs out-of-band edits; it too touches
// only flows that differ (ovs.Bridge.ReplaceFlows contract).
//
// Set and Delete are safe to call from any goroutine. Sync and FullSync are
// serialized internally; the agent calls them from one goroutine. Neither
// holds the store's lock while talking to OVS, so Set never waits for I/O.
// The zero value is not usable; call NewFlowStore.
type FlowStore struct {
	syncMu sync.Mutex // serializes Sync and FullSync

	mu       sync.Mutex
	owners   map[string]pipeline.Owner        // owner key → owner
	desired  map[string][]storedFlow          // owner → flows, in Set order
	applied  map[string]map[string]storedFlow // owner → key → flow last applied
	appliedG map[string]uint64                // owner → generation applied holds
	keyOwner map[string]string                // flow key → owner claiming it
	gen      map[string]uint64                // owner → generation of desired
	dirty    map[string]struct{}              // owners changed since applied
	nflows   int                              // number of desired flows
	groups   groupState                       // flowstore_groups.go
}

// storedFlow caches the identity and full text of a flow, which are costly
// to compute (match normalization) and compared on every sync.
type storedFlow struct {
	flow  ovs.Flow
	key   string
	canon string
}

// NewFlowStore returns an empty store. An empty store that is fully synced
// empties the bridge.
func NewFlowStore() *FlowStore {
	return &FlowStore{
		owners:   map[string]pipeline.Owner{},
		desired:  map[string][]storedFlow{},
		applied:  map[string]map[string]storedFlow{},
		appliedG: map[string]uint64{},
		keyOwner: map[string]string{},
		gen:      map[string]uint64{},
		dirty:    map[string]struct{}{},
		groups:   newGroupState(),
	}
}

// ConflictError reports a flow Key claimed by two owners (or twice by one).
// Two owners rendering the same table/priority/match is a renderer bug: on
// the bridge one would silently overwrite the other.
type ConflictError struct {
	Key            string
	Owner, Claimer string // Owner holds the key; Claimer tried to set it
}

func (e *ConflictError) Error() string {
	if e.Owner == e.Claimer {
		return fmt.Sprintf("flow store: owner %q has two flows with key %q", e.Owner, e.Key)
	}
	return fmt.Sprintf("flow store: owner %q claims flow key %q already owned by %q", e.Claimer, e.Key, e.Owner)
}

// Set makes flows the desired flows of owner, replacing its previous flows
// and groups. It is idempotent and all-or-nothing: on a *ConflictError (a
// key held by another owner, or repeated within flows) nothing changes.
// Setting no flows is the same as Delete. The change reaches OVS at the
// next Sync.
func (s *FlowStore) Set(o pipeline.Owner, flows []ovs.Flow) error {
	return s.SetWithGroups(o, flows, nil)
}

// SetWithGroups is Set for an owner that also owns OpenFlow groups (its
// flows may use them): flows and groups replace the owner's previous ones
// together. A group ID held by another owner, or repeated, is a
// *ConflictError and nothing changes.
func (s *FlowStore) SetWithGroups(o pipeline.Owner, flows []ovs.Flow, groups []ovs.GroupEntry) error {
	owner := o.String()
	stored := make([]storedFlow, len(flows))
	seen := make(map[string]struct{}, len(flows))
	for i, f := range flows {
		sf := storedFlow{flow: f, key: f.Key(), canon: f.Canonical()}
		if _, dup := seen[sf.key]; dup {
			return &ConflictError{Key: sf.key, Owner: owner, Claimer: owner}
		}
		seen[sf.key] = struct{}{}
		stored[i] = sf
	}
	sg, err := storeGroups(owner, groups)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sf := range stored {
		if o, ok := s.keyOwner[sf.key]; ok && o != owner {
			return &ConflictError{Key: sf.key, Owner: o, Claimer: owner}
		}
	}
	if err := s.groups.checkOwnersLocked(owner, sg); err != nil {
		return err
	}
	if sameFlows(s.desired[owner], stored) && s.groups.sameLocked(owner, sg) {
		return nil
	}
	s.removeLocked(owner)
	s.owners[owner] = o
	s.groups.setLocked(owner, sg)
	if len(stored) > 0 {
		s.desired[owner] = stored
		for _, sf := range stored {
			s.keyOwner[sf.key] = owner
		}
		s.nflows += len(stored)
	}
	s.markLocked(owner)
	return nil
}

// Delete removes every desired flow of owner. Deleting an unknown owner is
// a no-op.
func (s *FlowStore) Delete(o pipeline.Owner) {
	owner := o.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.desired[owner]; !ok && !s.groups.hasLocked(owner) {
		return
	}
	s.removeLocked(owner)
	s.markLocked(owner)
}

func (s *FlowStore) removeLocked(owner string) {
	for _, sf := range s.desired[owner] {
		delete(s.keyOwner, sf.key)
	}
	s.nflows -= len(s.desired[owner])
	delete(s.desired, owner)
	s.groups.setLocked(owner, nil)
}

// live reports whether owner has desired flows or groups.
func (s *FlowStore) liveLocked(owner string) bool {
	_, ok := s.desired[owner]
	return ok || s.groups.hasLocked(owner)
}

func (s *FlowStore) markLocked(owner string) {
	s.gen[owner]++
	s.dirty[owner] = struct{}{}
}

func sameFlows(a, b []storedFlow) bool {
	return slices.EqualFunc(a, b, func(x, y storedFlow) bool { return x.canon == y.canon })
}

// Flows returns the desired flows of owner, in the order they were set.
func (s *FlowStore) Flows(owner pipeline.Owner) []ovs.Flow {
	s.mu.Lock()
	defer s.mu.Unlock()
	desired := s.desired[owner.String()]
	out := make([]ovs.Flow, 0, len(desired))
	for _, sf := range desired {
		out = append(out, sf.flow)
	}
	return out
}

// Owners returns the owners that have desired flows or groups, in
// full-sync order.
func (s *FlowStore) Owners() []pipeline.Owner {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]pipeline.Owner, 0, len(s.desired))
	for o := range s.owners {
		if s.liveLocked(o) {
			out = append(out, s.owners[o])
		}
	}
	slices.SortFunc(out, pipeline.CompareOwners)
	return out
}

// Len returns the number of desired flows.
func (s *FlowStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nflows
}

// Pending returns the number of owners changed since they were last applied.
func (s *FlowStore) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.dirty)
}

// All returns the union of the desired flows in full-sync order: owners
// sorted, the version owner last.
func (s *FlowStore) All() []ovs.Flow {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.snapshotLocked(s.allOwnersLocked())
	return snap.flows()
}

// Sync applies every pending owner change to br as one atomic bundle that
// holds only the difference per owner: flows an owner no longer has are
// deleted strictly (unless another owner adds the same key in this bundle),
// new or changed flows are added (OVS add replaces the flow with the same
// key). Unchanged flows are not in the bundle. Version flows come last.
//
// On error nothing is marked applied and the changes stay pending, so the
// next Sync retries them. With nothing pending Sync does no I/O.
func (s *FlowStore) Sync(ctx context.Context, br ovs.Bridge) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	owners := make([]string, 0, len(s.dirty))
	for o := range s.dirty {
		owners = append(owners, o)
	}
	s.sortOwnersLocked(owners)
	snap := s.snapshotLocked(owners)
	changes := s.diffLocked(snap)
	s.mu.Unlock()
	if len(changes) > 0 {
		if err := br.Bundle(ctx, changes); err != nil {
			return fmt.Errorf("flow store sync of %d owners (%d changes): %w", len(owners), len(changes), s.namingOwner(err))
		}
	}
	s.mu.Lock()
	s.commitLocked(snap)
	s.mu.Unlock()
	return nil
}

// FullSync makes br hold exactly the union of the desired groups and flows,
// version flows last, with one ReplaceAll: groups and flows added or edited
// out of band are removed or restored, unchanged ones are not touched (and
// learned flows are left alone). It also applies every pending change. On
// error the pending changes stay pending.
func (s *FlowStore) FullSync(ctx context.Context, br ovs.Bridge) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	snap := s.snapshotLocked(s.allOwnersLocked())
	s.mu.Unlock()
	flows, groups := snap.flows(), snap.groupList()
	if err := br.ReplaceAll(ctx, groups, flows); err != nil {
		return fmt.Errorf("flow store full sync of %d flows and %d groups: %w", len(flows), len(groups), s.namingOwner(err))
	}
	s.mu.Lock()
	s.commitLocked(snap)
	s.mu.Unlock()
	return nil
}

// snapshot is the desired state of some owners at one instant, taken under
// the lock so that I/O can proceed without it.
type snapshot struct {
	owners  []string // sorted by sortOwners
	gens    map[string]uint64
	desired map[string][]storedFlow  // shared, never mutated: Set replaces slices
	groups  map[string][]storedGroup // likewise
}

func (s *FlowStore) snapshotLocked(owners []string) snapshot {
	snap := snapshot{owners: owners, gens: make(map[string]uint64, len(owners)), desired: make(map[string][]storedFlow, len(owners)),
		groups: map[string][]storedGroup{}}
	for _, o := range owners {
		snap.gens[o] = s.gen[o]
		snap.desired[o] = s.desired[o]
		if g := s.groups.desired[o]; len(g) > 0 {
			snap.groups[o] = g
		}
	}
	return snap
}

// allOwnersLocked returns every owner with desired, applied or pending
// state, in sync order.
func (s *FlowStore) allOwnersLocked() []string {
	set := make(map[string]struct{}, len(s.desired)+len(s.dirty))
	for o := range s.dirty {
		set[o] = struct{}{}
	}
	for o := range s.desired {
		set[o] = struct{}{}
	}
	for o := range s.applied {
		set[o] = struct{}{}
	}
	for o := range s.groups.desired {
		set[o] = struct{}{}
	}
	for o := range s.groups.applied {
		set[o] = struct{}{}
	}
	owners := make([]string, 0, len(set))
	for o := range set {
		owners = append(owners, o)
	}
	s.sortOwnersLocked(owners)
	return owners
}

// sortOwnersLocked sorts owner keys in pipeline.CompareOwners order (the
// version owner last).
func (s *FlowStore) sortOwnersLocked(owners []string) {
	slices.SortFunc(owners, func(a, b string) int { return pipeline.CompareOwners(s.owners[a], s.owners[b]) })
}

// flows returns the snapshot's flows in owner order.
func (snap snapshot) flows() []ovs.Flow {
	n := 0
	for _, o := range snap.owners {
		n += len(snap.desired[o])
	}
	out := make([]ovs.Flow, 0, n)
	for _, o := range snap.owners {
		for _, sf := range snap.desired[o] {
			out = append(out, sf.flow)
		}
	}
	return out
}

// diffLocked renders the bundle that takes the snapshot's owners from their
// applied flows and groups to their desired ones: flow deletes, flow adds,
// then the group changes (the bridge applies group adds before and group
// deletes after the flow changes).
func (s *FlowStore) diffLocked(snap snapshot) []ovs.Change {
	return append(s.flowDiffLocked(snap), s.groups.diffLocked(snap)...)
}

func (s *FlowStore) flowDiffLocked(snap snapshot) []ovs.Change {
	added := map[string]struct{}{}
	var adds []ovs.Change
	for _, o := range snap.owners {
		old := s.applied[o]
		for _, sf := range snap.desired[o] {
			if prev, ok := old[sf.key]; !ok || prev.canon != sf.canon {
				adds = append(adds, ovs.AddFlow(sf.flow))
				added[sf.key] = struct{}{}
			}
		}
	}
	var changes []ovs.Change
	for _, o := range snap.owners {
		keep := make(map[string]struct{}, len(snap.desired[o]))
		for _, sf := range snap.desired[o] {
			keep[sf.key] = struct{}{}
		}
		for _, prev := range sortedApplied(s.applied[o]) {
			_, kept := keep[prev.key]
			_, readded := added[prev.key]
			if !kept && !readded {
				changes = append(changes, ovs.DeleteFlow(prev.flow))
			}
		}
	}
	return append(changes, adds...)
}

func sortedApplied(m map[string]storedFlow) []storedFlow {
	out := make([]storedFlow, 0, len(m))
	for _, sf := range m {
		out = append(out, sf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// commitLocked records that the snapshot is now on the bridge. Owners that
// changed again while the bridge was being written stay pending.
func (s *FlowStore) commitLocked(snap snapshot) {
	for _, o := range snap.owners {
		s.setAppliedLocked(o, snap.desired[o], snap.gens[o])
		s.groups.setAppliedLocked(o, snap.groups[o])
		if s.gen[o] == snap.gens[o] {
			delete(s.dirty, o)
			if !s.liveLocked(o) {
				delete(s.gen, o)
				delete(s.owners, o)
			}
		}
	}
}

// setAppliedLocked records flows, generation gen of owner, as applied. An
// owner's generation names its desired flows until the owner is deleted
// and committed (then both gen and appliedG entries go), so when appliedG
// already holds gen the map is current: a full sync of an unchanged node
// then rebuilds none of its per-owner maps.
func (s *FlowStore) setAppliedLocked(owner string, flows []storedFlow, gen uint64) {
	if len(flows) == 0 {
		delete(s.applied, owner)
		delete(s.appliedG, owner)
		return
	}
	if g, ok := s.appliedG[owner]; ok && g == gen {
		return
	}
	m := make(map[string]storedFlow, len(flows))
	for _, sf := range flows {
		m[sf.key] = sf
	}
	s.applied[owner] = m
	s.appliedG[owner] = gen
}

// namingOwner adds the owner of the change OVS rejected (an
// *ovs.ChangeError) to err: OVS names the flow, the store knows whose it
// is.
func (s *FlowStore) namingOwner(err error) error {
	var ce *ovs.ChangeError
	if !errors.As(err, &ce) {
		return err
	}
	s.mu.Lock()
	owner := s.ownerOfLocked(ce.Change)
	s.mu.Unlock()
	if owner == "" {
		return err
	}
	return fmt.Errorf("owner %s: %w", owner, err)
}

// ownerOfLocked returns the owner that wants or last applied the flow or
// group a change touches ("" if none).
func (s *FlowStore) ownerOfLocked(c ovs.Change) string {
	switch c.Op {
	case ovs.OpAdd, ovs.OpDeleteStrict:
		key := c.Flow.Key()
		if o, ok := s.keyOwner[key]; ok {
			return o
		}
		for o, m := range s.applied {
			if _, ok := m[key]; ok {
				return o
			}
		}
	case ovs.OpAddGroup, ovs.OpDeleteGroup:
		if o, ok := s.groups.owner[c.Group.ID]; ok {
			return o
		}
		for o, m := range s.groups.applied {
			if _, ok := m[c.Group.ID]; ok {
				return o
			}
		}
	}
	return ""
}
