package ovs

// overlapBudget bounds the backtracking search in conjunctionsOverlap; when it
// is exhausted the conjunctions are assumed not to overlap (no report).
const overlapBudget = 100000

// conjunctionsOverlap reports whether one packet could complete both
// conjunctions: pick one clause per dimension of each, plus one of each's
// conj_id flows, such that all picked clauses are pairwise compatible.
// Pairwise compatibility is exact for our fields (prefixes nest, exact values
// are equal), so this search is precise within its budget.
func conjunctionsOverlap(a, b *conjunction) bool {
	if len(a.finals) == 0 || len(b.finals) == 0 {
		return false // a conjunction without conj_id flow never matches
	}
	var dims [][][]MatchField
	for _, c := range []*conjunction{a, b} {
		for k := uint8(1); k <= c.n; k++ {
			if len(c.dims[k]) == 0 {
				return false // incomplete: reported separately
			}
			dims = append(dims, c.dims[k])
		}
		dims = append(dims, c.finals)
	}
	budget := overlapBudget
	return searchCompatible(dims, nil, &budget)
}

func searchCompatible(dims [][][]MatchField, picked []MatchField, budget *int) bool {
	if len(dims) == 0 {
		return true
	}
	for _, clause := range dims[0] {
		if *budget--; *budget <= 0 {
			return false
		}
		if !clausesCompatible(picked, clause) {
			continue
		}
		if searchCompatible(dims[1:], append(picked[:len(picked):len(picked)], clause...), budget) {
			return true
		}
	}
	return false
}

// clausesCompatible reports whether some packet matches every field of a and
// of b. conj_id is ignored: it distinguishes the conjunctions being compared.
func clausesCompatible(a, b []MatchField) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Key() == y.Key() && x.Key() != "conj_id" && !fieldsCompatible(x, y) {
				return false
			}
		}
	}
	return true
}

// fieldsCompatible reports whether two clauses on the same key can both hold.
func fieldsCompatible(x, y MatchField) bool {
	switch x := x.(type) {
	case Proto:
		y := y.(Proto)
		return x == y || x == ProtoIP && y.IsIP() || y == ProtoIP && x.IsIP()
	case AddrMatch:
		return x.Prefix.Overlaps(y.(AddrMatch).Prefix)
	case PortMatch:
		y := y.(PortMatch)
		return (x.Port^y.Port)&x.Mask&y.Mask == 0
	case RegMatch:
		y := y.(RegMatch)
		return (x.Value^y.Value)&x.Mask&y.Mask == 0
	case MACMatch:
		y := y.(MACMatch)
		for i := range x.Addr {
			if (x.Addr[i]^y.Addr[i])&x.Mask[i]&y.Mask[i] != 0 {
				return false
			}
		}
		return true
	case CtState:
		y := y.(CtState)
		return x.Set&y.Clear == 0 && x.Clear&y.Set == 0
	}
	return x == y
}
