package pipeline

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// Band is a range of priorities [Min, Max] of one table that one stage owns.
// Bands keep renderers that share a table apart: two stages active in the
// same mode never own overlapping bands of one table (CheckBandsDisjoint),
// so a flow of one can never shadow or be shadowed by the other's by
// accident, and every rendered flow stays inside its stage's bands
// (CheckFlowBands).
type Band struct {
	Table    ovs.Table
	Min, Max uint16
	// Name says what the band is for, in errors and docs.
	Name string
}

// Contains reports whether flow f is inside b.
func (b Band) Contains(f ovs.Flow) bool {
	return f.Table.ID == b.Table.ID && f.Priority >= b.Min && f.Priority <= b.Max
}

func (b Band) overlaps(c Band) bool {
	return b.Table.ID == c.Table.ID && b.Min <= c.Max && c.Min <= b.Max
}

func (b Band) String() string {
	return fmt.Sprintf("%s %s [%d..%d]", b.Table.Named(), b.Name, b.Min, b.Max)
}

// Stage is a part of the pipeline rendered by one feature of the agent: its
// name and the priority bands it owns. Reserved stages own bands for
// features to come, so that nothing else creeps into them.
type Stage struct {
	Name  string
	Bands []Band
}

func band(t ovs.Table, minP, maxP uint16, name string) Band {
	return Band{Table: t, Min: minP, Max: maxP, Name: name}
}

// The stages and their bands. Tables 27 and 80 are shared by the isolation
// strategy (static flows), the NetworkPolicy compiler and reserved tiers;
// their layout, highest priority first:
//
//	PolicyIngress (80)                  PolicyEgress (27)
//	300      gateway always passes      500      subnet/multitenant allow
//	210..290 reserved: admin tier       300      services (networkpolicy)
//	200      isolation statics          210..290 reserved: admin tier
//	100      multitenant tenants        200      replies (networkpolicy)
//	60..195  NetworkPolicy (compiled)   60..195  NetworkPolicy (compiled)
//	51..59   reserved: baseline tier    51..59   reserved: baseline tier
//	50       allow-all placeholder      50       allow-all placeholder
//	0        final drop                 0        final drop
//
// The isolation statics are each mode's own stage (Isolation.Stage), so
// multitenant's p100 tenant rules may overlap the NetworkPolicy band: the
// two never run in one mode (CheckBandsDisjoint checks the stages of one
// mode).
var (
	// StageBase: the static flows of BaseFlows and the version note; every
	// table's priority-0 final flow.
	StageBase = Stage{Name: "base", Bands: append([]Band{
		band(ovs.TableClassifier, 1000, 1000, "conntrack"),
		band(ovs.TableClassifier, 1, 400, "classification"),
		band(ovs.TableClassifier, 460, 460, "no multicast from the host"),
		band(ovs.TablePodAntiSpoof, 300, 300, "no VXLAN from pods"),
		band(ovs.TableRouting, 1, 300, "routing"),
		band(ovs.TableServices, 200, 200, "to the host"),
		band(ovs.TablePolicyIngress, 300, 300, "gateway"),
		band(ovs.TableEgressPrelim, 200, 200, "DNS to the node"),
		band(ovs.TableEgressRouting, 150, 150, "replies"),
		band(ovs.TableVersion, 0, 0, "version note"),
	}, finalBands()...)}
	// StagePods: the flows of local pods.
	StagePods = Stage{Name: "pods", Bands: []Band{
		band(ovs.TablePodAntiSpoof, 100, 100, "pod anti-spoof"),
		band(ovs.TableServiceReturn, 100, 100, "pod service return"),
		band(ovs.TableARPLocal, 100, 100, "ARP to pod"),
		band(ovs.TableLocalPod, 100, 100, "to pod"),
	}}
	// StageNodes: the flows of remote nodes.
	StageNodes = Stage{Name: "nodes", Bands: []Band{
		band(ovs.TableVXLANIngress, 100, 100, "known node"),
		band(ovs.TableARPRemote, 100, 100, "ARP to node"),
		band(ovs.TableRemotePod, 100, 100, "to node"),
	}}
	// StageMulticast: multicast per VNID (multicast.go) and the
	// replication to remote nodes.
	StageMulticast = Stage{Name: "multicast", Bands: []Band{
		band(ovs.TableMulticastFromLocal, 100, 100, "enabled VNID"),
		band(ovs.TableMulticastToRemote, 100, 100, "replication"),
		band(ovs.TableMulticastToLocal, 100, 100, "local receivers"),
	}}
	// StageNetworkPolicy: the compiled NetworkPolicy flows (pkg/networkpolicy).
	StageNetworkPolicy = Stage{Name: "networkpolicy", Bands: []Band{
		band(ovs.TablePolicyEgress, 60, 195, "NetworkPolicy"),
		band(ovs.TablePolicyIngress, 60, 195, "NetworkPolicy"),
	}}
	// StagePolicyAllowAll: networkpolicy mode without a Kubernetes client.
	StagePolicyAllowAll = Stage{Name: "policy-allow-all", Bands: []Band{
		band(ovs.TablePolicyEgress, 50, 50, "allow-all placeholder"),
		band(ovs.TablePolicyIngress, 50, 50, "allow-all placeholder"),
	}}
	// StageReservedTiers: tiers kept free for AdminNetworkPolicy (above
	// NetworkPolicy, below the gateway and the mode's statics) and
	// BaselineAdminNetworkPolicy (below NetworkPolicy). No renderer owns them.
	StageReservedTiers = Stage{Name: "reserved tiers", Bands: []Band{
		band(ovs.TablePolicyEgress, 210, 290, "admin tier (reserved)"),
		band(ovs.TablePolicyIngress, 210, 290, "admin tier (reserved)"),
		band(ovs.TablePolicyEgress, 51, 59, "baseline tier (reserved)"),
		band(ovs.TablePolicyIngress, 51, 59, "baseline tier (reserved)"),
	}}
)

// finalBands is priority 0 of every table but Version.
func finalBands() []Band {
	var out []Band
	for _, t := range ovs.Tables {
		if t != ovs.TableVersion {
			out = append(out, band(t, 0, 0, "final"))
		}
	}
	return out
}

// CheckFlowBands returns an error naming every flow of flows that lies in
// no band of stage.
func CheckFlowBands(stage Stage, flows []ovs.Flow) error {
	var errs []error
	for _, f := range flows {
		if !slices.ContainsFunc(stage.Bands, func(b Band) bool { return b.Contains(f) }) {
			errs = append(errs, fmt.Errorf("stage %s: flow %s is outside its bands", stage.Name, f.StringNamed()))
		}
	}
	return errors.Join(errs...)
}

// CheckBandsDisjoint returns an error for every pair of bands of different
// stages that overlap in one table. Pass the stages active together (one
// mode); a stage's own bands may touch each other.
func CheckBandsDisjoint(stages ...Stage) error {
	var errs []error
	for i, a := range stages {
		for _, b := range stages[i+1:] {
			for _, x := range a.Bands {
				for _, y := range b.Bands {
					if x.overlaps(y) {
						errs = append(errs, fmt.Errorf("stages %s and %s overlap: %s and %s", a.Name, b.Name, x, y))
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}
