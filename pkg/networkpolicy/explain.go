package networkpolicy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// This file maps compiled flows back to the policies they came from, for
// `sdnctl trace` and `sdnctl flows --policy`: a conjunction ID or a flow of
// table 27/80 that a packet matched is explained as "allowed by rule
// ingress[0] of NetworkPolicy ns/name", "pod X is isolated by policies A, B
// and no rule allows this", "namespace N has no ingress policy". It reads
// the provenance the compiler recorded as it rendered (render.go), so an
// explanation always describes what that compilation rendered. If the
// flows on a bridge were compiled from another snapshot (a stale agent),
// Explanation.Consistent says whether the flow still fits.

// Direction is the direction a NetworkPolicy rule applies to.
type Direction string

// Directions.
const (
	Ingress Direction = "ingress"
	Egress  Direction = "egress"
)

func (d direction) exported() Direction {
	if d == ingress {
		return Ingress
	}
	return Egress
}

func (d Direction) internal() direction {
	if d == Ingress {
		return ingress
	}
	return egress
}

// DirectionOf returns the direction a policy table enforces; ok is false
// for other tables.
func DirectionOf(t ovs.Table) (Direction, bool) {
	switch t.ID {
	case ovs.TablePolicyIngress.ID:
		return Ingress, true
	case ovs.TablePolicyEgress.ID:
		return Egress, true
	}
	return "", false
}

// RuleRef names one rule of one NetworkPolicy: spec.ingress[Index] or
// spec.egress[Index] (0-based, as in the object).
type RuleRef struct {
	Namespace, Policy string
	Direction         Direction
	Index             int
}

// String is "ns/name rule ingress[0]".
func (r RuleRef) String() string {
	return fmt.Sprintf("%s/%s rule %s[%d]", r.Namespace, r.Policy, r.Direction, r.Index)
}

// Conjunction is one conjunction the compiler allocated for a namespace:
// its ID, table and priority, and the rules whose box it renders (several
// when identical boxes were rendered once).
type Conjunction struct {
	ID        uint32
	Table     ovs.Table
	Priority  uint16
	Namespace string
	Rules     []RuleRef
}

// Packet is what a policy decision depends on. SrcVNID is reg0 (the source
// namespace, 0 for the host), DstVNID reg1 (set in table 70, ingress only).
// Proto is ProtoTCP, ProtoUDP, ProtoSCTP or another IP protocol (then Port
// is ignored).
type Packet struct {
	Src, Dst         netip.Addr
	SrcVNID, DstVNID uint32
	Proto            ovs.Proto
	Port             uint16
}

// Kind classifies an explained flow.
type Kind uint8

// Kinds of explanations.
const (
	// KindNotCompiled: the flow is not one the compiler renders (a static
	// flow of pkg/node, another table, or an unknown cookie).
	KindNotCompiled Kind = iota
	// KindRuleAllow: a rule of a policy allows the packet (a conj_id flow
	// or a plain allow).
	KindRuleAllow
	// KindNotSelected: the pod is in a namespace with policies for the
	// direction, but none selects it (per-pod allow, p100).
	KindNotSelected
	// KindNamespaceAllow: the namespace has no policy for the direction
	// (namespace default allow, p60).
	KindNamespaceAllow
	// KindIsolated: policies select the pod for the direction and none of
	// their rules allows the packet (namespace default drop, p60).
	KindIsolated
)

// Explanation is the policy meaning of one flow of table 27 or 80 for one
// packet.
type Explanation struct {
	Kind      Kind
	Direction Direction
	Allowed   bool
	// Namespace is the namespace whose policies decide: the destination's
	// for ingress, the source's for egress. Pod is the protected pod
	// ("ns/name"), or its IP when unknown.
	Namespace, Pod string
	// Rules allow the packet (KindRuleAllow).
	Rules []RuleRef
	// Conj is true when a conj_id flow allowed the packet; ConjID is its ID.
	Conj   bool
	ConjID uint32
	// Policies are the namespace's policies for the direction that select
	// the pod (KindIsolated), or all of them (KindNotSelected), "ns/name".
	Policies []string
	// Failed are policies selecting the pod that could not be compiled:
	// they isolate but allow nothing.
	Failed []string
	// Consistent is false when the flow does not fit the Input (the
	// flows come from another snapshot, e.g. a stale agent), for example a
	// conjunction ID the compiler does not allocate, or a rule that does
	// not contain the packet.
	Consistent bool
}

