package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/hostsubnet"
	"github.com/ovs-sdn/ovs-sdn/pkg/subnet"
	"github.com/ovs-sdn/ovs-sdn/pkg/vnid"
)

// Event reasons on Nodes and HostSubnets.
const (
	reasonSubnetAllocated       = "SubnetAllocated"
	reasonSubnetAllocationFail  = "SubnetAllocationFailed"
	reasonNodeAddressMissing    = "NodeInternalIPMissing"
	reasonInvalidHostSubnet     = "InvalidHostSubnet"
	reasonInvalidFixedVNIDHost  = "InvalidFixedVNIDHost"
	reasonHostSubnetNodeChanged = "HostSubnetNodeUIDMismatch"
)

// hostSubnetReconciler keeps one HostSubnet per Node (reference §9.2). The
// key is a name that may be a Node, a HostSubnet or both.
//
//   - Node, no HostSubnet: allocate a subnet and create it (host = node
//     name, hostIP = the Node's InternalIP, annotation node-uid).
//   - Node and HostSubnet: delete it if it belongs to an older Node of the
//     same name (UID mismatch) or its subnet is not a node subnet of the
//     cluster networks or is held by an older HostSubnet too; otherwise set
//     hostIP and the node-uid annotation in place.
//   - HostSubnet, no Node: delete it if it has a node-uid annotation (its
//     Node is gone); give it a subnet if it asks with assign-subnet; else
//     leave it alone (a manually created host).
//
// Subnets are released by the HostSubnet informer when the deletion is
// observed, never here.
type hostSubnetReconciler struct{ c *controller }

func (r *hostSubnetReconciler) Reconcile(ctx context.Context, name string) error {
	node, err := cached(r.c.nodes.Get(name))
	if err != nil {
		return fmt.Errorf("node %q: %w", name, err)
	}
	hs, err := cached(r.c.hostSubnets.Get(name))
	if err != nil {
		return fmt.Errorf("hostsubnet %q: %w", name, err)
	}
	if node == nil {
		return r.reconcileHostOnly(ctx, hs)
	}
	return r.reconcileNode(ctx, node, hs)
}

func (r *hostSubnetReconciler) reconcileHostOnly(ctx context.Context, hs *networkv1.HostSubnet) error {
	switch {
	case hs == nil:
		return nil
	case hs.Annotations[networkv1.NodeUIDAnnotation] != "":
		klog.InfoS("Deleting HostSubnet of a deleted Node", "hostSubnet", hs.Name, "subnet", hs.Subnet)
		return r.delete(ctx, hs)
	case hasAnnotation(hs, networkv1.AssignHostSubnetAnnotation):
		return r.assignSubnet(ctx, hs)
	}
	return nil // created by hand for a host that is not a Node: not ours
}

func (r *hostSubnetReconciler) reconcileNode(ctx context.Context, node *corev1.Node, hs *networkv1.HostSubnet) error {
	ip, ok := internalIP(node)
	if !ok {
		r.c.recorder.Eventf(node, corev1.EventTypeWarning, reasonNodeAddressMissing,
			"node has no IPv4 InternalIP address; no HostSubnet is created until it has one")
		klog.InfoS("Skipping Node without an InternalIP", "node", node.Name)
		return nil // the Node update that adds an address requeues it
	}
	if hs == nil {
		return r.createForNode(ctx, node, ip)
	}
	if uid := hs.Annotations[networkv1.NodeUIDAnnotation]; uid != "" && uid != string(node.UID) {
		r.c.recorder.Eventf(node, corev1.EventTypeNormal, reasonHostSubnetNodeChanged,
			"HostSubnet %s belonged to an earlier node %s (uid %s); replacing it", hs.Name, node.Name, uid)
		return r.delete(ctx, hs)
	}
	if problem := r.invalidSubnet(hs); problem != "" {
		r.c.recorder.Eventf(node, corev1.EventTypeWarning, reasonInvalidHostSubnet,
			"HostSubnet %s subnet %q %s; deleting it so that a valid one is allocated", hs.Name, hs.Subnet, problem)
		return r.delete(ctx, hs)
	}
	return r.updateInPlace(ctx, node, hs, ip)
}

