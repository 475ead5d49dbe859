package ovs

import (
	"context"
	"strings"
)

// Bridge applies flows to one OpenFlow bridge. OfctlBridge talks to a real
// OVS; FakeBridge is an in-memory, validating stand-in with the same
// contracts. Implementations are safe for concurrent use, but callers should
// serialize changes that touch the same owner (the node agent does all
// writes from one goroutine).
type Bridge interface {
	// Bundle applies changes in order as one atomic OpenFlow bundle: after
	// it returns nil every change is in effect; on error none is. Adding a
	// flow whose Key already exists replaces it (OVS add semantics);
	// deleting flows that do not exist is not an error. An empty list is a
	// no-op.
	Bundle(ctx context.Context, changes []Change) error
	// ReplaceFlows makes the bridge hold exactly flows, atomically, touching
	// only flows that differ (added, deleted, or with changed cookie or
	// actions) so that unchanged flows keep their counters and traffic keeps
	// flowing. It is idempotent; it repairs out-of-band edits.
	ReplaceFlows(ctx context.Context, flows []Flow) error
	// DumpFlows returns the flows selected by filter, with counters. The
	// order is unspecified.
	DumpFlows(ctx context.Context, filter Filter) ([]DumpedFlow, error)
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
)

// Change is one step of a bundle; build it with AddFlow, DeleteFlow or
// DeleteFlows.
type Change struct {
	Op     ChangeOp
	Flow   Flow   // OpAdd, OpDeleteStrict
	Filter Filter // OpDelete
}

// AddFlow adds f (replacing a flow with the same Key).
func AddFlow(f Flow) Change { return Change{Op: OpAdd, Flow: f} }

// DeleteFlow deletes the flow with f's Key (table, priority, match).
func DeleteFlow(f Flow) Change { return Change{Op: OpDeleteStrict, Flow: f} }

// DeleteFlows deletes every flow selected by filter. The zero Filter selects
// every flow on the bridge.
func DeleteFlows(filter Filter) Change { return Change{Op: OpDelete, Filter: filter} }

// String renders the change as a line of `ovs-ofctl bundle` input.
func (c Change) String() string {
	switch c.Op {
	case OpAdd:
		return "flow add " + c.Flow.String()
	case OpDeleteStrict:
		return "flow delete_strict " + c.Flow.MatchString()
	default:
		return "flow delete " + c.Filter.String()
	}
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
