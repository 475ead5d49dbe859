package node

import (
	"maps"

	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/hostsubnet"
)

// Conflicting HostSubnets (SPEC §11: resolved deterministically, never by
// arrival order). Two HostSubnets conflict when their subnets overlap or
// they share a hostIP; the older one wins (pkg/hostsubnet). The agent
// computes the losers itself, with hostsubnet.Resolve over its whole
// HostSubnet cache and the cluster network's node subnets as eligible —
// exactly what the controller computes — and never reads the controller's
// conflict annotation: a node must not route differently while the
// controller is down or behind.
//
// A loser gets no remote-node flows and no place in the multicast
// replication list, whatever order the agent learnt the objects in, also
// across agent restarts. Every render of the nodes feature recomputes the
// losers, so deleting (or fixing) a winner promotes its loser in the same
// pass. Every feature reads them through env.remoteNode; when they change,
// the nodes feature marks the multicast feature (rendered after it in the
// same pass), whose own HostSubnet event may have come first.
//
// Our own HostSubnet losing: the agent does not start while it loses
// (waitOwnSubnet waits, as for a missing HostSubnet, and then fails naming
// the conflict): its pods would get addresses no other node routes to. It
// can only start losing while the agent runs if it is edited or recreated
// (a new object is younger than the one it then conflicts with); the agent
// then logs an error and leaves its dataplane as it is — local pods keep
// working, the other nodes already ignore this node — until an operator
// resolves the conflict (the controller's Warning Event names it).

// conflictError says why a HostSubnet gets no flows.
type conflictError struct{ c hostsubnet.Conflict }

func (e conflictError) Error() string { return e.c.Message() }

// resolveConflicts recomputes env.losers from hss (the whole cache) and
// returns the names whose loser status changed since the last call.
func (f *nodesFeature) resolveConflicts(hss []*networkv1.HostSubnet) []string {
	losers := hostsubnet.Resolve(hss, f.e.cn.ContainsNodeSubnet)
	var changed []string
	for name, c := range losers {
		if old, ok := f.e.losers[name]; !ok || old != c {
			changed = append(changed, name)
			f.logConflict(c)
		}
	}
	for name := range f.e.losers {
		if _, ok := losers[name]; !ok {
			changed = append(changed, name)
			klog.InfoS("HostSubnet no longer in conflict", "hostSubnet", name)
		}
	}
	if len(changed) > 0 || f.e.losers == nil {
		f.e.losers = maps.Clone(losers)
		if f.e.losers == nil {
			f.e.losers = map[string]hostsubnet.Conflict{}
		}
	}
	return changed
}

func (f *nodesFeature) logConflict(c hostsubnet.Conflict) {
	if c.Name == f.e.cfg.NodeName {
		klog.ErrorS(nil, "This node's HostSubnet loses a conflict: the other nodes ignore it; the dataplane is left as it is, and the agent will not start again until the conflict is resolved",
			"hostSubnet", c.Name, "winner", c.Winner, "reason", c.Reason, "message", c.Message())
		return
	}
	klog.InfoS("Ignoring a conflicting HostSubnet", "hostSubnet", c.Name, "winner", c.Winner, "reason", c.Reason, "message", c.Message())
}
