package networkpolicy

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// sharedCookie is the cookie of every shared match flow.
var sharedCookie = pipeline.PolicyMatchOwner("").Cookie()

// sharedPart is one namespace's contribution to a shared match flow: the
// flow without actions, and this namespace's conjunction actions.
type sharedPart struct {
	flow  ovs.Flow
	conjs []ovs.Action
}

// nsResult is everything compiled for one namespace. It is immutable once
// stored: Update replaces it.
type nsResult struct {
	flows  []ovs.Flow             // owned by PolicyNamespaceOwner(ns)
	shared map[string]*sharedPart // by flow key, owned by PolicyMatchOwner(key)
	vnid   uint32
	errors []*PolicyError
	deps   deps
	// prov records, per direction, where each flow came from (provenance):
	// the explainer reads it instead of recompiling. nil without local pods.
	prov [2]*dirProv
}

// dirProv is the provenance of one namespace's flows in one direction.
type dirProv struct {
	policies []policyInfo // every policy of the direction, in name order
	boxes    []*explBox   // in render order
	conjs    map[uint32]*explBox
	// plain holds the boxes rendered as plain allows by the Key of each
	// plain flow they render (several boxes may render the same flow).
	plain map[string][]*explBox
}

// policyInfo is what one policy selects in one direction.
type policyInfo struct {
	name       string
	targetsAll bool
	targets    map[netip.Addr]bool
	failed     bool
}

func (p policyInfo) selects(ip netip.Addr) bool { return p.targetsAll || p.targets[ip] }

// explBox is one box as rendered: a conjunction, plain flows, or nothing
// (an empty dimension), with the rules it renders (several when identical
// boxes were rendered once).
type explBox struct {
	sr       subRule
	rules    []RuleRef
	conj     bool // a conjunction (IDs of VNID 0 start at 0)
	conjID   uint32
	priority uint16
	rendered bool
	// plainKeys are the Keys of the plain allow flows the box renders
	// (none for a conjunction).
	plainKeys []string
}

// renderer accumulates the flows of one namespace in one direction.
type renderer struct {
	d      direction
	vnid   uint32
	cookie uint64
	plain  map[string]ovs.Flow  // ns-scoped flows without conjunction actions
	clause map[string]*ovs.Flow // ns-scoped conjunctive flows (targets)
	shared map[string]*sharedPart
	levels [numLevels][]*box
	bySig  map[string]*explBox // subRule signatures already rendered
	conjs  int                 // conjunctions allocated so far (next ID index)
	prov   *dirProv
	// alwaysConj renders every multi-dimensional box as a conjunction (tests:
	// exercises conjunctions and level assignment on small clusters).
	alwaysConj bool
}

func (c *cluster) compileNamespace(name string) *nsResult {
	res := &nsResult{shared: map[string]*sharedPart{}, deps: deps{namespaces: map[string]bool{}}}
	ns := c.namespaces[name]
	if ns == nil {
		return res
	}
	res.vnid = ns.VNID
	if other := c.dupVNID[name]; other != "" {
		res.errors = append(res.errors, &PolicyError{Namespace: name, Err: &DuplicateVNIDError{VNID: ns.VNID, Namespace: other}})
		res.shared = nil // contributes nothing; its VNID belongs to other
		return res
	}
	if len(ns.local) == 0 {
		return res // no local pod: nothing to protect on this node
	}
	failed := map[string]bool{}
	for _, d := range []direction{ingress, egress} {
		r := &renderer{d: d, vnid: ns.VNID, cookie: pipeline.PolicyNamespaceOwner(name).Cookie(),
			plain: map[string]ovs.Flow{}, clause: map[string]*ovs.Flow{}, shared: res.shared, bySig: map[string]*explBox{},
			prov: &dirProv{conjs: map[uint32]*explBox{}, plain: map[string][]*explBox{}}, alwaysConj: c.alwaysConj}
		var policies []compiledPolicy
		for _, np := range ns.policies {
			if !affects(np, d) {
				continue
			}
			cp := c.compilePolicy(ns, np, d, &res.deps)
			if cp.err != nil && !failed[np.Name] {
				failed[np.Name] = true
				res.errors = append(res.errors, &PolicyError{Namespace: name, Name: np.Name, Err: cp.err})
			}
			policies = append(policies, cp)
		}
		r.render(ns, policies)
		res.flows = append(res.flows, r.flows()...)
		res.prov[d] = r.prov
	}
	return res
}

