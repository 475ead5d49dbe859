package controller

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/hostsubnet"
)

// Event reasons on conflicting HostSubnets.
const (
	reasonHostSubnetConflict         = "HostSubnetConflict"
	reasonHostSubnetConflictResolved = "HostSubnetConflictResolved"
)

// conflictsKey is the only key of the conflict queue: every HostSubnet event
// re-evaluates all of them (hostsubnet.Resolve is O(n log n), ~8 ms for
// 5,000 HostSubnets), coalesced by the queue.
const conflictsKey = "hostsubnets"

// hostSubnetConflictReconciler marks the HostSubnets that lose a conflict
// (overlapping subnet or duplicate hostIP, pkg/hostsubnet): annotation
// network.ovs-sdn.io/conflict carries the explanation and a Warning Event
// is recorded when it is set or changes; when the conflict is gone the
// annotation is removed with a Normal Event. The annotation is the record
// that the Event was sent, so a new leader does not repeat it. Node agents
// do not read the annotation: they run hostsubnet.Resolve on their own cache
// with the same eligibility (node subnets of the cluster networks).
//
// A Node's HostSubnet that loses its subnet to an older one is not marked:
// the HostSubnet reconciler replaces it with a freshly allocated one.
type hostSubnetConflictReconciler struct{ c *controller }

func (r *hostSubnetConflictReconciler) Reconcile(ctx context.Context, _ string) error {
	all, err := r.c.hostSubnets.List(everything)
	if err != nil {
		return fmt.Errorf("listing hostsubnets: %w", err)
	}
	losers := hostsubnet.Resolve(all, r.c.cfg.ContainsNodeSubnet)
	r.c.conflictingHostSubnets.Store(int64(len(losers)))
	var errs []error
	for _, hs := range all {
		want := ""
		if c, lost := losers[hs.Name]; lost && !r.replacedByNodeReconciler(hs, c) {
			want = c.Message()
		}
		errs = append(errs, r.mark(ctx, hs, want))
	}
	return errors.Join(errs...)
}

// replacedByNodeReconciler reports whether hs is a Node's HostSubnet that
// lost its subnet, which hostSubnetReconciler deletes and reallocates.
func (r *hostSubnetConflictReconciler) replacedByNodeReconciler(hs *networkv1.HostSubnet, c hostsubnet.Conflict) bool {
	if c.Reason != hostsubnet.SubnetOverlap {
		return false
	}
	node, err := cached(r.c.nodes.Get(hs.Name))
	return err == nil && node != nil
}

// mark sets the conflict annotation of hs to want ("" removes it) and
// records the Event that goes with the change.
func (r *hostSubnetConflictReconciler) mark(ctx context.Context, hs *networkv1.HostSubnet, want string) error {
	have, marked := hs.Annotations[networkv1.HostSubnetConflictAnnotation]
	if marked == (want != "") && have == want {
		return nil
	}
	updated := hs.DeepCopy()
	if want == "" {
		delete(updated.Annotations, networkv1.HostSubnetConflictAnnotation)
	} else {
		if updated.Annotations == nil {
			updated.Annotations = map[string]string{}
		}
		updated.Annotations[networkv1.HostSubnetConflictAnnotation] = want
	}
	if _, err := r.c.opts.Network.NetworkV1().HostSubnets().Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("hostsubnet %q: setting annotation %s: %w", hs.Name, networkv1.HostSubnetConflictAnnotation, err)
	}
	if want == "" {
		klog.InfoS("HostSubnet no longer conflicts", "hostSubnet", hs.Name)
		r.c.recorder.Event(hs, corev1.EventTypeNormal, reasonHostSubnetConflictResolved,
			"no longer conflicts with another HostSubnet; nodes use it again")
		return nil
	}
	klog.InfoS("HostSubnet conflicts with an older one; nodes ignore it", "hostSubnet", hs.Name, "conflict", want)
	r.c.recorder.Event(hs, corev1.EventTypeWarning, reasonHostSubnetConflict, want)
	return nil
}
