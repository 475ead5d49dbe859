package networkpolicy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// DuplicateVNIDError reports a namespace whose VNID another namespace
// already holds. The compiler renders no flows for it (fail closed).
type DuplicateVNIDError struct {
	VNID      uint32
	Namespace string // the namespace keeping the VNID
}

func (e *DuplicateVNIDError) Error() string {
	return fmt.Sprintf("VNID %d is already used by namespace %q; its pods stay isolated", e.VNID, e.Namespace)
}

// Compiler compiles NetworkPolicy for one node and keeps the result per
// namespace, so that one namespace can be recompiled alone (Update).
//
// It is not safe for concurrent use; the agent's sync goroutine owns it.
// The zero value is not usable; call NewCompiler.
type Compiler struct {
	cluster *cluster
	results map[string]*nsResult
	// shared holds every shared match flow with its contributions, one per
	// namespace, in VNID order. Conjunction IDs are VNID<<8|index, so the
	// concatenation of the contributions is already sorted by ID: merging
	// after a recompute never sorts.
	shared map[string]*sharedEntry
	// alwaysConj is a test knob: see renderer.alwaysConj.
	alwaysConj bool
}

type sharedEntry struct {
	flow  ovs.Flow // without actions
	parts []contribution
}

type contribution struct {
	vnid  uint32
	conjs []ovs.Action
}

// NewCompiler compiles every namespace of in.
func NewCompiler(in Input) *Compiler {
	c := &Compiler{cluster: newCluster(in), results: map[string]*nsResult{}, shared: map[string]*sharedEntry{}}
	for _, name := range c.cluster.names {
		c.store(name, c.cluster.compileNamespace(name))
	}
	return c
}

// Compile is the pure entry point: the desired flows of tables 27 and 80
// for in, keyed by owner (see the package comment), and the per-policy
// errors. Owners with no flows are absent.
func Compile(in Input) (map[pipeline.Owner][]ovs.Flow, []*PolicyError) {
	c := NewCompiler(in)
	return c.Owners(), c.Errors()
}

// Flatten returns the flows of every owner, in owner order (deterministic;
// not sorted by table, which costs more than compiling at scale).
func Flatten(owners map[pipeline.Owner][]ovs.Flow) []ovs.Flow {
	var out []ovs.Flow
	for _, owner := range slices.SortedFunc(maps.Keys(owners), pipeline.CompareOwners) {
		out = append(out, owners[owner]...)
	}
	return out
}

// Owners returns the current desired flows keyed by owner.
func (c *Compiler) Owners() map[pipeline.Owner][]ovs.Flow {
	out := map[pipeline.Owner][]ovs.Flow{}
	for name, res := range c.results {
		if len(res.flows) > 0 {
			out[pipeline.PolicyNamespaceOwner(name)] = res.flows
		}
	}
	for key := range c.shared {
		out[pipeline.PolicyMatchOwner(key)] = c.sharedFlow(key)
	}
	return out
}

// Errors returns the per-policy (and per-namespace) errors, sorted by
// namespace and policy name.
func (c *Compiler) Errors() []*PolicyError {
	var out []*PolicyError
	for _, res := range c.results {
		out = append(out, res.errors...)
	}
	slices.SortFunc(out, func(a, b *PolicyError) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out
}

// Update recompiles the given namespaces against in (a new snapshot of the
// whole cluster) and returns the owners whose flows may have changed: their
// new flows, or nil for an owner that no longer has any (delete it). Every
// named namespace's owner is returned; a shared match flow only when this
// namespace's contribution to it changed. Other
// namespaces keep their previous result, so the caller must name every
// namespace whose result depends on the change (see Affected). Naming a
// namespace that does not exist (any more) is not an error: its flows are
// deleted. The cost is proportional to the named namespaces' flows plus the
// shared match flows they touch, not to the cluster.
func (c *Compiler) Update(in Input, namespaces ...string) map[pipeline.Owner][]ovs.Flow {
	c.cluster = newCluster(in)
	c.cluster.alwaysConj = c.alwaysConj
	changed := map[pipeline.Owner][]ovs.Flow{}
	for _, name := range namespaces {
		old := c.results[name]
		res := c.cluster.compileNamespace(name)
		touched := map[string]bool{}
		for key, part := range res.shared {
			if old == nil || old.shared[key] == nil || !slices.Equal(old.shared[key].conjs, part.conjs) {
				touched[key] = true
			}
		}
		if old != nil {
			for key := range old.shared {
				if res.shared[key] == nil {
					touched[key] = true
				}
			}
		}
		c.unstore(name)
		c.store(name, res)
		changed[pipeline.PolicyNamespaceOwner(name)] = nilIfEmpty(res.flows)
		for key := range touched {
			changed[pipeline.PolicyMatchOwner(key)] = c.sharedFlow(key)
		}
	}
	return changed
}

// Affected returns, sorted, the namespaces whose flows depend on namespace
// ns: ns itself, every namespace whose rules read ns's pods or VNID and,
// when labelsChanged (ns added, deleted, relabelled or renumbered), every
// namespace evaluating a namespaceSelector.
func (c *Compiler) Affected(ns string, labelsChanged bool) []string {
	out := map[string]bool{ns: true}
	for name, res := range c.results {
		if res.deps.namespaces[ns] || res.deps.allPods || labelsChanged && res.deps.nsLabels {
			out[name] = true
		}
	}
	return slices.Sorted(maps.Keys(out))
}

func (c *Compiler) store(name string, res *nsResult) {
	c.results[name] = res
	for key, part := range res.shared {
		e := c.shared[key]
		if e == nil {
			e = &sharedEntry{flow: part.flow}
			c.shared[key] = e
		}
		i, _ := slices.BinarySearchFunc(e.parts, res.vnid, byVNID)
		e.parts = slices.Insert(e.parts, i, contribution{vnid: res.vnid, conjs: part.conjs})
	}
}

func (c *Compiler) unstore(name string) {
	old := c.results[name]
	if old == nil {
		return
	}
	for key := range old.shared {
		e := c.shared[key]
		if i, ok := slices.BinarySearchFunc(e.parts, old.vnid, byVNID); ok {
			e.parts = slices.Delete(e.parts, i, i+1)
		}
		if len(e.parts) == 0 {
			delete(c.shared, key)
		}
	}
	delete(c.results, name)
}

func byVNID(c contribution, vnid uint32) int {
	switch {
	case c.vnid < vnid:
		return -1
	case c.vnid > vnid:
		return 1
	}
	return 0
}

// sharedFlow merges the contributions to one shared match flow; nil when
// nobody contributes any more.
func (c *Compiler) sharedFlow(key string) []ovs.Flow {
	e := c.shared[key]
	if e == nil {
		return nil
	}
	n := 0
	for _, p := range e.parts {
		n += len(p.conjs)
	}
	conjs := make([]ovs.Action, 0, n)
	for _, p := range e.parts {
		conjs = append(conjs, p.conjs...)
	}
	return []ovs.Flow{e.flow.Action(conjs...)}
}

func nilIfEmpty(flows []ovs.Flow) []ovs.Flow {
	if len(flows) == 0 {
		return nil
	}
	return flows
}
