package ovs

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// GroupType is the type of an OpenFlow group.
type GroupType uint8

// Group types. The zero value is invalid.
const (
	// GroupSelect executes one bucket per packet, chosen by OVS.
	GroupSelect GroupType = iota + 1
	// GroupAll executes every bucket on a copy of the packet.
	GroupAll
)

func (t GroupType) String() string {
	switch t {
	case GroupSelect:
		return "select"
	case GroupAll:
		return "all"
	}
	return "type" + strconv.Itoa(int(t))
}

// MaxGroupID is the largest group ID OpenFlow allows (OFPG_MAX); IDs above
// it are reserved.
const MaxGroupID = 0xffffff00

// GroupEntry is one OpenFlow group: an ID, a type and buckets of actions.
// Flows reach it with GroupAction(ID). It is a value; its text form is the
// one `ovs-ofctl -O OpenFlow13 dump-groups` prints
// ("group_id=7,type=select,bucket=weight:100,actions=output:2"), which is
// also what add-group accepts.
//
// Group IDs are allocated by callers (the feature that owns the group, e.g.
// one group per Service port); keep them stable across agent restarts — a
// function of the owner, or recorded — so that a restarted agent's full sync
// finds its groups unchanged instead of rewriting them. 1..MaxGroupID are
// valid.
//
// Selection method: OpenFlow 1.3, which this package speaks, cannot carry
// selection_method (OVS silently drops it), so select groups use OVS's
// default: dp_hash over the symmetric L3/L4 5-tuple (OVS ≥ 2.10, up to 256
// buckets with equal-enough weights; above that OVS falls back to the hash
// method over default fields). That is the right choice for TCP and SCTP:
// with ct(nat) only a connection's first packet goes through the group
// (conntrack pins the rest), a retransmitted first packet hashes to the
// same bucket, and dp_hash lets new connections reuse the same datapath
// flows instead of one upcall per source port. It is wrong for UDP on the
// userspace datapath, which computes that hash (hash(sym_l4(0)))
// WITHOUT the UDP ports (OVS 3.1, flow_hash_symmetric_l3l4 with
// inc_udp_ports=false): every UDP flow from one client to one address
// lands in one bucket (40 of 40 from each client in the lab). Choose
// among UDP endpoints with Multipath (symmetric_l3l4+udp) instead.
//
// Bucket actions are an OpenFlow action set to OVS: it keeps the set, load
// and move actions and the LAST output, group, resubmit or ct, and drops
// everything else without a word (a learn in a bucket never runs).
// ValidateGroupEntry refuses what would be dropped.
type GroupEntry struct {
	ID      uint32
	Type    GroupType
	Buckets []Bucket
}

// Bucket is one bucket of a group. Weight is for select groups and must be
// at least 1 (OVS never picks a weight-0 bucket: remove it instead); all
// groups take no weight (leave it 0). Empty Actions drop the packet copy.
// Weight 1 is OVS's default and is not rendered ("bucket=actions=…").
type Bucket struct {
	Weight  uint16
	Actions []Action
}

// SelectGroup returns a select group.
func SelectGroup(id uint32, buckets ...Bucket) GroupEntry {
	return GroupEntry{ID: id, Type: GroupSelect, Buckets: buckets}
}

// AllGroup returns an all group (every bucket gets a copy of the packet).
func AllGroup(id uint32, buckets ...Bucket) GroupEntry {
	return GroupEntry{ID: id, Type: GroupAll, Buckets: buckets}
}

// NewBucket returns a bucket of weight w (select groups).
func NewBucket(w uint16, actions ...Action) Bucket { return Bucket{Weight: w, Actions: actions} }

// BucketOf returns a bucket without weight (all groups).
func BucketOf(actions ...Action) Bucket { return Bucket{Actions: actions} }

// String renders the group as OVS's dump-groups prints it (and add-group
// accepts it).
func (g GroupEntry) String() string {
	var b strings.Builder
	b.WriteString("group_id=" + strconv.FormatUint(uint64(g.ID), 10) + ",type=" + g.Type.String())
	for _, bk := range g.Buckets {
		b.WriteString(",bucket=")
		if g.Type == GroupSelect && bk.Weight != 1 {
			b.WriteString("weight:" + strconv.Itoa(int(bk.Weight)) + ",")
		}
		b.WriteString("actions=" + actionsString(bk.Actions))
	}
	return b.String()
}

// Equal reports whether g and h render alike.
func (g GroupEntry) Equal(h GroupEntry) bool { return g.String() == h.String() }

// referencedGroups returns the group IDs that actions output to.
func referencedGroups(actions []Action) []uint32 {
	var ids []uint32
	for _, a := range actions {
		if g, ok := a.(Group); ok {
			ids = append(ids, g.ID)
		}
	}
	return ids
}

