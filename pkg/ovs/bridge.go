package ovs

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Bridge applies flows and groups to one OpenFlow bridge. OfctlBridge talks
// to a real OVS; FakeBridge is an in-memory, validating stand-in with the
// same contracts. Implementations are safe for concurrent use, but callers
// should serialize changes that touch the same owner (the node agent does
// all writes from one goroutine).
//
// Flows of cookie category CookieLearned are installed by OVS's learn action,
// never by callers: full syncs leave them alone (see CookieLearned).
type Bridge interface {
	// Bundle applies changes as one atomic OpenFlow bundle: after it
	// returns nil every change is in effect; on error none is. Group adds
	// run first, then flow changes in the given order, then group deletes,
	// so that no flow in the bundle references a group that does not exist
	// yet (OVS rejects that) or no longer (OVS would silently delete the
	// flow); a bundle that both adds and deletes one group ID is an error.
	// Adding a flow whose Key already exists replaces it, adding a group
	// whose ID exists replaces it (OVS add semantics); deleting flows or
	// groups that do not exist is not an error. An empty list is a no-op.
	Bundle(ctx context.Context, changes []Change) error
	// ReplaceFlows makes the bridge hold exactly flows (plus learned flows),
	// atomically, touching only flows that differ (added, deleted, or with
	// changed cookie or actions) so that unchanged flows keep their counters
	// and traffic keeps flowing. Groups are left as they are; a flow using
	// a group the bridge lacks fails the whole call. It is idempotent; it
	// repairs out-of-band edits.
	ReplaceFlows(ctx context.Context, flows []Flow) error
	// ReplaceAll makes the bridge hold exactly groups and flows (plus
	// learned flows) in one atomic bundle, touching only groups and flows
	// that differ, with the ordering of Bundle: no moment exists where a
	// flow references a missing group. Every group a flow uses must be in
	// groups. Idempotent; repairs out-of-band edits.
	ReplaceAll(ctx context.Context, groups []GroupEntry, flows []Flow) error
	// DumpFlows returns the flows selected by filter, with counters. The
	// order is unspecified.
	DumpFlows(ctx context.Context, filter Filter) ([]DumpedFlow, error)
	// DumpGroups returns every group on the bridge. The order is
	// unspecified.
	DumpGroups(ctx context.Context) ([]GroupEntry, error)
}

// ChangeOp is the kind of one change in a bundle.
type ChangeOp uint8

// Change kinds.
const (
	// OpAdd adds Flow, replacing a flow with the same Key.
	OpAdd ChangeOp = iota + 1
	// OpDeleteStrict deletes the flow with Flow's Key, if any.
	OpDeleteStrict
	// OpDelete deletes every flow selected by Filter.
	OpDelete
	// OpAddGroup adds Group, replacing a group with the same ID
	// ("group add_or_mod").
	OpAddGroup
	// OpDeleteGroup deletes the group with Group.ID, if any.
	OpDeleteGroup
)

// Change is one step of a bundle; build it with AddFlow, DeleteFlow,
// DeleteFlows, AddGroup or DeleteGroup.
type Change struct {
	Op     ChangeOp
	Flow   Flow       // OpAdd, OpDeleteStrict
	Filter Filter     // OpDelete
	Group  GroupEntry // OpAddGroup; OpDeleteGroup uses Group.ID
	raw    string     // OpDeleteStrict of a dumped flow we cannot parse: its match text
}

// AddFlow adds f (replacing a flow with the same Key).
func AddFlow(f Flow) Change { return Change{Op: OpAdd, Flow: f} }

// DeleteFlow deletes the flow with f's Key (table, priority, match).
func DeleteFlow(f Flow) Change { return Change{Op: OpDeleteStrict, Flow: f} }

// DeleteFlows deletes every flow selected by filter. The zero Filter selects
// every flow on the bridge, learned flows included.
func DeleteFlows(filter Filter) Change { return Change{Op: OpDelete, Filter: filter} }

// AddGroup adds g, replacing the group with the same ID (the flows using it
// stay and use the new buckets).
func AddGroup(g GroupEntry) Change { return Change{Op: OpAddGroup, Group: g} }

