package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressip"
)

// Event reasons of egress IPs, on NetNamespaces and HostSubnets.
const (
	reasonEgressIPConflict      = "EgressIPConflict"
	reasonEgressIPUnassigned    = "EgressIPUnassigned"
	reasonEgressIPUnreachable   = "EgressIPUnreachable"
	reasonEgressIPAssigned      = "EgressIPAssigned"
	reasonEgressIPMoved         = "EgressIPMoved"
	reasonEgressNodeUnreachable = "EgressNodeUnreachable"
	reasonEgressNodeReachable   = "EgressNodeReachable"
)

// egressKey is the only key of the egress queue: every change to
// HostSubnets, NetNamespaces or node health re-evaluates all egress IPs.
const egressKey = "egress"

// egressReconciler is the controller half of egress IPs (SPEC §4.7; the
// decisions are pkg/egressip's, shared with the agents):
//
//  1. Read HostSubnets and NetNamespaces from the caches; mark egress nodes
//     unreachable as the health checks (egressHealth) found them, or, for a
//     node not probed yet in this term, as the annotation says.
//  2. egressip.Allocate: the egressIPs of every automatic node.
//  3. Write the HostSubnets whose egressIPs or egress-unreachable annotation
//     differ — removals first: every node losing an IP is written (without
//     the IPs it loses) before any node gaining one, so an IP is never on
//     two HostSubnets, which agents would read as a conflict.
//  4. egressip.Evaluate on what was written: Events for every problem (once
//     per problem while it lasts in this term), moves and new assignments,
//     and the gauges.
//
// Agents learn where IPs are from HostSubnet.egressIPs and which are active
// by running egressip.Evaluate themselves.
type egressReconciler struct {
	c *controller
	// reported holds the problem Events sent in this term, so a problem is
	// reported once while it lasts; one that goes and comes back is
	// reported again. A new leader reports current problems once more.
	reported map[string]bool
}

func (r *egressReconciler) Reconcile(ctx context.Context, _ string) error {
	hss, err := r.c.hostSubnets.List(everything)
	if err != nil {
		return fmt.Errorf("listing hostsubnets: %w", err)
	}
	netnss, err := r.c.netNamespaces.List(everything)
	if err != nil {
		return fmt.Errorf("listing netnamespaces: %w", err)
	}
	nodes, namespaces := egressip.FromAPI(hss, netnss)
	nodes = r.withHealth(nodes)
	alloc := egressip.Allocate(nodes, namespaces)
	desired := alloc.Apply(nodes)
	changes := r.plan(hss, nodes, desired)
	if err := r.write(ctx, changes); err != nil {
		return err
	}
	ev := newEgressEvents(r.c, hss, netnss, namespaces)
	ev.applied(changes, alloc)
	st := egressip.Evaluate(desired, namespaces)
	r.reported = ev.problems(st, alloc, r.reported)
	r.c.egress.store(st, desired, namespaces, r.c.egressHealth.unreachableCount())
	return nil
}

// withHealth sets Unreachable on every egress node the health checks have
// probed in this term; other nodes keep what their annotation says (only
// egress nodes can be unreachable).
func (r *egressReconciler) withHealth(nodes []egressip.Node) []egressip.Node {
	for i, n := range nodes {
		if !isEgressNode(n) {
			nodes[i].Unreachable = false
			continue
		}
		if unreachable, _, known := r.c.egressHealth.status(n.Name, n.HostIP); known {
			nodes[i].Unreachable = unreachable
		}
	}
	return nodes
}

func isEgressNode(n egressip.Node) bool { return n.Automatic() || len(n.EgressIPs) > 0 }

// egressTargets returns the egress nodes to probe: name → hostIP.
func (c *controller) egressTargets() map[string]netip.Addr {
	hss, _ := c.hostSubnets.List(everything)
	nodes, _ := egressip.FromAPI(hss, nil)
	out := map[string]netip.Addr{}
	for _, n := range nodes {
		if isEgressNode(n) {
			out[n.Name] = n.HostIP
		}
	}
	return out
}

// hostSubnetChange is one HostSubnet to write: its egressIPs and the value
// of the egress-unreachable annotation ("" = absent).
type hostSubnetChange struct {
	hs              *networkv1.HostSubnet
	egressIPs       []networkv1.HostSubnetEgressIP
	unreachableMark string
	removesIPs      bool // loses at least one egress IP
}

func (ch hostSubnetChange) marked() bool { return ch.unreachableMark != "" }