// ValidateGroupEntry checks g the way OVS would when adding it, and more
// strictly: a valid ID and type; select buckets weigh at least 1, all
// buckets have no weight; bucket actions are valid flow actions except
// goto_table and conjunction (OVS rejects them in buckets), and resubmit or
// ct(table=) go to tables of the pipeline. Where those tables lie relative to
// the flows that use the group is checked by ValidateGroups.
func ValidateGroupEntry(g GroupEntry) error {
	if g.ID == 0 || g.ID > MaxGroupID {
		return fmt.Errorf("group %d: ID must be 1..%#x", g.ID, MaxGroupID)
	}
	if g.Type != GroupSelect && g.Type != GroupAll {
		return fmt.Errorf("group %d: unknown type %d", g.ID, g.Type)
	}
	for i, bk := range g.Buckets {
		if err := validateBucket(g.Type, bk); err != nil {
			return fmt.Errorf("group %d bucket %d: %w", g.ID, i, err)
		}
	}
	return nil
}

func validateBucket(t GroupType, bk Bucket) error {
	if t == GroupSelect && bk.Weight == 0 {
		return errors.New("select bucket of weight 0 is never chosen; remove it")
	}
	if t == GroupAll && bk.Weight != 0 {
		return errors.New("only select groups can have bucket weights")
	}
	terminals := 0
	for _, a := range bk.Actions {
		switch a.(type) {
		case OutputPort, OutputReg, OutputInPort, Group, Resubmit, ConnTrack:
			terminals++
		}
		switch a := a.(type) {
		case GotoTable, Conjunction:
			return fmt.Errorf("%s is not allowed in a bucket", a)
		case Learn, Multipath:
			// OVS executes bucket actions as an action set (see
			// GroupEntry) and drops these without a word.
			return fmt.Errorf("%s: OVS drops it from group buckets (action-set semantics); put it in the flow the bucket resubmits to", a)
		case Drop:
			if len(bk.Actions) > 1 {
				return errors.New("drop must be the only action")
			}
		case Resubmit:
			if _, ok := TableByID(a.Table.ID); !ok {
				return fmt.Errorf("%s: unknown table %d", a, a.Table.ID)
			}
		}
		if err := validateAction(a); err != nil {
			return err
		}
	}
	if terminals > 1 {
		return errors.New("more than one output, group, resubmit or ct: OVS runs bucket actions as an action set and keeps only the last")
	}
	return nil
}

// ValidateGroups checks groups together with the flows (and groups) that
// use them and reports every problem at once: invalid groups
// (ValidateGroupEntry), duplicate IDs, a group action to a group not in
// groups, a group that reaches itself, a bucket's resubmit or ct(table=)
// that would jump back behind a flow using the group, and bucket actions
// using header fields the flow's packets lack (a learn on TCP ports from a
// udp flow). Use it with ValidatePipeline on the same desired state.
func ValidateGroups(groups []GroupEntry, flows []Flow) error {
	var errs []error
	byID := map[uint32]GroupEntry{}
	for _, g := range groups {
		if err := ValidateGroupEntry(g); err != nil {
			errs = append(errs, err)
		}
		if _, dup := byID[g.ID]; dup {
			errs = append(errs, fmt.Errorf("group %d defined twice", g.ID))
		}
		byID[g.ID] = g
	}
	for _, g := range sortedGroups(groups) {
		errs = append(errs, checkGroupRefs(byID, g.ID, nil)...)
	}
	for _, f := range flows {
		for _, id := range referencedGroups(f.Actions) {
			errs = append(errs, checkFlowGroup(byID, f, id)...)
		}
	}
	return errors.Join(errs...)
}

// checkGroupRefs follows group actions in the buckets of group id.
func checkGroupRefs(byID map[uint32]GroupEntry, id uint32, path []uint32) []error {
	if slices.Contains(path, id) {
		return []error{fmt.Errorf("group %d reaches itself (%v)", id, append(path, id))}
	}
	var errs []error
	for _, bk := range byID[id].Buckets {
		for _, next := range referencedGroups(bk.Actions) {
			if _, ok := byID[next]; !ok {
				errs = append(errs, fmt.Errorf("group %d: bucket outputs to missing group %d", id, next))
				continue
			}
			errs = append(errs, checkGroupRefs(byID, next, append(path, id))...)
		}
	}
	return errs
}

