package controller

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
)

// egressFirewallKey is the single key of the egress-firewall queue: a
// VNID's decision depends on every namespace sharing it, so every change
// re-evaluates all policies (egressfirewall.Evaluate is cheap and pure).
const egressFirewallKey = "egress-firewall"

// egressFirewallReconciler reports the EgressNetworkPolicies the node
// agents do not enforce as written: it runs the agents' own decisions
// (egressfirewall.Evaluate on the same conversion), so it reports exactly
// the VNIDs the agents drop or ignore — whether or not any node has a pod
// there — and records one Warning Event per policy and fact (reason and
// message: a VNID shared by other namespaces is a new fact) through
// recordOnce, so neither a retry nor a new leader repeats it. In subnet
// mode every policy gets ReasonNotEnforced: there are no VNIDs to match.
// The gauge egress_network_policies_invalid counts the policies currently
// not enforced as written (corrections excluded).
type egressFirewallReconciler struct{ c *controller }

func (r *egressFirewallReconciler) Reconcile(ctx context.Context, _ string) error {
	enps, err := r.c.egressPolicies.List(everything)
	if err != nil {
		return err
	}
	problems, err := r.problems(enps)
	if err != nil {
		return err
	}
	invalid, recorded := map[string]bool{}, map[string]bool{}
	var errs []error
	for _, p := range problems {
		if p.Reason != egressfirewall.ReasonCorrected {
			invalid[p.Policy.Key()] = true
		}
		seen := string(p.Policy.UID) + "\x00" + p.Reason + "\x00" + p.Message
		if err := r.record(ctx, p, seen); err != nil {
			errs = append(errs, err)
			continue
		}
		recorded[seen] = true
	}
	r.c.invalidEgressPolicies.replace(invalid)
	r.c.egressEventsSeen.replace(recorded) // facts gone are forgotten
	return errors.Join(errs...)
}

func (r *egressFirewallReconciler) problems(enps []*networkv1.EgressNetworkPolicy) ([]egressfirewall.Problem, error) {
	if !r.c.cfg.Mode.UsesVNIDs() {
		var out []egressfirewall.Problem
		for _, enp := range enps {
			out = append(out, egressfirewall.Problem{Policy: egressfirewall.Convert(enp), Reason: egressfirewall.ReasonNotEnforced,
				Message: fmt.Sprintf("EgressNetworkPolicy %s/%s is not enforced: the cluster network runs %s, which has no VNIDs to tell namespaces apart",
					enp.Namespace, enp.Name, networkv1.SingleTenantPluginName)})
		}
		return out, nil
	}
	nns, err := r.c.netNamespaces.List(everything)
	if err != nil {
		return nil, err
	}
	var out []egressfirewall.Problem
	for _, d := range egressfirewall.Evaluate(egressfirewall.BuildInput(enps, nns)) {
		out = append(out, d.Problems()...)
	}
	return out, nil
}

// record creates the problem's Event unless this term already did (seen
// identifies the fact).
func (r *egressFirewallReconciler) record(ctx context.Context, p egressfirewall.Problem, seen string) error {
	if r.c.egressEventsSeen.has(seen) {
		return nil
	}
	created, err := r.c.recordOnce(ctx, onceEvent{
		Object: corev1.ObjectReference{Kind: "EgressNetworkPolicy", APIVersion: networkv1.SchemeGroupVersion.String(),
			Namespace: p.Policy.Namespace, Name: p.Policy.Name, UID: p.Policy.UID},
		Key:       p.Message,
		Type:      corev1.EventTypeWarning,
		Reason:    p.Reason,
		Message:   p.Message,
		Namespace: p.Policy.Namespace,
	})
	if err != nil {
		return err
	}
	if created {
		klog.InfoS("EgressNetworkPolicy not enforced as written", "egressNetworkPolicy", p.Policy.Key(), "reason", p.Reason, "message", p.Message)
	}
	return nil
}

// setupEgressFirewall watches EgressNetworkPolicies (every mode) and, in
// the VNID modes, NetNamespaces (a join or isolate changes which VNIDs are
// shared); every change enqueues the one key.
func (c *controller) setupEgressFirewall() error {
	inf := c.networkInformers.Network().V1().EgressNetworkPolicies()
	c.egressPolicies = inf.Lister()
	enqueue := func(any) { c.egressFirewallQueue.add(egressFirewallKey) }
	reg, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue,
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*networkv1.EgressNetworkPolicy)
			n, ok2 := newObj.(*networkv1.EgressNetworkPolicy)
			if !ok1 || !ok2 || o.Generation != n.Generation || o.UID != n.UID {
				enqueue(newObj)
			}
		},
		DeleteFunc: enqueue,
	})
	if err != nil {
		return fmt.Errorf("egressnetworkpolicy informer: %w", err)
	}
	c.informersSynced = append(c.informersSynced, reg.HasSynced)
	if !c.cfg.Mode.UsesVNIDs() {
		return nil
	}
	nnInf := c.networkInformers.Network().V1().NetNamespaces().Informer()
	reg, err = nnInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue,
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*networkv1.NetNamespace)
			n, ok2 := newObj.(*networkv1.NetNamespace)
			if !ok1 || !ok2 || o.NetID != n.NetID {
				enqueue(newObj)
			}
		},
		DeleteFunc: enqueue,
	})
	if err != nil {
		return fmt.Errorf("netnamespace informer: %w", err)
	}
	c.informersSynced = append(c.informersSynced, reg.HasSynced)
	return nil
}

// keySet additions for the egress firewall: replace and has.

// replace makes the set exactly keys.
func (s *keySet) replace(keys map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

// has reports whether key is in the set.
func (s *keySet) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[key]
}
