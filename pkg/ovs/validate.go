package ovs

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ValidateFlow checks f the way OVS would when adding it, and more strictly:
// the table must be part of the pipeline; match keys unique; address and
// port fields need their protocol (nw_src without ip, tp_dst without
// tcp/udp/sctp are rejected — OVS would reject or silently widen them);
// ct_nw_*/ct_tp_* need a ct_state implying a connection (and ct_tp_* need
// ct_nw_proto: OVS silently drops them otherwise); masked values may not
// have bits outside their mask; goto_table must jump forward, resubmit and
// ct(table=) may not go backwards (except the resubmits declared in
// resubmit.go); drop and conjunction actions stand alone; every other
// action passes its own checks (validate_action.go).
func ValidateFlow(f Flow) error {
	if _, ok := TableByID(f.Table.ID); !ok {
		return fmt.Errorf("flow %q: unknown table %d", f, f.Table.ID)
	}
	if err := validateMatch(f.Match); err != nil {
		return fmt.Errorf("flow %q: %w", f, err)
	}
	if err := validateActions(f); err != nil {
		return fmt.Errorf("flow %q: %w", f, err)
	}
	return nil
}

// matchContext is what prerequisites depend on.
type matchContext struct {
	proto   Proto
	ct      CtState
	ctProto uint8
}

func validateMatch(match []MatchField) error {
	seen := map[string]bool{}
	var mc matchContext
	for _, m := range match {
		if seen[m.Key()] {
			return fmt.Errorf("field %s matched twice", m.Key())
		}
		seen[m.Key()] = true
		switch m := m.(type) {
		case Proto:
			mc.proto = m
		case CtState:
			mc.ct = m
		case CtNwProto:
			mc.ctProto = uint8(m)
		}
	}
	for _, m := range match {
		if err := checkPrerequisite(m, mc); err != nil {
			return err
		}
		if mm, ok := m.(maskedMatch); ok && mm.outside() {
			return fmt.Errorf("%s: value has bits outside the mask (does not fit the field)", m)
		}
	}
	return nil
}

func checkPrerequisite(m MatchField, mc matchContext) error {
	need := ""
	switch m.Key() {
	case "nw_src", "nw_dst", "nw_proto":
		if !mc.proto.IsIP() {
			need = "ip"
		}
	case "arp_spa", "arp_tpa", "arp_sha", "arp_tha":
		if mc.proto != ProtoARP {
			need = "arp"
		}
	case "tp_src", "tp_dst":
		if !mc.proto.isTransport() {
			need = "tcp, udp or sctp"
		}
	case "ct_nw_src", "ct_nw_dst", "ct_nw_proto", "ct_tp_src", "ct_tp_dst":
		if !mc.proto.IsIP() || !ctValid(mc.ct) {
			need = "ip and a ct_state implying a connection (+new, +est, +rel, +rpl, +snat, +dnat or +trk-inv)"
		}
	}
	if need != "" {
		return fmt.Errorf("%s requires %s", m, need)
	}
	if n, ok := m.(NwProto); ok && mc.proto != ProtoIP {
		return fmt.Errorf("nw_proto=%d with %s: use the protocol keyword alone", n, mc.proto)
	}
	if p, ok := m.(PortMatch); ok && strings.HasPrefix(p.Field, "ct_tp_") && mc.ctProto != 6 && mc.ctProto != 17 && mc.ctProto != 132 {
		return fmt.Errorf("%s requires ct_nw_proto=6, 17 or 132 (OVS drops it silently otherwise)", m)
	}
	return nil
}

func validateActions(f Flow) error {
	conj, other := 0, 0
	for i, a := range f.Actions {
		switch a := a.(type) {
		case Conjunction:
			conj++
			if a.N < 2 || a.N > 64 || a.K < 1 || a.K > a.N {
				return fmt.Errorf("%s: need 1 <= k <= n, 2 <= n <= 64", a)
			}
			continue
		case Drop:
			if len(f.Actions) > 1 {
				return errors.New("drop must be the only action")
			}
			continue
		case GotoTable:
			if i != len(f.Actions)-1 {
				return fmt.Errorf("%s must be the last action", a)
			}
			if err := checkTarget(f.Table, a.Table, a, false); err != nil {
				return err
			}
		}
		other++
		if r, ok := a.(Resubmit); ok {
			if err := checkResubmit(f.Table, r); err != nil {
				return err
			}
		} else if t, ok := actionTarget(a); ok {
			if err := checkTarget(f.Table, t, a, true); err != nil {
				return err
			}
		}
		if err := validateAction(a); err != nil {
			return err
		}
		if err := checkActionPrerequisites(a, f.Proto()); err != nil {
			return err
		}
	}
	if conj > 0 && other > 0 {
		return errors.New("conjunction actions cannot be mixed with other actions")
	}
	if conj > 0 && hasKey(f.Match, "conj_id") {
		return errors.New("a conj_id flow cannot itself contribute to a conjunction")
	}
	return nil
}