// invalidSubnet explains why hs's subnet cannot be kept, or returns "".
// When two HostSubnets hold the same subnet the older one keeps it.
func (r *hostSubnetReconciler) invalidSubnet(hs *networkv1.HostSubnet) string {
	p, err := netip.ParsePrefix(hs.Subnet)
	if err != nil || !r.c.cfg.ContainsNodeSubnet(p) {
		return "is not a node subnet of the cluster networks " + r.c.clusterNetworksString()
	}
	if err := r.c.subnets.MarkAllocated(p); err != nil && !errors.Is(err, subnet.ErrAlreadyAllocated) {
		return "cannot be allocated: " + err.Error()
	}
	holders, _ := r.c.hostSubnetIndex.ByIndex(subnetIndex, p.String())
	for _, o := range holders {
		if other, ok := o.(*networkv1.HostSubnet); ok && other.UID != hs.UID && hostsubnet.Older(other, hs) {
			return "is also held by the older HostSubnet " + other.Name
		}
	}
	return ""
}

// updateInPlace sets hostIP and the node-uid annotation when they differ
// (a Node whose address changed keeps its subnet).
func (r *hostSubnetReconciler) updateInPlace(ctx context.Context, node *corev1.Node, hs *networkv1.HostSubnet, ip string) error {
	if hs.HostIP == ip && hs.Annotations[networkv1.NodeUIDAnnotation] == string(node.UID) {
		return nil
	}
	updated := hs.DeepCopy()
	updated.HostIP = ip
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	updated.Annotations[networkv1.NodeUIDAnnotation] = string(node.UID)
	if _, err := r.c.opts.Network.NetworkV1().HostSubnets().Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("hostsubnet %q: updating hostIP to %s: %w", hs.Name, ip, err)
	}
	klog.InfoS("Updated HostSubnet", "hostSubnet", hs.Name, "hostIP", ip, "oldHostIP", hs.HostIP, "nodeUID", node.UID)
	return nil
}

func (r *hostSubnetReconciler) createForNode(ctx context.Context, node *corev1.Node, ip string) error {
	p, err := r.allocate(node, "node "+node.Name)
	if err != nil {
		return err
	}
	hs := &networkv1.HostSubnet{
		ObjectMeta: metav1.ObjectMeta{
			Name:        node.Name,
			Annotations: map[string]string{networkv1.NodeUIDAnnotation: string(node.UID)},
		},
		Host:   node.Name,
		HostIP: ip,
		Subnet: p.String(),
	}
	if err := r.create(ctx, hs, p); err != nil {
		return err
	}
	r.c.recorder.Eventf(node, corev1.EventTypeNormal, reasonSubnetAllocated, "allocated pod subnet %s", p)
	return nil
}

// allocate takes a free subnet; on exhaustion it emits a Warning Event on
// obj and returns an error so that the key is retried with backoff.
func (r *hostSubnetReconciler) allocate(obj runtime.Object, who string) (netip.Prefix, error) {
	p, err := r.c.subnets.Allocate()
	if err == nil {
		return p, nil
	}
	r.c.metrics.allocationFailed(kindHostSubnet)
	msg := fmt.Sprintf("cannot allocate a pod subnet for %s: the cluster networks %s are exhausted (%d subnets allocated, %d free)",
		who, r.c.clusterNetworksString(), r.c.subnets.Allocated(), r.c.subnets.Free())
	if !errors.Is(err, subnet.ErrExhausted) {
		msg = fmt.Sprintf("cannot allocate a pod subnet for %s: %v", who, err)
	}
	r.c.recorder.Event(obj, corev1.EventTypeWarning, reasonSubnetAllocationFail, msg)
	klog.ErrorS(err, "Subnet allocation failed; will retry", "for", who, "clusterNetworks", r.c.clusterNetworksString())
	return netip.Prefix{}, fmt.Errorf("%s: %w", msg, err)
}