// String is the explanation in words.
func (x Explanation) String() string {
	var s string
	switch x.Kind {
	case KindRuleAllow:
		if len(x.Rules) == 0 {
			s = fmt.Sprintf("allowed by a %s flow of namespace %s that no current NetworkPolicy rule explains", x.Direction, x.Namespace)
			break
		}
		refs := make([]string, 0, len(x.Rules))
		for _, r := range x.Rules {
			refs = append(refs, fmt.Sprintf("NetworkPolicy %s/%s rule %s[%d]", r.Namespace, r.Policy, r.Direction, r.Index))
		}
		s = "allowed by " + joinOr(refs)
		if x.Conj {
			s += fmt.Sprintf(" (conjunction %d)", x.ConjID)
		}
	case KindNotSelected:
		s = fmt.Sprintf("allowed: no %s NetworkPolicy selects pod %s (namespace %s has %s policies %s, none selecting it)",
			x.Direction, x.Pod, x.Namespace, x.Direction, strings.Join(x.Policies, ", "))
	case KindNamespaceAllow:
		s = fmt.Sprintf("allowed: namespace %s has no %s NetworkPolicy (not isolated)", x.Namespace, x.Direction)
	case KindIsolated:
		sel := append(slices.Clone(x.Policies), x.Failed...)
		if len(sel) == 0 {
			s = fmt.Sprintf("dropped: pod %s is isolated for %s (namespace %s has %s policies) and no rule allows this packet",
				x.Pod, x.Direction, x.Namespace, x.Direction)
			break
		}
		s = fmt.Sprintf("dropped: pod %s is isolated for %s by NetworkPolicy %s, and no %s rule allows this packet",
			x.Pod, x.Direction, strings.Join(sel, ", "), x.Direction)
		if len(x.Failed) > 0 {
			s += fmt.Sprintf(" (%s could not be compiled and allow%s nothing)", strings.Join(x.Failed, ", "), sIfOne(len(x.Failed)))
		}
	default:
		return "not a compiled NetworkPolicy flow"
	}
	if !x.Consistent {
		s += " [the flow does not match the current policies: the node's flows may be stale]"
	}
	return s
}

func sIfOne(n int) string {
	if n == 1 {
		return "s"
	}
	return ""
}

