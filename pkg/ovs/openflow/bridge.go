package openflow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// DefaultTimeout bounds one operation (a bundle, a dump) when the caller's
// context has no earlier deadline: a full sync of 50,000 flows takes well
// under a second; an ovs-vswitchd that does not answer for this long is
// treated as gone (the connection is closed and the operation fails).
const DefaultTimeout = 30 * time.Second

// Bridge implements ovs.Bridge over one persistent OpenFlow 1.3 connection
// to a bridge's management socket ("<rundir>/br0.mgmt"), with the
// contracts of ovs.Bridge. The zero value is not usable; set Socket.
//
// It connects on first use and again after the connection is lost
// (ovs-vswitchd restarted): an operation that meets a lost connection is
// retried on a new one (every change op is idempotent, so a bundle whose
// commit may or may not have happened is safe to send again); if
// ovs-vswitchd is down for longer, the operation fails with an error
// wrapping ErrDisconnected and the next one tries again.
//
// A bundle is sent as one write: open, every change wrapped in a bundle
// add, a barrier. Errors OVS finds while adding (a match or action it
// refuses) arrive before the barrier's reply; then the bundle is discarded
// and the error is an *ovs.ChangeError naming the change. Otherwise the
// commit follows; OVS applies all of it or, on an error (a flow using a
// missing group), none, and reports the failing message, which again
// becomes an *ovs.ChangeError.
//
// Safe for concurrent use; operations share the connection.
type Bridge struct {
	// Socket is the management socket's path; a "unix:" prefix is
	// accepted, so an ovs-ofctl target works too.
	Socket string
	// Timeout bounds each operation (DefaultTimeout when 0).
	Timeout time.Duration
	// OnOperation, if set, is called after every operation with its name
	// ("bundle", "replace" — the bundle of a full sync —, "dump-flows",
	// "dump-groups"), its duration and error, like
	// ovs.OfctlBridge.OnOperation. It must not block.
	OnOperation func(op string, d time.Duration, err error)

	mu       sync.Mutex
	c        *conn
	bundleID atomic.Uint32
	dials    atomic.Int64
}

var _ ovs.Bridge = (*Bridge)(nil)

// New returns a bridge for the management socket at path.
func New(path string) *Bridge { return &Bridge{Socket: path} }

// Dials returns how many connections the bridge has made (tests, metrics).
func (b *Bridge) Dials() int64 { return b.dials.Load() }

// Close closes the connection; a later operation opens a new one.
func (b *Bridge) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		b.c.close()
		b.c = nil
	}
}

// conn returns the live connection, dialing if needed.
func (b *Bridge) conn(ctx context.Context) (*conn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil && b.c.alive() {
		return b.c, nil
	}
	c, err := dial(ctx, strings.TrimPrefix(b.Socket, "unix:"))
	if err != nil {
		return nil, err
	}
	b.dials.Add(1)
	b.c = c
	return c, nil
}

// attempts is how often an operation is tried when the connection fails;
// retryDelay is the pause before the second try (doubled after).
const (
	attempts   = 3
	retryDelay = 20 * time.Millisecond
)

