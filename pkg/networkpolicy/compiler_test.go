package networkpolicy

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovstest"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// TestUpdateMatchesFullCompile mutates random clusters (a policy, pod
// labels, namespace labels, a deleted pod) and checks that recompiling only
// the namespaces Affected names yields exactly the owners a full compile
// yields — the contract the agent relies on for per-namespace recompute.
func TestUpdateMatchesFullCompile(t *testing.T) {
	for seed := range 150 {
		g := gen{rand.New(rand.NewPCG(uint64(seed), 99))}
		in := g.cluster()
		c := NewCompiler(in)
		owners := c.Owners()
		next, touched, labelsChanged := mutate(g, in)
		for owner, flows := range c.Update(next, c.Affected(touched, labelsChanged)...) {
			if flows == nil {
				delete(owners, owner)
			} else {
				owners[owner] = flows
			}
		}
		want, _ := Compile(next)
		for _, owner := range slices.SortedFunc(mapsKeys(owners, want), pipeline.CompareOwners) {
			got, exp := ovstest.RenderGolden(owners[owner]), ovstest.RenderGolden(want[owner])
			if got != exp {
				t.Fatalf("seed %d: owner %s after Update(%s, labels=%v) differs from a full compile:\n%s",
					seed, owner, touched, labelsChanged, ovstest.LineDiff(exp, got))
			}
		}
	}
}

func mapsKeys[V any](ms ...map[pipeline.Owner]V) func(func(pipeline.Owner) bool) {
	return func(yield func(pipeline.Owner) bool) {
		seen := map[pipeline.Owner]bool{}
		for _, m := range ms {
			for k := range m {
				if !seen[k] && !yield(k) {
					return
				}
				seen[k] = true
			}
		}
	}
}

// mutate returns a changed copy of in and the namespace the change is in.
func mutate(g gen, in Input) (Input, string, bool) {
	next := Input{Namespaces: slices.Clone(in.Namespaces), Pods: slices.Clone(in.Pods), Policies: slices.Clone(in.Policies)}
	switch g.r.IntN(4) {
	case 0:
		if len(next.Policies) > 0 {
			i := g.r.IntN(len(next.Policies))
			ns := next.Policies[i].Namespace
			next.Policies[i] = g.policy(next.Policies[i].Name, ns)
			return next, ns, false
		}
		fallthrough
	case 1:
		i := g.r.IntN(len(next.Pods))
		next.Pods[i].Labels = g.labels(podLabelKeys)
		return next, next.Pods[i].Namespace, false
	case 2:
		i := g.r.IntN(len(next.Namespaces))
		next.Namespaces[i].Labels = g.labels(nsLabelKeys)
		return next, next.Namespaces[i].Name, true
	}
	i := g.r.IntN(len(next.Pods))
	ns := next.Pods[i].Namespace
	next.Pods = slices.Delete(next.Pods, i, i+1)
	return next, ns, false
}

// TestAffectedIsNeeded checks that Affected is not trivially "everything"
// and not trivially "only the namespace": without recompiling a dependent
// namespace the result is stale.
func TestAffectedIsNeeded(t *testing.T) {
	in := featureCluster()
	in.Policies = append(in.Policies, policy("prod", "egress-to-db", egressTypes, egressRule(nil, peerNS(map[string]string{"team": "db"}))))
	c := NewCompiler(in)
	if got := c.Affected("db", false); !slices.Equal(got, []string{"db", "prod"}) {
		t.Fatalf("Affected(db) = %v, want [db prod] (prod's egress expands db's pod IPs)", got)
	}
	if got := c.Affected("dev", false); !slices.Equal(got, []string{"dev"}) {
		t.Fatalf("Affected(dev) = %v, want [dev]", got)
	}
}
