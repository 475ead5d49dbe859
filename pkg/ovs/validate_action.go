package ovs

import (
	"errors"
	"fmt"
	"slices"
)

// validateAction checks one action on its own (also in group buckets):
// ct arguments, loads and moves that fit their fields and stay out of
// ct_mark/ct_label (OVS only writes those inside ct(commit,exec(…))), group
// IDs and learn specs.
func validateAction(a Action) error {
	switch a := a.(type) {
	case ConnTrack:
		return a.validate()
	case Load:
		if err := checkWritable(a.Field); err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
		if a.Field.Width() > 64 || !a.Field.fits(a.Value) {
			return fmt.Errorf("%s: value %#x does not fit %d bits", a, a.Value, a.Field.Width())
		}
	case Move:
		src, dst := a.Src.bits(), a.Dst.bits()
		if src.Width() != dst.Width() {
			return fmt.Errorf("%s: source has %d bits, destination %d", a, src.Width(), dst.Width())
		}
		return checkWritable(dst)
	case Group:
		if a.ID == 0 || a.ID > MaxGroupID {
			return fmt.Errorf("%s: group ID must be 1..%#x", a, MaxGroupID)
		}
	case Learn:
		if err := validateLearn(a); err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
	case Multipath:
		return validateMultipath(a)
	}
	return nil
}

var (
	multipathFields     = []string{"eth_src", "symmetric_l4", "symmetric_l3l4", "symmetric_l3l4+udp", "nw_src", "nw_dst", "symmetric_l2", "symmetric_l3"}
	multipathAlgorithms = []string{"modulo_n", "hash_threshold", "hrw", "iter_hash"}
)

func validateMultipath(a Multipath) error {
	switch {
	case !slices.Contains(multipathFields, a.Fields):
		return fmt.Errorf("%s: unknown fields %q", a, a.Fields)
	case !slices.Contains(multipathAlgorithms, a.Algorithm):
		return fmt.Errorf("%s: unknown algorithm %q", a, a.Algorithm)
	case a.NLinks == 0:
		return fmt.Errorf("%s: no links", a)
	case a.Dst.Width() < 64 && uint64(a.NLinks-1)>>a.Dst.Width() != 0:
		return fmt.Errorf("%s: %d links do not fit %d bits", a, a.NLinks, a.Dst.Width())
	}
	return checkWritable(a.Dst)
}

func checkWritable(b BitField) error {
	switch b.Field {
	case FieldCtMark, FieldCtLabel:
		return fmt.Errorf("%s can only be set in ct(commit,exec(…)) (use ConnTrack.WithMark)", b.Field)
	case FieldEthType, FieldIPProto:
		return fmt.Errorf("%s is read-only", b.Field)
	}
	return nil
}

// checkActionPrerequisites checks that header fields an action reads or
// writes exist in the packets the flow matches (OVS rejects the flow
// otherwise: "lacks correct prerequisites").
func checkActionPrerequisites(a Action, proto Proto) error {
	var fields []BitField
	switch a := a.(type) {
	case SetIPSrc, SetIPDst:
		fields = append(fields, FieldIPSrc.bits())
	case Load:
		fields = append(fields, a.Field)
	case Move:
		fields = append(fields, a.Src.bits(), a.Dst.bits())
	case Learn:
		for _, s := range a.Specs {
			if s.Kind == LearnMatchField || s.Kind == LearnLoadField || s.Kind == LearnOutputField {
				fields = append(fields, s.Src)
			}
		}
	}
	for _, b := range fields {
		if !fieldPresent(b.Field, proto) {
			return fmt.Errorf("%s uses %s, which packets matched by %q do not have", a, b.Field, proto)
		}
	}
	return nil
}

// fieldPresent reports whether packets of protocol p (0: any) carry field f.
func fieldPresent(f FieldID, p Proto) bool {
	switch f {
	case FieldIPSrc, FieldIPDst, FieldIPProto:
		return p.IsIP()
	case FieldTCPSrc, FieldTCPDst:
		return p == ProtoTCP
	case FieldUDPSrc, FieldUDPDst:
		return p == ProtoUDP
	case FieldSCTPSrc, FieldSCTPDst:
		return p == ProtoSCTP
	}
	return true
}

// validateLearn checks a learn action on its own: a pipeline table, a cookie
// of category CookieLearned, and specs whose widths agree, whose values fit,
// whose learned matches have their prerequisites (eth_type before IP fields,
// nw_proto before ports) and that load nothing into ct_mark/ct_label (OVS
// accepts such a learn, but the flows it learns break dump-flows).
func validateLearn(l Learn) error {
	if _, ok := TableByID(l.Table.ID); !ok {
		return fmt.Errorf("unknown table %d", l.Table.ID)
	}
	if CookieCategoryOf(l.Cookie) != CookieLearned {
		return errors.New("cookie must be of category CookieLearned (CookieFor(CookieLearned, owner)), or full syncs delete the learned flows")
	}
	if len(l.Specs) == 0 {
		return errors.New("no specs")
	}
	var proto Proto
	for i, s := range l.Specs {
		if err := validateLearnSpec(s, proto); err != nil {
			return fmt.Errorf("spec %d (%s): %w", i, s, err)
		}
		proto = learnedProtoSoFar(proto, s)
	}
	return nil
}

func validateLearnSpec(s LearnSpec, proto Proto) error {
	switch s.Kind {
	case LearnMatchField, LearnMatchValue:
		if s.Kind == LearnMatchField && s.Src.Width() != s.Dst.Width() {
			return errors.New("source and destination widths differ")
		}
		if s.Kind == LearnMatchValue && !s.Dst.fits(s.Value) {
			return errors.New("value does not fit the field")
		}
		if s.Dst.Field != FieldEthType && s.Dst.Field != FieldIPProto && !fieldPresent(s.Dst.Field, proto) {
			return fmt.Errorf("learned match on %s needs eth_type/nw_proto specs before it", s.Dst.Field)
		}
		if _, err := learnedMatch(s.Dst, 0); err != nil && s.Dst.Field != FieldEthType && s.Dst.Field != FieldIPProto {
			return err
		}
	case LearnLoadField, LearnLoadValue:
		if s.Kind == LearnLoadField && s.Src.Width() != s.Dst.Width() {
			return errors.New("source and destination widths differ")
		}
		if s.Kind == LearnLoadValue && !s.Dst.fits(s.Value) {
			return errors.New("value does not fit the field")
		}
		return checkWritable(s.Dst)
	case LearnOutputField:
		if s.Src.Width() > 32 {
			return errors.New("output port field wider than 32 bits")
		}
	default:
		return fmt.Errorf("unknown spec kind %d", s.Kind)
	}
	return nil
}

// learnedProtoSoFar tracks the protocol the learned flow matches after s.
func learnedProtoSoFar(p Proto, s LearnSpec) Proto {
	if s.Kind != LearnMatchValue {
		return p
	}
	switch {
	case s.Dst.Field == FieldEthType && s.Value == 0x800:
		return ProtoIP
	case s.Dst.Field == FieldEthType && s.Value == 0x806:
		return ProtoARP
	case s.Dst.Field == FieldIPProto && p == ProtoIP:
		for q, n := range protoNumbers {
			if uint64(n) == s.Value {
				return q
			}
		}
	}
	return p
}