// do runs fn on a live connection within the operation timeout, retrying
// on a lost connection, and reports the operation.
func (b *Bridge) do(ctx context.Context, op string, fn func(ctx context.Context, c *conn) error) error {
	start := time.Now()
	timeout := b.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	delay := retryDelay
	for i := 0; i < attempts; i++ {
		if i > 0 {
			if werr := sleep(ctx, delay); werr != nil {
				break
			}
			delay *= 2
		}
		var c *conn
		if c, err = b.conn(ctx); err == nil {
			err = fn(ctx, c)
		}
		if !errors.Is(err, ErrDisconnected) {
			break
		}
	}
	if b.OnOperation != nil {
		b.OnOperation(op, time.Since(start), err)
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Bundle implements ovs.Bridge.
func (b *Bridge) Bundle(ctx context.Context, changes []ovs.Change) error {
	ordered, err := ovs.OrderChanges(changes)
	if err != nil {
		return fmt.Errorf("bundle on %s: %w", b.Socket, err)
	}
	if len(ordered) == 0 {
		return nil
	}
	err = b.do(ctx, "bundle", func(ctx context.Context, c *conn) error {
		return b.bundle(ctx, c, nil, ordered)
	})
	if err != nil {
		return fmt.Errorf("bundle of %d changes on %s: %w", len(ordered), b.Socket, err)
	}
	return nil
}

// bundle applies raw strict deletes (flows outside the typed model), then
// changes, as one atomic bundle.
func (b *Bridge) bundle(ctx context.Context, c *conn, raws []rawFlow, changes []ovs.Change) error {
	n := len(raws) + len(changes)
	id := b.bundleID.Add(1)
	first := c.xids(n + 3)
	open, barrier, commit := first, first+uint32(n)+1, first+uint32(n)+2
	m, err := encodeBundle(id, first, raws, changes)
	if err != nil {
		return err
	}
	m.barrier(barrier)
	w := c.watchErrors(first+1, first+uint32(n))
	defer c.unwatch(w)
	openCall, barrierCall := c.expect(open, false), c.expect(barrier, false)
	if err := c.send(m.b); err != nil {
		return err
	}
	if err := c.wait(ctx, barrierCall); err != nil {
		return err
	}
	if err := c.wait(ctx, openCall); err != nil {
		return fmt.Errorf("bundle open: %w", err)
	}
	if xid, e := c.firstError(w); e != nil {
		b.discard(c, id)
		return changeError(xid-first-1, raws, changes, e)
	}
	var cm message
	cm.bundleControl(commit, id, bundleCommitReq)
	commitCall := c.expect(commit, false)
	if err := c.send(cm.b); err != nil {
		return err
	}
	err = c.wait(ctx, commitCall)
	if xid, e := c.firstError(w); e != nil {
		return changeError(xid-first-1, raws, changes, e)
	}
	if err != nil {
		return fmt.Errorf("bundle commit: %w", err)
	}
	return nil
}

// encodeBundle encodes the bundle open and the adds; an encoding error
// names the change.
func encodeBundle(id, first uint32, raws []rawFlow, changes []ovs.Change) (*message, error) {
	m := &message{b: make([]byte, 0, 16+len(changes)*192)}
	m.bundleControl(first, id, bundleOpenReq)
	xid := first + 1
	for _, r := range raws {
		m.bundleAdd(xid, id, func() { m.rawDeleteStrict(xid, r) })
		xid++
	}
	for i, ch := range changes {
		m.bundleAdd(xid, id, func() { m.change(xid, ch) })
		if m.err != nil {
			return nil, &ovs.ChangeError{Index: i, Change: ch, Err: m.err, Unsent: true}
		}
		xid++
	}
	return m, m.err
}

// discard drops an open bundle; its reply is not waited for (OVS also
// discards it when the connection closes).
func (b *Bridge) discard(c *conn, id uint32) {
	var m message
	m.bundleControl(c.xids(1), id, bundleDiscardReq)
	_ = c.send(m.b)
}

// changeError names the message at index i of a bundle (raw deletes first).
func changeError(i uint32, raws []rawFlow, changes []ovs.Change, e *OFPError) error {
	switch {
	case int(i) < len(raws):
		return fmt.Errorf("OVS rejected the deletion of %s: %w", raws[i], e)
	case int(i)-len(raws) < len(changes):
		j := int(i) - len(raws)
		return &ovs.ChangeError{Index: j, Change: changes[j], Err: e}
	}
	return e
}

// DumpFlows implements ovs.Bridge. A flow outside the typed model is an
// error naming it.
func (b *Bridge) DumpFlows(ctx context.Context, filter ovs.Filter) ([]ovs.DumpedFlow, error) {
	var raws []rawFlow
	err := b.do(ctx, "dump-flows", func(ctx context.Context, c *conn) error {
		var err error
		raws, err = dumpFlows(ctx, c, filter)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dump-flows %s %s: %w", b.Socket, filter, err)
	}
	out := make([]ovs.DumpedFlow, len(raws))
	for i, r := range raws {
		if r.err != nil {
			return nil, fmt.Errorf("dump-flows %s %s: flow %s", b.Socket, filter, r)
		}
		out[i] = r.flow
	}
	return out, nil
}

func dumpFlows(ctx context.Context, c *conn, filter ovs.Filter) ([]rawFlow, error) {
	parts, err := c.roundTrip(ctx, true, func(m *message, xid uint32) { m.flowStatsRequest(xid, filter) })
	if err != nil {
		return nil, err
	}
	var out []rawFlow
	for _, p := range parts {
		flows, err := decodeFlowStats(&reader{b: p})
		if err != nil {
			return nil, err
		}
		out = append(out, flows...)
	}
	return out, nil
}

// DumpGroups implements ovs.Bridge. A group outside the typed model is an
// error naming it.
func (b *Bridge) DumpGroups(ctx context.Context) ([]ovs.GroupEntry, error) {
	var raws []rawGroup
	err := b.do(ctx, "dump-groups", func(ctx context.Context, c *conn) error {
		var err error
		raws, err = dumpGroups(ctx, c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dump-groups %s: %w", b.Socket, err)
	}
	out := make([]ovs.GroupEntry, len(raws))
	for i, r := range raws {
		if r.err != nil {
			return nil, fmt.Errorf("dump-groups %s: %w", b.Socket, r.err)
		}
		out[i] = r.group
	}
	return out, nil
}

func dumpGroups(ctx context.Context, c *conn) ([]rawGroup, error) {
	parts, err := c.roundTrip(ctx, true, func(m *message, xid uint32) { m.groupDescRequest(xid) })
	if err != nil {
		return nil, err
	}
	var out []rawGroup
	for _, p := range parts {
		groups, err := decodeGroupDescs(&reader{b: p})
		if err != nil {
			return nil, err
		}
		out = append(out, groups...)
	}
	return out, nil
}

// ReplaceFlows implements ovs.Bridge: dump, diff in Go (ovs.PlanReplace),
// one bundle of only the differences.
func (b *Bridge) ReplaceFlows(ctx context.Context, flows []ovs.Flow) error {
	if err := b.replace(ctx, nil, true, flows); err != nil {
		return fmt.Errorf("replace-flows of %d flows on %s: %w", len(flows), b.Socket, err)
	}
	return nil
}

// ReplaceAll implements ovs.Bridge.
func (b *Bridge) ReplaceAll(ctx context.Context, groups []ovs.GroupEntry, flows []ovs.Flow) error {
	if err := b.replace(ctx, groups, false, flows); err != nil {
		return fmt.Errorf("replace of %d groups and %d flows on %s: %w", len(groups), len(flows), b.Socket, err)
	}
	return nil
}

func (b *Bridge) replace(ctx context.Context, groups []ovs.GroupEntry, keepGroups bool, flows []ovs.Flow) error {
	return b.do(ctx, "replace", func(ctx context.Context, c *conn) error {
		var curGroups map[uint32]ovs.GroupEntry
		if !keepGroups {
			raws, err := dumpGroups(ctx, c)
			if err != nil {
				return fmt.Errorf("dump-groups: %w", err)
			}
			if err := unreadableDesiredGroup(raws, groups); err != nil {
				return err
			}
			curGroups = currentGroups(raws)
		}
		raws, err := dumpFlows(ctx, c, ovs.Filter{})
		if err != nil {
			return fmt.Errorf("dump-flows: %w", err)
		}
		typed, others := currentFlows(raws)
		if err := unreadableDesiredFlow(others, flows); err != nil {
			return err
		}
		changes, err := ovs.PlanReplace(typed, curGroups, groups, keepGroups, flows)
		if err != nil {
			return err
		}
		if len(changes)+len(others) == 0 {
			return nil
		}
		return b.bundle(ctx, c, others, changes)
	})
}

// unreadableDesiredFlow returns an ErrUnsupported error if a dumped flow
// the codec cannot decode has the table, priority and cookie of a desired
// flow: most likely the codec cannot read back what it installed, so every
// sync would delete and re-add it. The caller then stops before sending
// anything (the agent falls back to ovs-ofctl).
func unreadableDesiredFlow(others []rawFlow, desired []ovs.Flow) error {
	type key struct {
		table    uint8
		priority uint16
		cookie   uint64
	}
	bad := map[key]rawFlow{}
	for _, r := range others {
		if r.err != nil {
			bad[key{r.table, r.priority, r.cookie}] = r
		}
	}
	if len(bad) == 0 {
		return nil
	}
	for _, f := range desired {
		if r, ok := bad[key{f.Table.ID, f.Priority, f.Cookie}]; ok {
			return fmt.Errorf("%w: OVS's dump of flow %s cannot be decoded: %v", ErrUnsupported, f, r.err)
		}
	}
	return nil
}

// unreadableDesiredGroup is unreadableDesiredFlow for groups (by ID).
func unreadableDesiredGroup(raws []rawGroup, desired []ovs.GroupEntry) error {
	for _, r := range raws {
		if r.err == nil {
			continue
		}
		for _, g := range desired {
			if g.ID == r.group.ID {
				return fmt.Errorf("%w: OVS's dump of group %s cannot be decoded: %v", ErrUnsupported, g, r.err)
			}
		}
	}
	return nil
}

// currentGroups maps the dumped groups by ID; a group outside the typed
// model keeps only its ID (type 0 equals no desired group), so the sync
// replaces or deletes it.
func currentGroups(raws []rawGroup) map[uint32]ovs.GroupEntry {
	m := make(map[uint32]ovs.GroupEntry, len(raws))
	for _, r := range raws {
		g := r.group
		if r.err != nil {
			g = ovs.GroupEntry{ID: g.ID}
		}
		m[g.ID] = g
	}
	return m
}

// currentFlows splits a dump for a sync: learned flows are left alone;
// flows outside the typed model and flows with timeouts (never desired)
// are deleted by their dumped match; the rest are diffed.
func currentFlows(raws []rawFlow) (typed []ovs.Flow, others []rawFlow) {
	typed = make([]ovs.Flow, 0, len(raws))
	for _, r := range raws {
		switch {
		case r.learned:
		case r.err != nil || r.timeouts:
			others = append(others, r)
		default:
			typed = append(typed, r.flow.Flow)
		}
	}
	return typed, others
}
