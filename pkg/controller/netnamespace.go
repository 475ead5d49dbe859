package controller

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/vnid"
)

// Event reasons on Namespaces and NetNamespaces.
const (
	reasonVNIDAllocationFail = "VNIDAllocationFailed"
)

// globalNamespace is the namespace whose NetNamespace always has VNID 0.
const globalNamespace = "default"

// netNamespaceReconciler keeps one NetNamespace per Namespace (reference
// §9.3; multitenant and networkpolicy modes only). The key is a name that
// may be a Namespace, a NetNamespace or both.
//
//   - Namespace, no NetNamespace: create one with netname = name and netid
//     0 for "default", else a free VNID (unique in networkpolicy mode).
//   - NetNamespace, no Namespace: delete it, unless its netid is below
//     vnid.MinVNID: such NetNamespaces (0 = global, 1 = control plane) are
//     created ahead of their namespace by the installer, as CNO's
//     004-multitenant.yaml does, and the controller never allocated them.
//   - NetNamespace with the change-network annotation: see changeNetwork.
//
// VNIDs are released by the NetNamespace informer when the last holder is
// deleted or renumbered, never here.
type netNamespaceReconciler struct{ c *controller }

func (r *netNamespaceReconciler) Reconcile(ctx context.Context, name string) error {
	ns, err := cached(r.c.namespaces.Get(name))
	if err != nil {
		return fmt.Errorf("namespace %q: %w", name, err)
	}
	netns, err := cached(r.c.netNamespaces.Get(name))
	if err != nil {
		return fmt.Errorf("netnamespace %q: %w", name, err)
	}
	switch {
	case ns == nil && netns == nil:
		return nil
	case ns == nil:
		if netns.NetID < vnid.MinVNID {
			return nil
		}
		return r.delete(ctx, netns)
	case netns == nil:
		if ns.DeletionTimestamp != nil {
			return nil // terminating: its pods keep the (absent) VNID until it is gone
		}
		return r.create(ctx, ns)
	case hasAnnotation(netns, networkv1.ChangePodNetworkAnnotation):
		return r.changeNetwork(ctx, ns, netns)
	}
	return nil
}

func (r *netNamespaceReconciler) create(ctx context.Context, ns *corev1.Namespace) error {
	var id uint32 // "default" is global
	fresh := ns.Name != globalNamespace
	if fresh {
		var err error
		if id, err = r.allocate(ns); err != nil {
			return err
		}
	}
	netns := &networkv1.NetNamespace{
		ObjectMeta: metav1.ObjectMeta{Name: ns.Name},
		NetName:    ns.Name,
		NetID:      id,
	}
	_, err := r.c.opts.Network.NetworkV1().NetNamespaces().Create(ctx, netns, metav1.CreateOptions{})
	switch {
	case err == nil:
		klog.InfoS("Created NetNamespace", "netNamespace", ns.Name, "netid", id)
		return nil
	case apierrors.IsAlreadyExists(err):
		// Another writer was first; its netid is marked when the informer
		// delivers it. Ours was never written.
		if fresh {
			r.release(id)
		}
		return nil
	case fresh && writeRejected(err):
		r.release(id)
	case fresh:
		klog.ErrorS(err, "NetNamespace create outcome unknown; keeping its VNID reserved", "netNamespace", ns.Name, "netid", id)
	}
	return fmt.Errorf("netnamespace %q: creating with netid %d: %w", ns.Name, id, err)
}

// allocate takes a free VNID for ns; on exhaustion it emits a Warning Event
// on the Namespace and returns an error so that the key is retried.
func (r *netNamespaceReconciler) allocate(ns *corev1.Namespace) (uint32, error) {
	id, err := r.c.vnids.Allocate()
	if err == nil {
		return id, nil
	}
	r.c.metrics.allocationFailed(kindNetNamespace)
	msg := fmt.Sprintf("cannot allocate a VNID for namespace %s: %v", ns.Name, err)
	if errors.Is(err, vnid.ErrExhausted) {
		rng := r.c.opts.VNIDRange
		msg = fmt.Sprintf("cannot allocate a VNID for namespace %s: all VNIDs in %d..%d are in use (%d allocated)",
			ns.Name, rng.Min, rng.Max, r.c.vnids.Allocated())
	}
	r.c.recorder.Event(ns, corev1.EventTypeWarning, reasonVNIDAllocationFail, msg)
	klog.ErrorS(err, "VNID allocation failed; will retry", "namespace", ns.Name)
	return 0, fmt.Errorf("%s: %w", msg, err)
}

func (r *netNamespaceReconciler) release(id uint32) {
	if err := r.c.vnids.Release(id); err != nil {
		klog.ErrorS(err, "Releasing an unused VNID failed", "netid", id)
	}
}

func (r *netNamespaceReconciler) delete(ctx context.Context, netns *networkv1.NetNamespace) error {
	err := r.c.opts.Network.NetworkV1().NetNamespaces().Delete(ctx, netns.Name, deleteOnly(netns.UID))
	if err = ignoreGone(err); err != nil {
		return fmt.Errorf("netnamespace %q: deleting: %w", netns.Name, err)
	}
	klog.InfoS("Deleted NetNamespace of a deleted Namespace", "netNamespace", netns.Name, "netid", netns.NetID)
	return nil
}
