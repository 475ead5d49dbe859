package node

import (
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// modeFlows renders the isolation mode's static flows (reference §5, §6.2).
// An unknown mode renders none: tables 27 and 80 then drop all pod traffic
// except from the gateway, which fails closed.
func modeFlows(c FlowConfig) []ovs.Flow {
	egress, ingress := ovs.TablePolicyEgress, ovs.TablePolicyIngress
	toPod := ovs.OutPortField.Output()
	switch c.Mode {
	case clusternetwork.ModeSubnet:
		return []ovs.Flow{
			ovs.NewFlow(egress, 500).Action(ovs.Goto(ovs.TableConntrackCommit)),
			ovs.NewFlow(ingress, 200).Action(toPod),
		}
	case clusternetwork.ModeMultitenant:
		// VNID 0 ("global") reaches and is reached by every VNID; other
		// pairs need a TenantFlows rule.
		return []ovs.Flow{
			ovs.NewFlow(egress, 500).Action(ovs.Goto(ovs.TableConntrackCommit)),
			ovs.NewFlow(ingress, 200).MatchReg(ovs.SrcVNIDField, 0).Action(toPod),
			ovs.NewFlow(ingress, 200).MatchReg(ovs.DstVNIDField, 0).Action(toPod),
		}
	case clusternetwork.ModeNetworkPolicy:
		return networkPolicyFlows(c)
	}
	return nil
}

// networkPolicyFlows renders the static networkpolicy flows: egress is
// checked after DNAT (service traffic passes 27 and is checked when it comes
// back through 25), replies of allowed connections always pass, and
// pod-network-internal connections are committed in 30 so that replies are
// recognised. Only traffic between cluster CIDRs is committed: traffic
// leaving the pod network must still meet host iptables untracked by us.
func networkPolicyFlows(c FlowConfig) []ovs.Flow {
	egress, ingress := ovs.TablePolicyEgress, ovs.TablePolicyIngress
	flows := []ovs.Flow{
		ovs.NewFlow(egress, 300).MatchIPv4().MatchNwDst(c.ServiceNetwork).Action(ovs.Goto(ovs.TableConntrackCommit)),
		ovs.NewFlow(egress, 200).MatchIPv4().MatchCtState(ovs.CtRpl, 0).Action(ovs.Goto(ovs.TableConntrackCommit)),
		ovs.NewFlow(ingress, 200).MatchIPv4().MatchCtState(ovs.CtRpl, 0).Action(ovs.OutPortField.Output()),
	}
	for _, src := range c.ClusterNetworks {
		for _, dst := range c.ClusterNetworks {
			flows = append(flows, ovs.NewFlow(ovs.TableConntrackCommit, 100).
				MatchIPv4().MatchNwSrc(src).MatchNwDst(dst).MatchCtState(0, ovs.CtRpl).
				Action(ovs.CTThen(ovs.TableRouting, true, false)))
		}
	}
	// No allow-all here: the NetworkPolicy compiler (policy.go) owns every
	// other flow of tables 27 and 80 (pipeline version 0x11).
	return flows
}

// PolicyAllowAllFlows is what OpenShift's p50 per-namespace allows
// collapse to when NetworkPolicy is not enforced: table 27 and 80 p50 "ip
// → pass", owned by OwnerPolicyAllowAll. The agent installs it only in
// networkpolicy mode without a Kubernetes client (Config.Kube nil: labs
// and tests that have no Pods/Namespaces/NetworkPolicies), and logs that
// policies are not enforced. The compiled flows (p60 and up) would still
// win over it for every namespace with local pods.
func PolicyAllowAllFlows() []ovs.Flow {
	return withCookie(ovs.CookieFor(ovs.CookiePolicy, OwnerPolicyAllowAll), []ovs.Flow{
		ovs.NewFlow(ovs.TablePolicyEgress, 50).MatchIPv4().Action(ovs.Goto(ovs.TableConntrackCommit)),
		ovs.NewFlow(ovs.TablePolicyIngress, 50).MatchIPv4().Action(ovs.OutPortField.Output()),
	})
}

// OwnerPolicyAllowAll owns PolicyAllowAllFlows.
const OwnerPolicyAllowAll = "policy-allow-all"

// TenantFlows returns the multitenant isolation rule of one VNID in use on
// this node (owner "vnid/<id>"): table 80, priority 100, reg0=V, reg1=V →
// output to reg2, so pods sharing a VNID (one project, or joined projects)
// reach each other. It returns nil in other modes and for VNID 0, which the
// base rules already let through.
func TenantFlows(c FlowConfig, vnid uint32) []ovs.Flow {
	if c.Mode != clusternetwork.ModeMultitenant || vnid == 0 {
		return nil
	}
	return []ovs.Flow{
		ovs.NewFlow(ovs.TablePolicyIngress, 100).
			WithCookie(ovs.CookieFor(ovs.CookieNamespace, VNIDOwner(vnid))).
			MatchReg(ovs.SrcVNIDField, vnid).MatchReg(ovs.DstVNIDField, vnid).
			Action(ovs.OutPortField.Output()),
	}
}
