package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/vnid"
)

// Event reasons for change-network requests (on the NetNamespace).
const (
	reasonNetworkChanged       = "NetworkChanged"
	reasonChangeNetworkRefused = "ChangeNetworkRefused"
	reasonChangeNetworkFailed  = "ChangeNetworkFailed"
)

// renumberingRefused is OpenShift's wording for change requests outside
// multitenant mode.
const renumberingRefused = "network plugin does not allow NetNamespace renumbering"

// changeAction is the verb of a change-network annotation.
type changeAction string

const (
	actionGlobal  changeAction = "global"
	actionIsolate changeAction = "isolate"
	actionJoin    changeAction = "join"
)

// parseChangeNetwork parses "global", "isolate" or "join:<namespace>".
func parseChangeNetwork(v string) (changeAction, string, error) {
	switch s := strings.TrimSpace(v); {
	case s == string(actionGlobal):
		return actionGlobal, "", nil
	case s == string(actionIsolate):
		return actionIsolate, "", nil
	case strings.HasPrefix(s, string(actionJoin)+":") && len(s) > len(actionJoin)+1:
		return actionJoin, s[len(actionJoin)+1:], nil
	}
	return "", "", fmt.Errorf("annotation %s=%q is not global, isolate or join:<namespace>", networkv1.ChangePodNetworkAnnotation, v)
}

// changeNetwork processes the change-network annotation of netns. In
// multitenant mode the new netid is computed (global → 0; join:<ns> → that
// NetNamespace's netid; isolate → a new unique VNID unless netns already
// has one of its own) and written together with the removal of the
// annotation in one Update, so a watcher sees both or neither. Requests on
// "default" other than global are refused. In other modes the annotation is
// removed with a Warning Event. The old VNID is released by the informer
// once nothing references it.
func (r *netNamespaceReconciler) changeNetwork(ctx context.Context, ns *corev1.Namespace, netns *networkv1.NetNamespace) error {
	value := netns.Annotations[networkv1.ChangePodNetworkAnnotation]
	if !r.c.cfg.Mode.AllowsRenumbering() {
		return r.refuse(ctx, netns, renumberingRefused)
	}
	action, target, err := parseChangeNetwork(value)
	if err != nil {
		return r.refuse(ctx, netns, err.Error())
	}
	if netns.Name == globalNamespace && action != actionGlobal {
		return r.refuse(ctx, netns, fmt.Sprintf("changing the network of namespace %q is forbidden: it is always global (netid 0)", globalNamespace))
	}
	r.c.vnidMu.Lock()
	defer r.c.vnidMu.Unlock()
	newID, fresh, problem, err := r.newNetID(ns, netns, action, target)
	if err != nil {
		return err
	}
	if problem != "" {
		return r.finish(ctx, netns, netns.NetID, corev1.EventTypeWarning, reasonChangeNetworkFailed, problem)
	}
	err = r.finish(ctx, netns, newID, corev1.EventTypeNormal, reasonNetworkChanged,
		fmt.Sprintf("%s: netid changed from %d to %d", value, netns.NetID, newID))
	if err != nil && fresh && writeRejected(err) {
		r.release(newID)
	}
	return err
}

// newNetID computes the netid for a request. fresh is true when the id was
// newly allocated (and must be released if it is not written); problem
// explains a request that cannot be served (it is dropped with an Event);
// err is a retryable failure such as VNID exhaustion.
func (r *netNamespaceReconciler) newNetID(ns *corev1.Namespace, netns *networkv1.NetNamespace, action changeAction, target string) (id uint32, fresh bool, problem string, err error) {
	switch action {
	case actionGlobal:
		return vnid.GlobalVNID, false, "", nil
	case actionJoin:
		if target == netns.Name {
			return netns.NetID, false, "", nil
		}
		to, err := cached(r.c.netNamespaces.Get(target))
		if err != nil {
			return 0, false, "", fmt.Errorf("netnamespace %q: %w", target, err)
		}
		if to == nil {
			return 0, false, fmt.Sprintf("cannot join namespace %q: it has no NetNamespace", target), nil
		}
		return to.NetID, false, "", nil
	}
	// isolate: keep a VNID that is already this namespace's alone.
	others := slices.DeleteFunc(r.c.vnidHolders(netns.NetID), func(n string) bool { return n == netns.Name })
	if netns.NetID >= vnid.MinVNID && len(others) == 0 {
		return netns.NetID, false, "", nil
	}
	id, err = r.allocate(ns)
	return id, err == nil, "", err
}

// finish writes netid id and removes the annotation in one Update, then
// emits an Event on the NetNamespace.
func (r *netNamespaceReconciler) finish(ctx context.Context, netns *networkv1.NetNamespace, id uint32, eventType, reason, msg string) error {
	updated := netns.DeepCopy()
	updated.NetID = id
	delete(updated.Annotations, networkv1.ChangePodNetworkAnnotation)
	if _, err := r.c.opts.Network.NetworkV1().NetNamespaces().Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("netnamespace %q: setting netid %d and removing %s: %w", netns.Name, id, networkv1.ChangePodNetworkAnnotation, err)
	}
	klog.InfoS("Processed change-network request", "netNamespace", netns.Name,
		"request", netns.Annotations[networkv1.ChangePodNetworkAnnotation], "oldNetID", netns.NetID, "netid", id, "result", msg)
	r.c.recorder.Event(netns, eventType, reason, msg)
	return nil
}

// refuse removes the annotation without renumbering and says why.
func (r *netNamespaceReconciler) refuse(ctx context.Context, netns *networkv1.NetNamespace, why string) error {
	return r.finish(ctx, netns, netns.NetID, corev1.EventTypeWarning, reasonChangeNetworkRefused, why)
}