// DeleteGroup deletes group id. Delete the flows that use it in the same
// bundle: OVS deletes them silently, FakeBridge rejects the bundle.
func DeleteGroup(id uint32) Change { return Change{Op: OpDeleteGroup, Group: GroupEntry{ID: id}} }

// String renders the change as a line of `ovs-ofctl bundle` input.
func (c Change) String() string {
	switch c.Op {
	case OpAdd:
		return "flow add " + c.Flow.String()
	case OpDeleteStrict:
		if c.raw != "" {
			return "flow delete_strict " + c.raw
		}
		return "flow delete_strict " + c.Flow.MatchString()
	case OpAddGroup:
		return "group add_or_mod " + c.Group.String()
	case OpDeleteGroup:
		return "group delete group_id=" + strconv.FormatUint(uint64(c.Group.ID), 10)
	default:
		return "flow delete " + c.Filter.String()
	}
}

// OrderChanges returns changes in the order Bundle applies them, or an
// error for a bundle that both adds and deletes one group; for Bridge
// implementations outside this package.
func OrderChanges(changes []Change) ([]Change, error) { return orderChanges(changes) }

// orderChanges returns changes in the order Bundle applies them: group adds,
// flow changes, group deletes (each in the given order).
func orderChanges(changes []Change) ([]Change, error) {
	added := map[uint32]bool{}
	var groups, flows, deletes []Change
	for _, c := range changes {
		switch c.Op {
		case OpAddGroup:
			added[c.Group.ID] = true
			groups = append(groups, c)
		case OpDeleteGroup:
			deletes = append(deletes, c)
		default:
			flows = append(flows, c)
		}
	}
	for _, c := range deletes {
		if added[c.Group.ID] {
			return nil, fmt.Errorf("bundle both adds and deletes group %d", c.Group.ID)
		}
	}
	return append(append(groups, flows...), deletes...), nil
}

// Filter selects flows for DumpFlows and OpDelete. The zero value selects
// every flow.
type Filter struct {
	Cookie CookieMatch // zero Mask: any cookie
	Table  *Table      // nil: every table
}

// InTable returns a filter selecting one table.
func InTable(t Table) Filter { return Filter{Table: &t} }

// ByCookie returns a filter selecting flows by cookie.
func ByCookie(m CookieMatch) Filter { return Filter{Cookie: m} }

// String renders the filter in ovs-ofctl flow syntax ("table=20,cookie=…"),
// or "" for the zero filter.
func (f Filter) String() string {
	var parts []string
	if f.Table != nil {
		parts = append(parts, "table="+f.Table.String())
	}
	if s := f.Cookie.String(); s != "" {
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

// Selects reports whether the filter selects f.
func (f Filter) Selects(fl Flow) bool {
	if f.Table != nil && f.Table.ID != fl.Table.ID {
		return false
	}
	return f.Cookie.Matches(fl.Cookie)
}

// ChangeError is the change of a bundle that OVS rejected: a flow whose
// match or actions it refused, a group it could not add. The bundle it was
// part of was not applied — none of its changes is in effect. Bridges
// return it wrapped (find it with errors.As), so that a caller holding the
// desired state by owner can say whose flow it was; Error names the flow's
// text and cookie.
type ChangeError struct {
	// Index is the change's position in the bundle as the bridge applied it
	// (group adds, flow changes, group deletes; see Bridge.Bundle).
	Index  int
	Change Change
	// Err is OVS's reason, e.g. "OFPBAC_BAD_OUT_GROUP", or the
	// transport's when Unsent.
	Err error
	// Unsent: the transport refused the change itself (it cannot encode
	// it) and sent nothing of the bundle to OVS.
	Unsent bool
}

func (e *ChangeError) Error() string {
	cookie := ""
	if e.Change.Op == OpAdd || e.Change.Op == OpDeleteStrict {
		cookie = fmt.Sprintf(" (cookie %#x)", e.Change.Flow.Cookie)
	}
	who := "OVS rejected"
	if e.Unsent {
		who = "the transport cannot send"
	}
	return fmt.Sprintf("%s %q%s: %v", who, e.Change.String(), cookie, e.Err)
}

func (e *ChangeError) Unwrap() error { return e.Err }