// render emits the namespace default, per-pod allows for pods no policy
// selects, and the allowed boxes of every policy.
func (r *renderer) render(ns *nsInfo, policies []compiledPolicy) {
	base := ovs.NewFlow(r.d.table(), PriorityNamespace).WithCookie(r.cookie).MatchReg(r.d.nsReg(), r.vnid)
	if len(policies) == 0 {
		r.addPlain(base.Action(r.d.allow()))
		return
	}
	r.addPlain(base.Action(ovs.DropAction()))
	isolated := map[netip.Addr]bool{}
	all := false
	for _, cp := range policies {
		all = all || cp.targetsAll
		for _, p := range cp.targets {
			isolated[p.IP] = true
		}
	}
	for _, p := range ns.local {
		if !all && !isolated[p.IP] {
			r.addPlain(r.targetFlow(PriorityPodAllow, p.IP).Action(r.d.allow()))
		}
	}
	for _, cp := range policies {
		r.prov.policies = append(r.prov.policies, cp.info())
		for i, boxes := range cp.rules {
			ref := RuleRef{Namespace: ns.Name, Policy: cp.name, Direction: r.d.exported(), Index: i}
			for _, sr := range boxes {
				r.renderRule(sr, ref)
			}
		}
	}
}

func (r *renderer) nsFlow(priority uint16) ovs.Flow {
	return ovs.NewFlow(r.d.table(), priority).WithCookie(r.cookie).MatchReg(r.d.nsReg(), r.vnid)
}

func (r *renderer) targetFlow(priority uint16, ip netip.Addr) ovs.Flow {
	return r.nsFlow(priority).MatchIPv4().With(r.d.targetField(ovs.HostPrefix(ip)))
}

func (r *renderer) addPlain(f ovs.Flow) { r.plain[f.Key()] = f }

// dimensions returns the match clauses of a box: targets (always), then
// peers and ports unless unrestricted. ok is false when a restricted
// dimension is empty (the box allows nothing).
func (r *renderer) dimensions(sr subRule) (dims [][][]ovs.MatchField, ok bool) {
	var targets [][]ovs.MatchField
	if sr.targetsAll {
		targets = [][]ovs.MatchField{nil}
	}
	for _, ip := range sr.targets {
		if !sr.targetsAll {
			targets = append(targets, []ovs.MatchField{ovs.ProtoIP, r.d.targetField(ovs.HostPrefix(ip))})
		}
	}
	dims = append(dims, targets)
	if !sr.anyPeer {
		var peers [][]ovs.MatchField
		for _, p := range sr.peers {
			peers = append(peers, []ovs.MatchField{ovs.ProtoIP, r.d.peerField(p)})
		}
		for _, v := range sr.vnids {
			peers = append(peers, []ovs.MatchField{ovs.SrcVNIDField.Match(v)})
		}
		dims = append(dims, peers)
	}
	if !sr.anyPort {
		var ports [][]ovs.MatchField
		for _, p := range sr.ports {
			ports = append(ports, p.fields())
		}
		dims = append(dims, ports)
	}
	for _, d := range dims {
		if len(d) == 0 {
			return nil, false
		}
	}
	return dims, true
}

