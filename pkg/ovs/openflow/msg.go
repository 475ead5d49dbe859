package openflow

import (
	"fmt"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// This file encodes the messages the bridge sends (hello, flow and group
// mods, bundle control and add, multipart requests, barrier) and decodes
// the replies it reads (flow stats, group descriptions).

func (m *message) hello(xid uint32) {
	off := m.start(typeHello, xid)
	m.u16(1) // OFPHET_VERSIONBITMAP
	m.u16(8)
	m.u32(1 << version13)
	m.finish(off)
}

func (m *message) barrier(xid uint32) { m.finish(m.start(typeBarrierRequest, xid)) }

// flowHead appends a flow mod up to its match.
func (m *message) flowHead(cmd uint8, table uint8, priority uint16, cookie, cookieMask uint64) {
	m.u64(cookie)
	m.u64(cookieMask)
	m.u8(table)
	m.u8(cmd)
	m.u16(0) // idle_timeout
	m.u16(0) // hard_timeout
	m.u16(priority)
	m.u32(bufferNone)
	m.u32(portAny)
	m.u32(groupAny)
	m.u16(0) // flags
	m.zeros(2)
}

// change appends the flow or group mod of one bundle change.
func (m *message) change(xid uint32, c ovs.Change) {
	switch c.Op {
	case ovs.OpAdd:
		off := m.start(typeFlowMod, xid)
		m.flowHead(flowAdd, c.Flow.Table.ID, c.Flow.Priority, c.Flow.Cookie, 0)
		m.match(c.Flow.Match)
		m.instructions(c.Flow.Actions)
		m.finish(off)
	case ovs.OpDeleteStrict:
		off := m.start(typeFlowMod, xid)
		m.flowHead(flowDeleteStrict, c.Flow.Table.ID, c.Flow.Priority, 0, 0)
		m.match(c.Flow.Match)
		m.finish(off)
	case ovs.OpDelete:
		off := m.start(typeFlowMod, xid)
		table := uint8(tableAll)
		if c.Filter.Table != nil {
			table = c.Filter.Table.ID
		}
		m.flowHead(flowDelete, table, 0, c.Filter.Cookie.Cookie&c.Filter.Cookie.Mask, c.Filter.Cookie.Mask)
		m.match(nil)
		m.finish(off)
	case ovs.OpAddGroup:
		m.groupMod(xid, groupCmdAddOrMod, c.Group)
	case ovs.OpDeleteGroup:
		m.groupMod(xid, groupCmdDelete, ovs.GroupEntry{ID: c.Group.ID, Type: ovs.GroupAll})
	default:
		m.fail(fmt.Errorf("unknown change op %d", c.Op))
	}
}

// rawDeleteStrict appends a strict delete of a dumped flow by its match as
// OVS encoded it (a flow outside the typed model).
func (m *message) rawDeleteStrict(xid uint32, f rawFlow) {
	off := m.start(typeFlowMod, xid)
	m.flowHead(flowDeleteStrict, f.table, f.priority, 0, 0)
	m.b = append(m.b, f.match...)
	m.finish(off)
}

func (m *message) groupMod(xid uint32, cmd uint16, g ovs.GroupEntry) {
	off := m.start(typeGroupMod, xid)
	m.u16(cmd)
	switch g.Type {
	case ovs.GroupAll:
		m.u8(groupTypeAll)
	case ovs.GroupSelect:
		m.u8(groupTypeSelect)
	default:
		m.fail(fmt.Errorf("group %d: unknown type %d", g.ID, g.Type))
	}
	m.u8(0)
	m.u32(g.ID)
	for _, bk := range g.Buckets {
		start := len(m.b)
		m.u16(0)
		m.u16(bk.Weight)
		m.u32(portAny)
		m.u32(groupAny)
		m.zeros(4)
		m.actions(bk.Actions)
		m.setU16(start, uint16(len(m.b)-start))
	}
	m.finish(off)
}

// bundleControl appends an ONF bundle control message of type typ.
func (m *message) bundleControl(xid, id uint32, typ uint16) {
	off := m.start(typeExperimenter, xid)
	m.u32(onfExperimenter)
	m.u32(onfBundleControl)
	m.u32(id)
	m.u16(typ)
	m.u16(bundleFlags)
	m.finish(off)
}

// bundleAdd appends an ONF bundle add message wrapping the message inner
// appends; both carry xid, as OVS requires.
func (m *message) bundleAdd(xid, id uint32, inner func()) {
	off := m.start(typeExperimenter, xid)
	m.u32(onfExperimenter)
	m.u32(onfBundleAdd)
	m.u32(id)
	m.u16(0)
	m.u16(bundleFlags)
	inner()
	m.finish(off)
}

// flowStatsRequest appends a multipart request for the flows filter
// selects.
func (m *message) flowStatsRequest(xid uint32, filter ovs.Filter) {
	off := m.start(typeMultipartReq, xid)
	m.u16(multipartFlow)
	m.u16(0)
	m.zeros(4)
	table := uint8(tableAll)
	if filter.Table != nil {
		table = filter.Table.ID
	}
	m.u8(table)
	m.zeros(3)
	m.u32(portAny)
	m.u32(groupAny)
	m.zeros(4)
	m.u64(filter.Cookie.Cookie & filter.Cookie.Mask)
	m.u64(filter.Cookie.Mask)
	m.match(nil)
	m.finish(off)
}

func (m *message) groupDescRequest(xid uint32) {
	off := m.start(typeMultipartReq, xid)
	m.u16(multipartGroupDesc)
	m.u16(0)
	m.zeros(4)
	m.finish(off)
}

// rawFlow is one flow of a flow stats reply: decoded into the typed model
// when possible (err nil), with what a strict delete needs otherwise.
type rawFlow struct {
	flow              ovs.DumpedFlow
	idle, hard        uint16
	table             uint8
	priority          uint16
	cookie            uint64
	match             []byte // the ofp_match as OVS sent it, padded
	err               error  // why the flow is outside the typed model
	timeouts, learned bool
}

// decodeFlowStats decodes the entries of a flow stats reply body.
func decodeFlowStats(r *reader) ([]rawFlow, error) {
	var out []rawFlow
	for r.left() > 0 {
		length := int(r.u16())
		if r.err != nil || length < 56 {
			return nil, fmt.Errorf("bad flow stats entry (length %d)", length)
		}
		out = append(out, decodeFlowStat(r.sub(length-2)))
		if r.err != nil {
			return nil, r.err
		}
	}
	return out, nil
}

func decodeFlowStat(r *reader) rawFlow {
	var f rawFlow
	f.table = r.u8()
	r.skip(1)
	sec, nsec := r.u32(), r.u32()
	f.priority, f.idle, f.hard = r.u16(), r.u16(), r.u16()
	r.skip(6) // flags, pad
	f.cookie = r.u64()
	packets, bytes := r.u64(), r.u64()
	t, _ := ovs.TableByID(f.table)
	f.flow = ovs.DumpedFlow{
		Flow:  ovs.Flow{Table: t, Priority: f.priority, Cookie: f.cookie},
		Stats: ovs.FlowStats{Duration: time.Duration(sec)*time.Second + time.Duration(nsec), Packets: packets, Bytes: bytes},
	}
	f.timeouts = f.idle != 0 || f.hard != 0
	f.learned = ovs.CookieCategoryOf(f.cookie) == ovs.CookieLearned
	matchStart := r.b
	match, err := decodeMatch(r)
	f.match = matchStart[:len(matchStart)-r.left()]
	if err == nil {
		f.flow.Match = match
		f.flow.Actions, err = decodeInstructions(r)
	}
	if err == nil && r.err != nil {
		err = r.err
	}
	f.err = err
	return f
}

// String describes a flow for errors (the typed text when decoded).
func (f rawFlow) String() string {
	if f.err == nil {
		return f.flow.String()
	}
	return fmt.Sprintf("table=%d,priority=%d,cookie=%#x (%v)", f.table, f.priority, f.cookie, f.err)
}

// rawGroup is one group of a group description reply.
type rawGroup struct {
	group ovs.GroupEntry
	err   error
}

func decodeGroupDescs(r *reader) ([]rawGroup, error) {
	var out []rawGroup
	for r.left() > 0 {
		length := int(r.u16())
		if r.err != nil || length < 8 {
			return nil, fmt.Errorf("bad group description (length %d)", length)
		}
		out = append(out, decodeGroupDesc(r.sub(length-2)))
		if r.err != nil {
			return nil, r.err
		}
	}
	return out, nil
}

func decodeGroupDesc(r *reader) rawGroup {
	typ := r.u8()
	r.skip(1)
	g := rawGroup{group: ovs.GroupEntry{ID: r.u32()}}
	switch typ {
	case groupTypeAll:
		g.group.Type = ovs.GroupAll
	case groupTypeSelect:
		g.group.Type = ovs.GroupSelect
	default:
		g.err = fmt.Errorf("group %d: unsupported type %d", g.group.ID, typ)
		return g
	}
	for r.left() > 0 && g.err == nil {
		length := int(r.u16())
		if r.err != nil || length < 16 {
			g.err = fmt.Errorf("group %d: bad bucket length %d", g.group.ID, length)
			break
		}
		b := r.sub(length - 2)
		bk := ovs.Bucket{Weight: b.u16()}
		b.skip(12) // watch_port, watch_group, pad
		acts, err := decodeActions(b)
		if err != nil {
			g.err = fmt.Errorf("group %d: %w", g.group.ID, err)
			break
		}
		bk.Actions = acts
		g.group.Buckets = append(g.group.Buckets, bk)
	}
	return g
}
