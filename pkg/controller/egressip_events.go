package controller

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressip"
)

// egressEvents records the Events of one egress reconcile.
type egressEvents struct {
	c          *controller
	hostSubnet map[string]*networkv1.HostSubnet
	netNS      map[string]*networkv1.NetNamespace
	requesters map[netip.Addr][]string // NetNamespaces requesting each IP
}

func newEgressEvents(c *controller, hss []*networkv1.HostSubnet, netnss []*networkv1.NetNamespace, namespaces []egressip.Namespace) *egressEvents {
	e := &egressEvents{c: c, hostSubnet: map[string]*networkv1.HostSubnet{}, netNS: map[string]*networkv1.NetNamespace{},
		requesters: map[netip.Addr][]string{}}
	for _, hs := range hss {
		e.hostSubnet[hs.Name] = hs
	}
	for _, nn := range netnss {
		e.netNS[nn.Name] = nn
	}
	for _, ns := range namespaces {
		for _, ip := range ns.EgressIPs {
			e.requesters[ip] = append(e.requesters[ip], ns.Name)
		}
	}
	return e
}

// applied reports what the writes did: IPs moved off unreachable nodes
// (each one counted as a failover) and new automatic assignments.
func (e *egressEvents) applied(changes []hostSubnetChange, alloc egressip.Allocation) {
	movedTo := map[netip.Addr]string{}
	for _, m := range alloc.Moved {
		if m.To == "" {
			continue // reported as an unassigned IP
		}
		movedTo[m.IP] = m.To
		e.c.metrics.egressFailovers.Inc()
		e.onNamespaces(m.IP, corev1.EventTypeNormal, reasonEgressIPMoved,
			fmt.Sprintf("egress IP %s moved from the unreachable node %s to node %s", m.IP, m.From, m.To))
	}
	for _, ch := range changes {
		for _, s := range ch.egressIPs {
			ip, err := netip.ParseAddr(string(s))
			if err != nil || slices.Contains(ch.hs.EgressIPs, s) || movedTo[ip] == ch.hs.Name {
				continue
			}
			e.onNamespaces(ip, corev1.EventTypeNormal, reasonEgressIPAssigned,
				fmt.Sprintf("egress IP %s assigned to node %s (%s)", ip, ch.hs.Name, ch.hs.HostIP))
		}
	}
}

func (e *egressEvents) onNamespaces(ip netip.Addr, typ, reason, msg string) {
	for _, name := range e.requesters[ip] {
		if nn := e.netNS[name]; nn != nil {
			e.c.recorder.Event(nn, typ, reason, msg)
		}
	}
}

// problems sends a Warning Event on every object of every problem not in
// reported, and returns the problems reported now.
func (e *egressEvents) problems(st egressip.State, alloc egressip.Allocation, reported map[string]bool) map[string]bool {
	current := map[string]bool{}
	for _, p := range st.Problems {
		reason, msg, objects := e.describe(p, alloc)
		for name, obj := range objects {
			key := name + "\x00" + reason + "\x00" + msg
			current[key] = true
			if !reported[key] {
				e.c.recorder.Event(obj, corev1.EventTypeWarning, reason, msg)
			}
		}
	}
	return current
}

// describe returns the reason, message and objects (by "Kind/name") of an
// Event for p. Conflicts go on every object involved; other problems on
// the NetNamespaces (the HostSubnet of an unreachable node has its own).
func (e *egressEvents) describe(p egressip.Problem, alloc egressip.Allocation) (string, string, map[string]runtime.Object) {
	objects := map[string]runtime.Object{}
	for _, name := range p.Namespaces {
		if nn := e.netNS[name]; nn != nil {
			objects["NetNamespace/"+name] = nn
		}
	}
	switch p.Kind {
	case egressip.NotHosted:
		msg := p.Message()
		if why, ok := alloc.Unassigned[p.IPs[0]]; ok {
			msg = fmt.Sprintf("egress IP %s of NetNamespace %s cannot be assigned: %s; the namespace's external traffic leaves through its other active egress IPs or is dropped",
				p.IPs[0], strings.Join(p.Namespaces, ", "), why)
		}
		return reasonEgressIPUnassigned, msg, objects
	case egressip.NodeUnreachable:
		return reasonEgressIPUnreachable, p.Message(), objects
	}
	for _, name := range p.Nodes {
		if hs := e.hostSubnet[name]; hs != nil {
			objects["HostSubnet/"+name] = hs
		}
	}
	return reasonEgressIPConflict, p.Message(), objects
}

// egressGauges are the egress IP gauges, from the last reconcile.
type egressGauges struct {
	assigned, active, unreachable atomic.Int64
}

// store records: requested IPs listed by some HostSubnet, active IPs, and
// unreachable egress nodes.
func (g *egressGauges) store(st egressip.State, desired []egressip.Node, namespaces []egressip.Namespace, unreachable int) {
	listed := map[netip.Addr]bool{}
	for _, n := range desired {
		for _, ip := range n.EgressIPs {
			listed[ip] = true
		}
	}
	assigned := map[netip.Addr]bool{}
	for _, ns := range namespaces {
		for _, ip := range ns.EgressIPs {
			if listed[ip] {
				assigned[ip] = true
			}
		}
	}
	active := 0
	for _, e := range st.Egress {
		active += len(e.Active)
	}
	g.assigned.Store(int64(len(assigned)))
	g.active.Store(int64(active))
	g.unreachable.Store(int64(unreachable))
}
