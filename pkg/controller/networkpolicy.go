package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
)

// networkPolicyReconciler reports NetworkPolicies that the node agents'
// compiler rejects (networkpolicy mode only). It runs the compiler's own
// check, networkpolicy.Validate, so it rejects exactly what every agent
// rejects — whether or not any node has a pod in the namespace — and
// records one Warning Event (reason NetworkPolicyInvalid, naming the field)
// per policy and spec generation: the Event's name is derived from the
// policy's UID and generation (recordOnce), so neither a retry nor a new
// leader repeats it. The gauge networkpolicies_invalid counts the policies
// currently rejected. The key is "namespace/name".
type networkPolicyReconciler struct{ c *controller }

func (r *networkPolicyReconciler) Reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return terminal(err)
	}
	np, err := cached(r.c.networkPolicies.NetworkPolicies(ns).Get(name))
	if err != nil {
		return fmt.Errorf("networkpolicy %s: %w", key, err)
	}
	var verr *networkpolicy.ValidationError
	if np == nil || !errors.As(networkpolicy.Validate(np), &verr) {
		r.c.invalidPolicies.set(key, false)
		return nil
	}
	r.c.invalidPolicies.set(key, true)
	created, err := r.c.recordOnce(ctx, onceEvent{
		Object: corev1.ObjectReference{Kind: "NetworkPolicy", APIVersion: networkingv1.SchemeGroupVersion.String(),
			Namespace: np.Namespace, Name: np.Name, UID: np.UID, ResourceVersion: np.ResourceVersion},
		Key:       fmt.Sprintf("generation %d", np.Generation),
		Type:      corev1.EventTypeWarning,
		Reason:    networkpolicy.ReasonInvalid,
		Message:   invalidPolicyMessage(verr),
		Namespace: np.Namespace,
	})
	if created {
		klog.InfoS("NetworkPolicy not enforced as written", "networkPolicy", key, "generation", np.Generation, "err", verr)
	}
	return err
}

// invalidPolicyMessage says which fields are rejected and what that means
// for traffic, e.g. "spec.egress[0].to[1].ipBlock.cidr: ipBlock cidr: ...
// (egress); the policy allows nothing in these directions: the pods it
// selects stay isolated, other policies are unaffected".
func invalidPolicyMessage(verr *networkpolicy.ValidationError) string {
	parts := make([]string, len(verr.Fields))
	for i, f := range verr.Fields {
		parts[i] = fmt.Sprintf("%s (%s)", f, f.Direction)
	}
	return strings.Join(parts, "; ") +
		"; the policy allows nothing in these directions: the pods it selects stay isolated, other policies are unaffected"
}

// keySet is a mutex-guarded set of keys (the currently invalid policies).
type keySet struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (s *keySet) set(key string, in bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[string]bool{}
	}
	if in {
		s.keys[key] = true
	} else {
		delete(s.keys, key)
	}
}

func (s *keySet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}