// renderRule renders one box of rule ref: as plain flows when their cross
// product is not larger than a conjunction (sum of dimensions + the conj_id
// flow), else as a conjunction at the first level where it overlaps no
// other conjunction of this namespace, else (all levels taken) as plain
// flows. A box already rendered for another rule is rendered once; both
// rules are recorded as its provenance.
func (r *renderer) renderRule(sr subRule, ref RuleRef) {
	sig := signature(sr)
	if b := r.bySig[sig]; b != nil {
		if !slices.Contains(b.rules, ref) {
			b.rules = append(b.rules, ref)
		}
		return
	}
	b := &explBox{sr: sr, rules: []RuleRef{ref}}
	r.bySig[sig] = b
	r.prov.boxes = append(r.prov.boxes, b)
	dims, ok := r.dimensions(sr)
	if !ok {
		return
	}
	b.rendered = true
	product, sum := 1, 1
	for _, d := range dims {
		product *= len(d)
		sum += len(d)
	}
	if (product > sum || r.alwaysConj) && len(dims) > 1 && r.conjs < conjsPerTable {
		if level, ok := r.place(newBox(sr)); ok {
			b.conj, b.conjID, b.priority = true, r.vnid<<8|uint32(r.conjs), PriorityConjTop-uint16(level)
			r.prov.conjs[b.conjID] = b
			r.renderConjunction(dims, level, r.conjs)
			r.conjs++
			return
		}
	}
	b.priority = PriorityPlainAllow
	keys := map[string]struct{}{}
	r.renderCrossProduct(dims, nil, 0, keys)
	b.plainKeys = slices.Sorted(maps.Keys(keys))
	for _, key := range b.plainKeys {
		r.prov.plain[key] = append(r.prov.plain[key], b)
	}
}

// renderCrossProduct adds the plain allow flows of dims, recording their
// keys in keys.
func (r *renderer) renderCrossProduct(dims [][][]ovs.MatchField, acc []ovs.MatchField, i int, keys map[string]struct{}) {
	if i == len(dims) {
		f := r.nsFlow(PriorityPlainAllow).With(mergeMatch(acc)...).Action(r.d.allow())
		key := f.Key()
		keys[key] = struct{}{}
		r.plain[key] = f
		return
	}
	for _, clause := range dims[i] {
		r.renderCrossProduct(dims, append(acc[:len(acc):len(acc)], clause...), i+1, keys)
	}
}

// renderConjunction emits conjunction VNID<<8|idx at the level's priority
// (the ID is unique in the table: VNIDs are unique, idx is unique within
// the namespace and direction):
// target clauses and the conj_id flow are namespace-scoped (they match the
// namespace register); peer and port clauses are shared with every
// namespace using the same clause at that priority.
func (r *renderer) renderConjunction(dims [][][]ovs.MatchField, level, idx int) {
	prio := PriorityConjTop - uint16(level)
	id := r.vnid<<8 | uint32(idx)
	n := uint8(len(dims))
	for k, d := range dims {
		conj := ovs.Conj(id, uint8(k+1), n)
		for _, clause := range d {
			if k == 0 {
				f := r.nsFlow(prio).With(clause...)
				if acc := r.clause[f.Key()]; acc != nil {
					*acc = acc.Action(conj)
				} else {
					f = f.Action(conj)
					r.clause[f.Key()] = &f
				}
				continue
			}
			f := ovs.NewFlow(r.d.table(), prio).WithCookie(sharedCookie).With(clause...)
			key := f.Key()
			if r.shared[key] == nil {
				r.shared[key] = &sharedPart{flow: f}
			}
			r.shared[key].conjs = append(r.shared[key].conjs, conj)
		}
	}
	r.addPlain(r.nsFlow(prio).MatchConjID(id).Action(r.d.allow()))
}

// flows returns the namespace-scoped flows in key order (deterministic,
// and cheap: the keys are already computed).
func (r *renderer) flows() []ovs.Flow {
	keys := slices.Sorted(maps.Keys(r.plain))
	keys = append(keys, slices.Sorted(maps.Keys(r.clause))...)
	out := make([]ovs.Flow, 0, len(keys))
	for _, k := range keys {
		if f, ok := r.plain[k]; ok {
			out = append(out, f)
		} else {
			out = append(out, *r.clause[k])
		}
	}
	return out
}