// plan returns the HostSubnets whose egressIPs (automatic nodes) or
// annotation must change, by name.
func (r *egressReconciler) plan(hss []*networkv1.HostSubnet, nodes, desired []egressip.Node) []hostSubnetChange {
	byName := map[string]*networkv1.HostSubnet{}
	for _, hs := range hss {
		byName[hs.Name] = hs
	}
	var out []hostSubnetChange
	for i, d := range desired {
		hs := byName[d.Name]
		ch := hostSubnetChange{hs: hs, egressIPs: hs.EgressIPs, unreachableMark: r.mark(hs, nodes[i])}
		if d.Automatic() {
			ch.egressIPs = toEgressIPs(d.EgressIPs)
			ch.removesIPs = slices.ContainsFunc(hs.EgressIPs, func(ip networkv1.HostSubnetEgressIP) bool { return !slices.Contains(ch.egressIPs, ip) })
		}
		old, had := hs.Annotations[networkv1.EgressUnreachableAnnotation]
		if !slices.Equal(ch.egressIPs, hs.EgressIPs) || had != ch.marked() || (had && old != ch.unreachableMark) {
			out = append(out, ch)
		}
	}
	slices.SortFunc(out, func(a, b hostSubnetChange) int { return strings.Compare(a.hs.Name, b.hs.Name) })
	return out
}

// mark returns the annotation value hs should carry: "" unless n is an
// unreachable egress node; the time it became unreachable, kept from the
// annotation when there is one.
func (r *egressReconciler) mark(hs *networkv1.HostSubnet, n egressip.Node) string {
	if !n.Unreachable {
		return ""
	}
	if old := hs.Annotations[networkv1.EgressUnreachableAnnotation]; old != "" {
		return old
	}
	_, since, known := r.c.egressHealth.status(n.Name, n.HostIP)
	if !known {
		since = time.Now()
	}
	return since.UTC().Format(time.RFC3339)
}

// write applies changes: first every HostSubnet that loses egress IPs,
// written without them (and with its new annotation), then the rest.
func (r *egressReconciler) write(ctx context.Context, changes []hostSubnetChange) error {
	latest := map[string]*networkv1.HostSubnet{}
	for _, ch := range changes {
		if !ch.removesIPs {
			continue
		}
		kept := slices.DeleteFunc(slices.Clone(ch.hs.EgressIPs), func(ip networkv1.HostSubnetEgressIP) bool { return !slices.Contains(ch.egressIPs, ip) })
		hs, err := r.update(ctx, ch.hs, kept, ch.unreachableMark)
		if err != nil {
			return err
		}
		latest[hs.Name] = hs
	}
	for _, ch := range changes {
		from := ch.hs
		if hs := latest[ch.hs.Name]; hs != nil {
			from = hs
		}
		if slices.Equal(from.EgressIPs, ch.egressIPs) && from.Annotations[networkv1.EgressUnreachableAnnotation] == ch.unreachableMark {
			continue
		}
		if _, err := r.update(ctx, from, ch.egressIPs, ch.unreachableMark); err != nil {
			return err
		}
	}
	return nil
}

func (r *egressReconciler) update(ctx context.Context, hs *networkv1.HostSubnet, ips []networkv1.HostSubnetEgressIP, mark string) (*networkv1.HostSubnet, error) {
	updated := hs.DeepCopy()
	updated.EgressIPs = ips
	if mark == "" {
		delete(updated.Annotations, networkv1.EgressUnreachableAnnotation)
	} else {
		if updated.Annotations == nil {
			updated.Annotations = map[string]string{}
		}
		updated.Annotations[networkv1.EgressUnreachableAnnotation] = mark
	}
	out, err := r.c.opts.Network.NetworkV1().HostSubnets().Update(ctx, updated, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("hostsubnet %q: setting egressIPs %v: %w", hs.Name, ips, err)
	}
	klog.InfoS("Updated HostSubnet egress", "hostSubnet", hs.Name, "egressIPs", ips, "oldEgressIPs", hs.EgressIPs, "unreachableSince", mark)
	r.nodeEvent(hs, mark)
	return out, nil
}

// nodeEvent records a change of the node's reachability (the annotation
// write is the record that it was reported).
func (r *egressReconciler) nodeEvent(hs *networkv1.HostSubnet, mark string) {
	_, had := hs.Annotations[networkv1.EgressUnreachableAnnotation]
	switch {
	case mark != "" && !had:
		r.c.recorder.Eventf(hs, corev1.EventTypeWarning, reasonEgressNodeUnreachable,
			"node does not answer TCP connections to %s:%d (egress health check); its egress IPs are inactive and automatically assigned ones move to other nodes",
			hs.HostIP, EgressProbePort)
	case mark == "" && had:
		r.c.recorder.Event(hs, corev1.EventTypeNormal, reasonEgressNodeReachable, "node answers egress health checks again")
	}
}

func toEgressIPs(ips []netip.Addr) []networkv1.HostSubnetEgressIP {
	out := make([]networkv1.HostSubnetEgressIP, len(ips))
	for i, ip := range ips {
		out[i] = networkv1.HostSubnetEgressIP(ip.String())
	}
	return out
}
