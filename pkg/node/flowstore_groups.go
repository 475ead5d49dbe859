package node

import (
	"fmt"
	"slices"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// The FlowStore's OpenFlow groups: desired and applied per owner, each ID
// owned by one owner. They follow the flows: an incremental Sync sends the
// groups that changed (add_or_mod) and the ones an owner dropped (delete),
// and ovs.Bridge.Bundle orders group adds before and group deletes after the
// flow changes of the same bundle, so a flow never references a missing
// group; a FullSync hands all of them to ReplaceAll.

// storedGroup caches a group's text, compared on every sync.
type storedGroup struct {
	group ovs.GroupEntry
	canon string
}

// groupState is the FlowStore's group bookkeeping; its methods need the
// store's lock.
type groupState struct {
	desired map[string][]storedGroup          // owner → groups, by ID
	applied map[string]map[uint32]storedGroup // owner → ID → group last applied
	owner   map[uint32]string                 // group ID → owner claiming it
}

func newGroupState() groupState {
	return groupState{desired: map[string][]storedGroup{}, applied: map[string]map[uint32]storedGroup{}, owner: map[uint32]string{}}
}

// GroupConflictError reports a group ID claimed by two owners (or twice by
// one).
type GroupConflictError struct {
	ID             uint32
	Owner, Claimer string
}

func (e *GroupConflictError) Error() string {
	if e.Owner == e.Claimer {
		return fmt.Sprintf("flow store: owner %q has two groups with ID %d", e.Owner, e.ID)
	}
	return fmt.Sprintf("flow store: owner %q claims group %d already owned by %q", e.Claimer, e.ID, e.Owner)
}

// storeGroups validates and sorts an owner's groups.
func storeGroups(owner string, groups []ovs.GroupEntry) ([]storedGroup, error) {
	out := make([]storedGroup, 0, len(groups))
	seen := map[uint32]bool{}
	for _, g := range groups {
		if seen[g.ID] {
			return nil, &GroupConflictError{ID: g.ID, Owner: owner, Claimer: owner}
		}
		seen[g.ID] = true
		if err := ovs.ValidateGroupEntry(g); err != nil {
			return nil, fmt.Errorf("flow store: owner %q: %w", owner, err)
		}
		out = append(out, storedGroup{group: g, canon: g.String()})
	}
	slices.SortFunc(out, func(a, b storedGroup) int { return int(int64(a.group.ID) - int64(b.group.ID)) })
	return out, nil
}

func (g *groupState) checkOwnersLocked(owner string, groups []storedGroup) error {
	for _, sg := range groups {
		if o, ok := g.owner[sg.group.ID]; ok && o != owner {
			return &GroupConflictError{ID: sg.group.ID, Owner: o, Claimer: owner}
		}
	}
	return nil
}

func (g *groupState) sameLocked(owner string, groups []storedGroup) bool {
	return slices.EqualFunc(g.desired[owner], groups, func(a, b storedGroup) bool { return a.canon == b.canon })
}

func (g *groupState) hasLocked(owner string) bool { return len(g.desired[owner]) > 0 }

// setLocked replaces owner's desired groups (nil: none).
func (g *groupState) setLocked(owner string, groups []storedGroup) {
	for _, sg := range g.desired[owner] {
		delete(g.owner, sg.group.ID)
	}
	delete(g.desired, owner)
	if len(groups) == 0 {
		return
	}
	g.desired[owner] = groups
	for _, sg := range groups {
		g.owner[sg.group.ID] = owner
	}
}

// diffLocked returns the group changes that take the snapshot's owners from
// their applied groups to their desired ones: adds of new or changed
// groups, deletes of groups no owner of the snapshot still wants.
func (g *groupState) diffLocked(snap snapshot) []ovs.Change {
	var adds, deletes []ovs.Change
	wanted := map[uint32]bool{}
	for _, o := range snap.owners {
		for _, sg := range snap.groups[o] {
			wanted[sg.group.ID] = true
			if prev, ok := g.applied[o][sg.group.ID]; !ok || prev.canon != sg.canon {
				adds = append(adds, ovs.AddGroup(sg.group))
			}
		}
	}
	for _, o := range snap.owners {
		for _, id := range sortedIDs(g.applied[o]) {
			if !wanted[id] {
				deletes = append(deletes, ovs.DeleteGroup(id))
			}
		}
	}
	return append(adds, deletes...)
}

func sortedIDs(m map[uint32]storedGroup) []uint32 {
	ids := make([]uint32, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// setAppliedLocked records groups as owner's applied groups.
func (g *groupState) setAppliedLocked(owner string, groups []storedGroup) {
	if len(groups) == 0 {
		delete(g.applied, owner)
		return
	}
	m := make(map[uint32]storedGroup, len(groups))
	for _, sg := range groups {
		m[sg.group.ID] = sg
	}
	g.applied[owner] = m
}

// groupList returns the snapshot's groups in owner order.
func (snap snapshot) groupList() []ovs.GroupEntry {
	var out []ovs.GroupEntry
	for _, o := range snap.owners {
		for _, sg := range snap.groups[o] {
			out = append(out, sg.group)
		}
	}
	return out
}

// Groups returns the desired groups of owner, by ID.
func (s *FlowStore) Groups(owner string) []ovs.GroupEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ovs.GroupEntry
	for _, sg := range s.groups.desired[owner] {
		out = append(out, sg.group)
	}
	return out
}