// create writes hs, which holds the freshly allocated p. A rejected create
// releases p; AlreadyExists means another writer created the object first:
// p is released and the existing object's subnet is marked.
func (r *hostSubnetReconciler) create(ctx context.Context, hs *networkv1.HostSubnet, p netip.Prefix) error {
	client := r.c.opts.Network.NetworkV1().HostSubnets()
	_, err := client.Create(ctx, hs, metav1.CreateOptions{})
	switch {
	case err == nil:
		klog.InfoS("Created HostSubnet", "hostSubnet", hs.Name, "subnet", p, "hostIP", hs.HostIP)
		return nil
	case apierrors.IsAlreadyExists(err):
		r.release(p)
		if existing, gerr := client.Get(ctx, hs.Name, metav1.GetOptions{}); gerr == nil {
			r.c.markSubnet(existing)
		}
		return nil // the informer delivers the existing object and requeues the key
	case writeRejected(err):
		r.release(p)
	default:
		klog.ErrorS(err, "HostSubnet create outcome unknown; keeping its subnet reserved", "hostSubnet", hs.Name, "subnet", p)
	}
	return fmt.Errorf("hostsubnet %q: creating with subnet %s: %w", hs.Name, p, err)
}

func (r *hostSubnetReconciler) release(p netip.Prefix) {
	if err := r.c.subnets.Release(p); err != nil {
		klog.ErrorS(err, "Releasing an unused subnet failed", "subnet", p)
	}
}

func (r *hostSubnetReconciler) delete(ctx context.Context, hs *networkv1.HostSubnet) error {
	err := r.c.opts.Network.NetworkV1().HostSubnets().Delete(ctx, hs.Name, deleteOnly(hs.UID))
	if err = ignoreGone(err); err != nil {
		return fmt.Errorf("hostsubnet %q: deleting: %w", hs.Name, err)
	}
	klog.InfoS("Deleted HostSubnet", "hostSubnet", hs.Name, "subnet", hs.Subnet)
	return nil
}

// assignSubnet serves a manual assign-subnet HostSubnet (a non-node host):
// it gets a newly allocated subnet and loses the request annotation in one
// Update, keeping fixed-vnid-host when it is a valid VNID. Updating in place
// rather than deleting and recreating means a crash can never lose the
// request; the old subnet (if any) is released by the informer.
func (r *hostSubnetReconciler) assignSubnet(ctx context.Context, hs *networkv1.HostSubnet) error {
	p, err := r.allocate(hs, "HostSubnet "+hs.Name)
	if err != nil {
		return err
	}
	updated := hs.DeepCopy()
	updated.Subnet = p.String()
	delete(updated.Annotations, networkv1.AssignHostSubnetAnnotation)
	if v, ok := updated.Annotations[networkv1.FixedVNIDHostAnnotation]; ok && !validVNIDString(v) {
		delete(updated.Annotations, networkv1.FixedVNIDHostAnnotation)
		r.c.recorder.Eventf(hs, corev1.EventTypeWarning, reasonInvalidFixedVNIDHost,
			"annotation %s=%q is not a VNID in 0..%d; dropped", networkv1.FixedVNIDHostAnnotation, v, vnid.MaxVNID)
	}
	_, err = r.c.opts.Network.NetworkV1().HostSubnets().Update(ctx, updated, metav1.UpdateOptions{})
	if err != nil {
		if writeRejected(err) {
			r.release(p)
		}
		return fmt.Errorf("hostsubnet %q: assigning subnet %s: %w", hs.Name, p, err)
	}
	klog.InfoS("Assigned subnet to HostSubnet", "hostSubnet", hs.Name, "host", hs.Host, "subnet", p)
	r.c.recorder.Eventf(hs, corev1.EventTypeNormal, reasonSubnetAllocated, "allocated pod subnet %s", p)
	return nil
}

func validVNIDString(s string) bool {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	return err == nil && vnid.Valid(uint32(v))
}

func hasAnnotation(obj metav1.Object, key string) bool {
	_, ok := obj.GetAnnotations()[key]
	return ok
}

func parseIPv4(s string) (string, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		return "", fmt.Errorf("%q is not an IPv4 address", s)
	}
	return a.String(), nil
}

// clusterNetworksString names the cluster networks for messages, e.g.
// "[10.128.0.0/29 (hostSubnetLength 2)]".
func (c *controller) clusterNetworksString() string {
	parts := make([]string, len(c.cfg.ClusterNetworks))
	for i, n := range c.cfg.ClusterNetworks {
		parts[i] = fmt.Sprintf("%s (hostSubnetLength %d)", n.CIDR, n.HostBits)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
