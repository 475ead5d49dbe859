package node

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

// TestDirtyQueue: marks coalesce per key and keep the first mark's time;
// take returns a feature's keys once; applied reports the waits of what
// was taken; requests coalesce into one pending trigger.
func TestDirtyQueue(t *testing.T) {
	q := newDirtyQueue()
	now := time.Unix(100, 0)
	q.now = func() time.Time { return now }
	q.mark("pods", "b")
	q.mark("pods", "a")
	now = now.Add(time.Second)
	q.mark("pods", "a") // coalesced: keeps the first time
	q.mark("nodes", "n1")
	if len(q.trigger) != 1 {
		t.Errorf("%d pending triggers, want 1", len(q.trigger))
	}
	if !q.has("pods") || q.has("isolation") || q.keyCount("pods") != 2 {
		t.Errorf("has(pods)=%v has(isolation)=%v keyCount(pods)=%d", q.has("pods"), q.has("isolation"), q.keyCount("pods"))
	}
	keys, all := q.take("pods")
	if !slices.Equal(keys, []string{"a", "b"}) || all {
		t.Errorf("take(pods) = %v, %v", keys, all)
	}
	if keys, _ := q.take("pods"); keys != nil {
		t.Errorf("second take(pods) = %v, want nothing", keys)
	}
	q.markAll("base")
	if _, all := q.take("base"); !all {
		t.Error("markAll(base) was not taken as all")
	}
	now = now.Add(2 * time.Second)
	waits := q.applied()
	if got := waits["pods"]; len(got) != 2 || !slices.Contains(got, 3*time.Second) {
		t.Errorf("applied waits of pods = %v, want two, one of 3s (a's first mark)", got)
	}
	if _, ok := waits["nodes"]; ok {
		t.Error("nodes' key was reported applied before it was taken")
	}
	if len(q.applied()) != 0 {
		t.Error("applied reported the same waits twice")
	}
}

// TestEnvSetRefusesFlowsOutsideTheStage: a feature whose renderer strays
// out of its stage's bands gets an error naming the flow, and the store
// keeps the owner's previous flows.
func TestEnvSetRefusesFlowsOutsideTheStage(t *testing.T) {
	e := &env{store: NewFlowStore(), stages: map[string]pipeline.Stage{featurePods: pipeline.StagePods}}
	c := pipeline.FlowConfig{Mode: clusternetwork.ModeNetworkPolicy, LocalSubnet: fc1.LocalSubnet}
	owner := pipeline.PodOwner(pa.Namespace, pa.Name)
	good := pipeline.PodFlows(c, pa)
	if err := e.set(featurePods, owner, good); err != nil {
		t.Fatalf("in-band pod flows refused: %v", err)
	}
	stray := slices.Clone(good)
	stray[4] = ovs.NewFlow(ovs.TablePolicyIngress, 150).MatchIPv4().Action(ovs.DropAction())
	err := e.set(featurePods, owner, stray)
	if err == nil || !strings.Contains(err.Error(), "PolicyIngress(80),priority=150") {
		t.Fatalf("stray flow: %v, want an error naming it", err)
	}
	if got := e.store.Flows(owner); len(got) != len(good) || !got[4].Equal(good[4]) {
		t.Errorf("the store changed after a refused set: %v", got)
	}
}

// TestFeaturesPerMode: the features assembled per mode, in render order,
// with disjoint stages.
func TestFeaturesPerMode(t *testing.T) {
	for _, tc := range []struct {
		mode  clusternetwork.Mode
		proxy pipeline.ProxyMode
		kube  bool
		want  []string
	}{
		{clusternetwork.ModeSubnet, "", true, []string{"base", "nodes", "pods", "isolation", "services"}},
		{clusternetwork.ModeMultitenant, pipeline.ProxyOVS, true, []string{"base", "nodes", "pods", "isolation", "services", "egressip", "multicast"}},
		{clusternetwork.ModeNetworkPolicy, "", true, []string{"base", "nodes", "pods", "isolation", "networkpolicy", "services", "egressip", "multicast"}},
		{clusternetwork.ModeNetworkPolicy, "", false, []string{"base", "nodes", "pods", "isolation", "networkpolicy", "services", "egressip", "multicast"}},
		{clusternetwork.ModeNetworkPolicy, pipeline.ProxyKubeProxy, true, []string{"base", "nodes", "pods", "isolation", "networkpolicy", "egressip", "multicast"}},
		{clusternetwork.ModeMultitenant, pipeline.ProxyKubeProxy, true, []string{"base", "nodes", "pods", "isolation", "egressip", "multicast"}},
	} {
		c := pipeline.FlowConfig{Mode: tc.mode, ProxyMode: tc.proxy}
		e := &env{cfg: &Config{}, fc: c, iso: c.Isolation()}
		if tc.kube {
			e.cfg.Kube = fakeKube()
		}
		var names []string
		var stages []pipeline.Stage
		for _, f := range e.features() {
			names = append(names, f.name())
			stages = append(stages, f.stage())
		}
		if !slices.Equal(names, tc.want) {
			t.Errorf("%s (kube %v): features %v, want %v", tc.mode, tc.kube, names, tc.want)
		}
		if err := pipeline.CheckBandsDisjoint(stages...); err != nil {
			t.Errorf("%s: %v", tc.mode, err)
		}
	}
}

func fakeKube() *kubefake.Clientset { return kubefake.NewSimpleClientset() }
