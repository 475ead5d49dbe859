package pipeline_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

var modes = []clusternetwork.Mode{clusternetwork.ModeSubnet, clusternetwork.ModeMultitenant, clusternetwork.ModeNetworkPolicy}

// stagesOf returns the stages active together in mode m, as the agent
// assembles them.
func stagesOf(m clusternetwork.Mode) []pipeline.Stage {
	iso := pipeline.IsolationFor(m)
	stages := []pipeline.Stage{pipeline.StageBase, pipeline.StagePods, pipeline.StageNodes, iso.Stage(), pipeline.StageReservedTiers,
		pipeline.StageServiceProxy, pipeline.StageServices, pipeline.StageEgressIP}
	if iso.EnforcesNetworkPolicy() {
		stages = append(stages, pipeline.StageNetworkPolicy, pipeline.StagePolicyAllowAll)
	}
	if iso.UsesVNIDs() {
		stages = append(stages, pipeline.StageMulticast)
	}
	return stages
}

// TestBandsDisjointPerMode: no two stages active in one mode share a
// priority of a table.
func TestBandsDisjointPerMode(t *testing.T) {
	for _, m := range modes {
		if err := pipeline.CheckBandsDisjoint(stagesOf(m)...); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
}

// TestBandsDisjointCatchesOverlap proves the check can fail.
func TestBandsDisjointCatchesOverlap(t *testing.T) {
	rogue := pipeline.Stage{Name: "rogue", Bands: []pipeline.Band{{Table: ovs.TablePolicyIngress, Min: 150, Max: 150, Name: "x"}}}
	err := pipeline.CheckBandsDisjoint(append(stagesOf(clusternetwork.ModeNetworkPolicy), rogue)...)
	if err == nil || !strings.Contains(err.Error(), "rogue") || !strings.Contains(err.Error(), "networkpolicy") {
		t.Errorf("an overlap with the NetworkPolicy band: %v", err)
	}
}

// TestRenderersStayInTheirBands renders every renderer in every mode and
// scenario and checks each flow against its stage's bands.
func TestRenderersStayInTheirBands(t *testing.T) {
	for _, m := range modes {
		for _, cidrs := range [][]netip.Prefix{nil, {fxClusterCIDR, netip.MustParsePrefix("10.132.0.0/14")}} {
			c := fxConfig(m, cidrs...)
			iso := c.Isolation()
			check := func(stage pipeline.Stage, flows []ovs.Flow) {
				t.Helper()
				if err := pipeline.CheckFlowBands(stage, flows); err != nil {
					t.Errorf("%s: %v", m, err)
				}
			}
			check(pipeline.StageBase, append(pipeline.BaseFlows(c), pipeline.VersionFlow(c)))
			check(iso.Stage(), iso.StaticFlows(c))
			for _, p := range []pipeline.PodInfo{podWeb, podDB, podBlog, podRouter} {
				check(pipeline.StagePods, pipeline.PodFlows(c, p))
				check(iso.Stage(), iso.TenantFlows(p.VNID))
			}
			for _, n := range []pipeline.RemoteNode{nodeB, nodeC, fixedVNIDNode()} {
				check(pipeline.StageNodes, pipeline.RemoteNodeFlows(c, n))
			}
			check(pipeline.StageMulticast, []ovs.Flow{pipeline.MulticastRemoteFlow(c, []netip.Addr{nodeB.HostIP})})
			check(pipeline.StageMulticast, pipeline.MulticastVNIDFlows(c, 10, []pipeline.PodInfo{podWeb, podDB}))
			check(pipeline.StageMulticast, pipeline.MulticastVNIDFlows(c, 0, nil))
			check(pipeline.StagePolicyAllowAll, pipeline.PolicyAllowAllFlows())
			check(pipeline.StageServiceProxy, pipeline.ServiceProxyFlows(c))
		}
	}
	for _, s := range fxScenarios() {
		if err := pipeline.CheckFlowBands(pipeline.StageNetworkPolicy, s.policyFlows()); err != nil {
			t.Errorf("scenario %s: %v", s.name, err)
		}
	}
	owners, _ := networkpolicy.Compile(networkpolicy.Input{
		Namespaces: []networkpolicy.Namespace{{Name: "shop", VNID: 10}},
		Pods:       []networkpolicy.Pod{{Namespace: "shop", Name: "web", IP: podWeb.IP, Local: true}},
	})
	if len(owners) == 0 {
		t.Fatal("the compiler rendered nothing to check")
	}
	for owner, flows := range owners {
		if err := pipeline.CheckFlowBands(pipeline.StageNetworkPolicy, flows); err != nil {
			t.Errorf("%s: %v", owner, err)
		}
	}
}

// TestFlowBandsCatchesStray proves the band check fails for a renderer
// that emits a flow outside its band: a pod flow at a NetworkPolicy
// priority, and a NetworkPolicy flow above the band (where the reserved
// admin tier is).
func TestFlowBandsCatchesStray(t *testing.T) {
	c := fxConfig(clusternetwork.ModeNetworkPolicy)
	stray := pipeline.PodFlows(c, podWeb)
	stray[0].Priority = 150
	if err := pipeline.CheckFlowBands(pipeline.StagePods, stray); err == nil || !strings.Contains(err.Error(), "priority=150") {
		t.Errorf("pod flow at priority 150: %v", err)
	}
	f := ovs.NewFlow(ovs.TablePolicyIngress, 250).MatchIPv4().Action(ovs.OutPortField.Output())
	if err := pipeline.CheckFlowBands(pipeline.StageNetworkPolicy, []ovs.Flow{f}); err == nil {
		t.Error("a NetworkPolicy flow in the reserved admin tier was accepted")
	}
	f = ovs.NewFlow(ovs.TableRemotePod, 195).MatchIPv4().Action(ovs.DropAction())
	if err := pipeline.CheckFlowBands(pipeline.StageNetworkPolicy, []ovs.Flow{f}); err == nil {
		t.Error("a NetworkPolicy-priority flow in another table was accepted")
	}
}