// mergeMatch joins clauses of several dimensions: one protocol (the most
// specific), every other field once.
func mergeMatch(fields []ovs.MatchField) []ovs.MatchField {
	var proto ovs.Proto
	out := make([]ovs.MatchField, 0, len(fields))
	seen := map[string]bool{}
	for _, f := range fields {
		if p, ok := f.(ovs.Proto); ok {
			if proto == 0 || proto == ovs.ProtoIP {
				proto = p
			}
			continue
		}
		if !seen[f.String()] {
			seen[f.String()] = true
			out = append(out, f)
		}
	}
	if proto != 0 {
		out = append([]ovs.MatchField{proto}, out...)
	}
	return out
}

// signature identifies a box, so that a box allowed twice (two identical
// policies or rules) is rendered once: identical conjunctions would
// overlap and need two levels for nothing.
func signature(sr subRule) string {
	b := make([]byte, 0, 64)
	b = appendBool(b, sr.targetsAll)
	for _, ip := range sr.targets {
		b = ip.AppendTo(b)
		b = append(b, ',')
	}
	b = appendBool(b, sr.anyPeer)
	for _, p := range sr.peers {
		b = p.AppendTo(b)
		b = append(b, ',')
	}
	for _, v := range sr.vnids {
		b = append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	b = appendBool(b, sr.anyPort)
	for _, p := range sr.ports {
		b = append(b, byte(p.proto), byte(p.port>>8), byte(p.port), byte(p.mask>>8), byte(p.mask))
	}
	return string(b)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, '|', 1)
	}
	return append(b, '|', 0)
}

// box is a subRule as ranges, for the overlap test between conjunctions.
type box struct {
	targetsAll bool
	targets    []span
	anyPeer    bool
	peers      []span
	vnids      []uint32
	anyPort    bool
	ports      []span
}

func newBox(sr subRule) *box {
	b := &box{targetsAll: sr.targetsAll, anyPeer: sr.anyPeer, vnids: sr.vnids, anyPort: sr.anyPort}
	for _, ip := range sr.targets {
		b.targets = append(b.targets, prefixSpan(ovs.HostPrefix(ip)))
	}
	for _, p := range sr.peers {
		b.peers = append(b.peers, prefixSpan(p))
	}
	for _, p := range sr.ports {
		b.ports = append(b.ports, p.span())
	}
	sortSpans(b.targets)
	sortSpans(b.peers)
	sortSpans(b.ports)
	return b
}

// overlaps reports whether one packet could match both boxes. It is
// conservative exactly where the OVS classifier (and ovs.ValidatePipeline)
// cannot tell fields apart: a reg0 peer and an nw_src peer may overlap.
func (a *box) overlaps(b *box) bool {
	targets := a.targetsAll || b.targetsAll || spansOverlap(a.targets, b.targets)
	peers := a.anyPeer || b.anyPeer || spansOverlap(a.peers, b.peers) || vnidsOverlap(a.vnids, b.vnids) ||
		len(a.vnids) > 0 && len(b.peers) > 0 || len(a.peers) > 0 && len(b.vnids) > 0
	ports := a.anyPort || b.anyPort || spansOverlap(a.ports, b.ports)
	return targets && peers && ports
}

func vnidsOverlap(a, b []uint32) bool {
	for _, v := range a {
		if _, ok := slices.BinarySearch(b, v); ok {
			return true
		}
	}
	return false
}

// place returns the first level whose conjunctions all miss b; ok is
// false when b overlaps a conjunction at every level.
func (r *renderer) place(b *box) (level int, ok bool) {
	for lv := range r.levels {
		if !slices.ContainsFunc(r.levels[lv], b.overlaps) {
			r.levels[lv] = append(r.levels[lv], b)
			return lv, true
		}
	}
	return 0, false
}