func joinOr(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

// Explainer explains the compiled flows of one node (the Input's Local
// pods) in terms of the Input's policies, from the provenance the compiler
// recorded while rendering them (Compiler.Explainer): it never recompiles,
// so an explanation is of exactly what was compiled. It is immutable and
// safe for concurrent reads.
type Explainer struct {
	c       *cluster
	results map[string]*nsResult
	byVNID  map[uint32]string
	byIP    map[netip.Addr]*Pod
}

// NewExplainer compiles in (as Compile does) and returns the explainer of
// the result.
func NewExplainer(in Input) *Explainer { return NewCompiler(in).Explainer() }

// Explainer returns the explainer of the compiler's current result. Later
// Updates do not change it (results are replaced, never modified).
func (c *Compiler) Explainer() *Explainer {
	e := &Explainer{c: c.cluster, results: maps.Clone(c.results), byVNID: map[uint32]string{}, byIP: map[netip.Addr]*Pod{}}
	for _, name := range e.c.names {
		ns := e.c.namespaces[name]
		if e.c.dupVNID[name] == "" {
			e.byVNID[ns.VNID] = name
		}
		for _, p := range ns.pods {
			e.byIP[p.IP] = p.Pod
		}
	}
	return e
}

// dir returns the provenance of namespace ns in direction d, nil when the
// namespace has no compiled flows on this node.
func (e *Explainer) dir(ns string, d direction) *dirProv {
	if res := e.results[ns]; res != nil {
		return res.prov[d]
	}
	return nil
}

// Namespace returns the namespace holding vnid (as the compiler sees it).
func (e *Explainer) Namespace(vnid uint32) (string, bool) {
	ns, ok := e.byVNID[vnid]
	return ns, ok
}

// PodName returns "ns/name" of the pod with ip, or ip itself.
func (e *Explainer) PodName(ip netip.Addr) string {
	if p := e.byIP[ip]; p != nil {
		return p.Namespace + "/" + p.Name
	}
	return ip.String()
}

// Conjunction returns the conjunction with id in table t, as the compiler
// allocates it for this Input.
func (e *Explainer) Conjunction(t ovs.Table, id uint32) (Conjunction, bool) {
	d, ok := DirectionOf(t)
	if !ok {
		return Conjunction{}, false
	}
	ns, ok := e.byVNID[id>>8]
	if !ok {
		return Conjunction{}, false
	}
	di := e.dir(ns, d.internal())
	if di == nil || di.conjs[id] == nil {
		return Conjunction{}, false
	}
	b := di.conjs[id]
	return Conjunction{ID: id, Table: t, Priority: b.priority, Namespace: ns, Rules: slices.Clone(b.rules)}, true
}

// Selecting returns the policies ("ns/name") of the pod's namespace that
// select the local pod with ip for direction d, in name order; failed are
// those among them that could not be compiled.
func (e *Explainer) Selecting(namespace string, ip netip.Addr, d Direction) (policies, failed []string) {
	di := e.dir(namespace, d.internal())
	if di == nil {
		return nil, nil
	}
	for _, p := range di.policies {
		if !p.selects(ip) {
			continue
		}
		if p.failed {
			failed = append(failed, namespace+"/"+p.name)
		} else {
			policies = append(policies, namespace+"/"+p.name)
		}
	}
	return policies, failed
}

// Allowing returns the rules of direction d that allow p, whatever flow
// the packet matched: the reference answer to compare a flow with.
func (e *Explainer) Allowing(p Packet, d Direction) []RuleRef {
	ns, ok := e.protectedNamespace(p, d, ovs.Flow{})
	if !ok {
		return nil
	}
	di := e.dir(ns, d.internal())
	if di == nil {
		return nil
	}
	var out []RuleRef
	for _, b := range di.boxes {
		if b.rendered && b.contains(p, d.internal()) {
			out = appendRules(out, b.rules)
		}
	}
	return out
}

func appendRules(out, rules []RuleRef) []RuleRef {
	for _, r := range rules {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// protectedNamespace is the namespace whose policies decide: from the
// flow's namespace register if it matches one, else from the packet.
func (e *Explainer) protectedNamespace(p Packet, d Direction, f ovs.Flow) (string, bool) {
	reg := d.internal().nsReg()
	for _, m := range f.Match {
		if rm, ok := m.(ovs.RegMatch); ok && rm.Field == reg && rm.Mask == ^uint32(0) {
			ns, ok := e.byVNID[rm.Value]
			return ns, ok
		}
	}
	vnid := p.SrcVNID
	if d == Ingress {
		vnid = p.DstVNID
	}
	ns, ok := e.byVNID[vnid]
	return ns, ok
}

// ExplainFlow explains flow f of table 27 (egress) or 80 (ingress), the
// flow packet p matched there (as ofproto/trace or ovs.TraceFlows report
// it; only its table, priority, cookie, match and whether it drops are
// read).
func (e *Explainer) ExplainFlow(f ovs.Flow, p Packet) Explanation {
	d, ok := DirectionOf(f.Table)
	if !ok {
		return Explanation{}
	}
	x := Explanation{Direction: d, Consistent: true}
	ns, ok := e.protectedNamespace(p, d, f)
	if !ok {
		return x
	}
	if f.Cookie&ovs.OwnerMask != pipeline.PolicyNamespaceOwner(ns).Cookie() {
		return x // a static flow, or another owner's
	}
	target := p.Src
	if d == Ingress {
		target = p.Dst
	}
	x.Namespace, x.Pod = ns, e.PodName(target)
	di := e.dir(ns, d.internal())
	if di == nil {
		di = &dirProv{}
		x.Consistent = false // the namespace has no local pod here
	}
	if id, ok := conjIDOf(f); ok {
		x.Kind, x.Allowed, x.Conj, x.ConjID = KindRuleAllow, true, true, id
		b := di.conjs[id]
		if b == nil || b.priority != f.Priority {
			x.Consistent = false
			return x
		}
		x.Rules = slices.Clone(b.rules)
		x.Consistent = b.contains(p, d.internal())
		return x
	}
	switch {
	case f.Priority == PriorityPlainAllow:
		x.Kind, x.Allowed = KindRuleAllow, true
		for _, b := range di.boxes {
			if b.rendered && !b.conj && b.contains(p, d.internal()) {
				x.Rules = appendRules(x.Rules, b.rules)
			}
		}
		x.Consistent = len(x.Rules) > 0
	case f.Priority == PriorityPodAllow:
		x.Kind, x.Allowed = KindNotSelected, true
		for _, pi := range di.policies {
			x.Policies = append(x.Policies, ns+"/"+pi.name)
			if pi.selects(target) {
				x.Consistent = false
			}
		}
		x.Consistent = x.Consistent && len(di.policies) > 0
	case f.Priority == PriorityNamespace && f.IsDrop():
		x.Kind = KindIsolated
		x.Policies, x.Failed = e.Selecting(ns, target, d)
		x.Consistent = len(di.policies) > 0 && len(e.Allowing(p, d)) == 0
	case f.Priority == PriorityNamespace:
		x.Kind, x.Allowed = KindNamespaceAllow, true
		x.Consistent = len(di.policies) == 0
	default:
		x.Consistent = false
	}
	return x
}

func conjIDOf(f ovs.Flow) (uint32, bool) {
	for _, m := range f.Match {
		if id, ok := m.(ovs.ConjID); ok {
			return uint32(id), true
		}
	}
	return 0, false
}

// contains reports whether p is in the box for direction d. The namespace
// (register) part is the caller's: the box belongs to one namespace.
func (b *explBox) contains(p Packet, d direction) bool {
	target, peer := p.Src, p.Dst
	if d == ingress {
		target, peer = p.Dst, p.Src
	}
	sr := b.sr
	if !sr.targetsAll && !slices.Contains(sr.targets, target) {
		return false
	}
	if !sr.anyPeer {
		in := slices.ContainsFunc(sr.peers, func(pf netip.Prefix) bool { return pf.Contains(peer) })
		if d == ingress && slices.Contains(sr.vnids, p.SrcVNID) {
			in = true
		}
		if !in {
			return false
		}
	}
	if sr.anyPort {
		return true
	}
	return slices.ContainsFunc(sr.ports, func(pc portClause) bool {
		return pc.proto == p.Proto && p.Port&pc.mask == pc.port&pc.mask
	})
}

// FlowRules returns the rules that compiled flow f of table 27 or 80
// renders, read from the flow alone (no packet): the rules of its
// conjunction for a conj_id flow, the rules of every conjunction(id,…)
// action for a clause flow (namespace-scoped target clauses and shared
// peer and port clauses alike: a shared clause may serve rules of several
// namespaces), and the rules of the boxes rendered as this plain allow
// flow (same table, priority and match). It returns nil for the other
// flows (isolation, per-pod allows, static flows of pkg/node) and for
// flows this Input does not render (a stale agent).
func (e *Explainer) FlowRules(f ovs.Flow) []RuleRef {
	d, ok := DirectionOf(f.Table)
	if !ok {
		return nil
	}
	var out []RuleRef
	conj := func(id uint32) {
		if c, ok := e.Conjunction(f.Table, id); ok {
			out = appendRules(out, c.Rules)
		}
	}
	if id, ok := conjIDOf(f); ok {
		if c, ok := e.Conjunction(f.Table, id); ok && c.Priority == f.Priority {
			out = appendRules(out, c.Rules)
		}
		return out
	}
	for _, a := range f.Actions {
		if c, ok := a.(ovs.Conjunction); ok {
			conj(c.ID)
		}
	}
	if len(out) > 0 || f.Priority != PriorityPlainAllow {
		return out
	}
	for _, m := range f.Match {
		rm, ok := m.(ovs.RegMatch)
		if !ok || rm.Field != d.internal().nsReg() || rm.Mask != ^uint32(0) {
			continue
		}
		ns, ok := e.byVNID[rm.Value]
		if !ok {
			return nil
		}
		if di := e.dir(ns, d.internal()); di != nil {
			for _, b := range di.plain[f.Key()] {
				out = appendRules(out, b.rules)
			}
		}
		return out
	}
	return nil
}

// Selected returns the local pods ("ns/name", in name order) that
// NetworkPolicy namespace/policy selects for direction d, the pods its
// namespace's default drop (p60) isolates because of it. ok is false when
// the policy does not apply to d or its namespace has no compiled flows on
// this node (no local pod, or a duplicate VNID). A policy whose
// podSelector could not be compiled selects every local pod of the
// namespace, as the compiler isolates them all.
func (e *Explainer) Selected(namespace, policy string, d Direction) (pods []string, ok bool) {
	di := e.dir(namespace, d.internal())
	if di == nil {
		return nil, false
	}
	i := slices.IndexFunc(di.policies, func(p policyInfo) bool { return p.name == policy })
	if i < 0 {
		return nil, false
	}
	for _, p := range e.c.namespaces[namespace].local {
		if di.policies[i].selects(p.IP) {
			pods = append(pods, namespace+"/"+p.Name)
		}
	}
	return pods, true
}