func checkTarget(from, to Table, a Action, sameOK bool) error {
	if _, ok := TableByID(to.ID); !ok {
		return fmt.Errorf("%s: unknown table %d", a, to.ID)
	}
	if to.ID < from.ID || (to.ID == from.ID && !sameOK) {
		return fmt.Errorf("%s: backward jump from table %s", a, from.Named())
	}
	return nil
}

func hasKey(match []MatchField, key string) bool {
	for _, m := range match {
		if m.Key() == key {
			return true
		}
	}
	return false
}

// ValidatePipeline checks a complete desired flow set and reports every
// problem at once (errors.Join): invalid flows (ValidateFlow), two flows with
// the same table, priority and match, every table of the pipeline without a
// priority-0 flow with an empty match (the explicit final drop, or the
// table's documented default), a Version table without exactly one note
// flow, conjunctions missing a dimension, and conjunctive flows at one
// priority that one packet could both match (OVS leaves that undefined).
func ValidatePipeline(flows []Flow) error {
	var errs []error
	for _, f := range flows {
		if err := ValidateFlow(f); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, checkDuplicates(flows)...)
	errs = append(errs, checkFinalFlows(flows)...)
	errs = append(errs, checkConjunctions(flows)...)
	errs = append(errs, checkBackResubmitTargets(flows)...)
	return errors.Join(errs...)
}

func checkDuplicates(flows []Flow) []error {
	var errs []error
	seen := map[string]Flow{}
	for _, f := range flows {
		k := f.Key()
		if prev, ok := seen[k]; ok {
			errs = append(errs, fmt.Errorf("flows %q and %q have the same table, priority and match", prev, f))
			continue
		}
		seen[k] = f
	}
	return errs
}

func checkFinalFlows(flows []Flow) []error {
	final, notes := map[uint8]bool{}, 0
	for _, f := range flows {
		if f.Priority == 0 && len(f.Match) == 0 {
			final[f.Table.ID] = true
		}
		if f.Table == TableVersion && len(f.Actions) == 1 {
			if _, ok := f.Actions[0].(Note); ok {
				notes++
			}
		}
	}
	var errs []error
	for _, t := range Tables {
		if t != TableVersion && !final[t.ID] {
			errs = append(errs, fmt.Errorf("table %s has no priority-0 final flow (explicit drop)", t.Named()))
		}
	}
	if notes != 1 {
		errs = append(errs, fmt.Errorf("table %s must hold exactly one note flow, has %d", TableVersion.Named(), notes))
	}
	return errs
}

// levelKey identifies one priority level of one table.
type levelKey struct {
	table    uint8
	priority uint16
}

// conjunction collects, for one conj_id at one level, its clause flows per
// dimension and the match of the conj_id flows themselves.
type conjunction struct {
	n      uint8
	dims   map[uint8][][]MatchField
	finals [][]MatchField
}

func checkConjunctions(flows []Flow) []error {
	levels := collectConjunctions(flows)
	var errs []error
	keys := make([]levelKey, 0, len(levels))
	for k := range levels {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].table < keys[j].table || keys[i].table == keys[j].table && keys[i].priority > keys[j].priority
	})
	for _, lk := range keys {
		errs = append(errs, checkLevel(lk, levels[lk])...)
	}
	return errs
}

func collectConjunctions(flows []Flow) map[levelKey]map[uint32]*conjunction {
	levels := map[levelKey]map[uint32]*conjunction{}
	get := func(f Flow, id uint32) *conjunction {
		lk := levelKey{f.Table.ID, f.Priority}
		if levels[lk] == nil {
			levels[lk] = map[uint32]*conjunction{}
		}
		if levels[lk][id] == nil {
			levels[lk][id] = &conjunction{dims: map[uint8][][]MatchField{}}
		}
		return levels[lk][id]
	}
	for _, f := range flows {
		for _, a := range f.Actions {
			if c, ok := a.(Conjunction); ok {
				cj := get(f, c.ID)
				cj.n = c.N
				cj.dims[c.K] = append(cj.dims[c.K], f.Match)
			}
		}
		for _, m := range f.Match {
			if id, ok := m.(ConjID); ok {
				cj := get(f, uint32(id))
				cj.finals = append(cj.finals, f.Match)
			}
		}
	}
	return levels
}

func checkLevel(lk levelKey, conjs map[uint32]*conjunction) []error {
	var errs []error
	ids := make([]uint32, 0, len(conjs))
	for id, c := range conjs {
		ids = append(ids, id)
		for k := uint8(1); k <= c.n; k++ {
			if len(c.dims[k]) == 0 {
				errs = append(errs, fmt.Errorf("table %d priority %d: conjunction %d has no flow for dimension %d/%d", lk.table, lk.priority, id, k, c.n))
			}
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for i, a := range ids {
		for _, b := range ids[i+1:] {
			if conjunctionsOverlap(conjs[a], conjs[b]) {
				errs = append(errs, fmt.Errorf("table %d priority %d: conjunctions %d and %d can match the same packet", lk.table, lk.priority, a, b))
			}
		}
	}
	return errs
}