// checkFlowGroup checks a flow's group action: the group exists, and its
// buckets (and nested groups) never jump behind the flow's table.
func checkFlowGroup(byID map[uint32]GroupEntry, f Flow, id uint32) []error {
	g, ok := byID[id]
	if !ok {
		return []error{fmt.Errorf("flow %q: outputs to missing group %d", f, id)}
	}
	var errs []error
	for _, bk := range g.Buckets {
		for _, a := range bk.Actions {
			t, ok := actionTarget(a)
			if ok && t.ID < f.Table.ID {
				errs = append(errs, fmt.Errorf("flow %q: group %d: %s jumps back from table %s", f, id, a, f.Table.Named()))
			}
			if err := checkActionPrerequisites(a, f.Proto()); err != nil {
				errs = append(errs, fmt.Errorf("flow %q: group %d: %w", f, id, err))
			}
		}
	}
	return errs
}

// actionTarget returns the table an action continues in, if any.
func actionTarget(a Action) (Table, bool) {
	switch a := a.(type) {
	case Resubmit:
		return a.Table, true
	case ConnTrack:
		return a.Table, a.Recirc
	}
	return Table{}, false
}

func sortedGroups(groups []GroupEntry) []GroupEntry {
	out := slices.Clone(groups)
	slices.SortFunc(out, func(a, b GroupEntry) int { return int(int64(a.ID) - int64(b.ID)) })
	return out
}

// ParseGroupDump parses `ovs-ofctl -O OpenFlow13 dump-groups` output; the
// header line is skipped.
func ParseGroupDump(text string) ([]GroupEntry, error) {
	var groups []GroupEntry
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "OFPST_GROUP_DESC") || strings.HasPrefix(line, "NXST_GROUP_DESC") {
			continue
		}
		g, err := ParseGroup(line)
		if err != nil {
			return nil, fmt.Errorf("dump-groups line %d: %w", n+1, err)
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// ParseGroup parses one group as GroupEntry.String renders it or
// dump-groups prints it (bucket_id is accepted and ignored; in a select
// group a bucket without weight has weight 1).
func ParseGroup(s string) (GroupEntry, error) {
	var g GroupEntry
	tokens := splitTopLevel(s)
	i := 0
	for ; i < len(tokens) && !strings.HasPrefix(tokens[i], "bucket="); i++ {
		if err := g.parseHeadToken(tokens[i]); err != nil {
			return GroupEntry{}, fmt.Errorf("group %q: %w", s, err)
		}
	}
	if !strings.HasPrefix(s, "group_id=") || g.Type == 0 {
		return GroupEntry{}, fmt.Errorf("group %q: want group_id=N,type=T first", s)
	}
	for i < len(tokens) {
		j := i + 1
		for j < len(tokens) && !strings.HasPrefix(tokens[j], "bucket=") {
			j++
		}
		tokens[i] = strings.TrimPrefix(tokens[i], "bucket=")
		b, err := parseBucket(g.Type, tokens[i:j])
		if err != nil {
			return GroupEntry{}, fmt.Errorf("group %q bucket %d: %w", s, len(g.Buckets), err)
		}
		g.Buckets = append(g.Buckets, b)
		i = j
	}
	return g, nil
}

// parseBucket parses one bucket's tokens: parameters, then "actions=A" and
// the rest of the actions.
func parseBucket(t GroupType, tokens []string) (Bucket, error) {
	var b Bucket
	if t == GroupSelect {
		b.Weight = 1
	}
	for i, tok := range tokens {
		if acts, ok := strings.CutPrefix(tok, "actions="); ok {
			var err error
			b.Actions, err = parseActionList(append([]string{acts}, tokens[i+1:]...))
			return b, err
		}
		if err := parseBucketParam(&b, tok); err != nil {
			return b, err
		}
	}
	return b, nil
}

func (g *GroupEntry) parseHeadToken(tok string) error {
	key, val, _ := strings.Cut(tok, "=")
	switch key {
	case "group_id":
		n, err := strconv.ParseUint(val, 10, 32)
		g.ID = uint32(n)
		return err
	case "type":
		switch val {
		case "select":
			g.Type = GroupSelect
		case "all":
			g.Type = GroupAll
		default:
			return fmt.Errorf("unsupported group type %q", val)
		}
		return nil
	}
	return fmt.Errorf("unsupported group field %q", tok)
}

func parseBucketParam(b *Bucket, tok string) error {
	key, val, ok := strings.Cut(tok, ":")
	switch {
	case ok && key == "weight":
		n, err := strconv.ParseUint(val, 10, 16)
		b.Weight = uint16(n)
		return err
	case ok && key == "bucket_id":
		return nil
	}
	return fmt.Errorf("unsupported bucket parameter %q", tok)
}

func parseActionList(parts []string) ([]Action, error) {
	var out []Action
	for _, p := range parts {
		a, err := parseAction(p)
		if err != nil {
			return nil, err
		}
		if _, drop := a.(Drop); !drop {
			out = append(out, a)
		}
	}
	return out, nil
}
