package node

// NetworkPolicy realization (networkpolicy mode, SPEC §4.4): the agent side
// of pkg/networkpolicy.
//
// Inputs. Informers on Pods (all of them: every pod of the cluster can be a
// peer), Namespaces (labels), NetworkPolicies and NetNamespaces (VNIDs),
// converted by networkpolicy.BuildInput (the conversion sdnctl uses too).
// Local pods — the targets — are the pod ports of br0 the pods feature
// rendered (env.local), with their labels from the Pod informer: the IP the CNI server wrote on the port is
// known before status.podIP is, so a new pod is compiled from its first
// packet on. A pod of this node without a port (not yet added, or deleted)
// is not in the dataplane and is left out; so is a port whose Pod the
// informer has not delivered yet (its labels are unknown: it stays
// isolated if its namespace has policies, and is recompiled when the Pod
// arrives).
//
// Triggers. Handlers only mark the namespace concerned dirty (with "its
// labels or VNID changed") in the agent's dirty queue (STYLE L8). A render
// takes every namespace marked since the last render, adds the namespaces
// of local pods that appeared, disappeared or changed IP since then (the
// pods feature renders before this one in every pass and marks it when the
// local pods change), asks the compiler which namespaces depend on them
// (Compiler.Affected) and recompiles only those (Compiler.Update); the
// changed owners go into the FlowStore before the pass's caller (the sync
// loop, or a CNI PodAdded/PodDeleted) syncs, so everything pending is ONE
// bundle.
//
// New pods are isolated before they are reachable. The compiler gives a
// selected pod no allow of its own (isolate first): a pod whose pod flows
// land before its namespace is recompiled meets the namespace default
// (drop when the namespace has policies) or, in a namespace without local
// pods so far, no flow at all (the tables' final drop). And the namespace
// IS recompiled in the same bundle as the pod flows, because the local pod
// set is diffed on every render: an IP reused by a new pod never inherits
// the per-pod allow (or the peer flows) of the pod that had it.
//
// Bad policies. compiler.Errors() is compared with what was reported; a new
// or changed error becomes one Warning Event "NetworkPolicyInvalid" on the
// NetworkPolicy, naming the field. The policy contributes no allows in
// that direction; other policies are not affected (compiler contract).

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	listers "github.com/ovs-sdn/ovs-sdn/pkg/client/listers/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// policyFeature realizes NetworkPolicy for one node. Keys are namespace
// names, prefixed with labelsKeyPrefix when the namespace's labels or VNID
// changed (namespaceSelectors of every namespace must be re-evaluated).
type policyFeature struct {
	e *env

	pods       corelisters.PodLister
	namespaces corelisters.NamespaceLister
	policies   netlisters.NetworkPolicyLister
	nets       listers.NetNamespaceLister

	compiler *networkpolicy.Compiler     // nil until the first render
	local    map[string]pipeline.PodInfo // local pods last compiled, by owner key
	reported map[string]string           // "ns/name" → error text reported
	counts   map[string]int              // policy owner → number of flows
	nflows   int
}

// labelsKeyPrefix marks a namespace key whose labels or VNID changed
// (namespace names cannot contain '+').
const labelsKeyPrefix = "+"

// keyLocalPods is the key the pods feature marks when the local pods change.
const keyLocalPods = "+local-pods"

func newPolicyFeature(e *env) *policyFeature {
	return &policyFeature{e: e, local: map[string]pipeline.PodInfo{}, reported: map[string]string{}, counts: map[string]int{}}
}

func (*policyFeature) name() string          { return featureNetworkPolicy }
func (*policyFeature) stage() pipeline.Stage { return pipeline.StageNetworkPolicy }

// newEventRecorder records Events through the API server as "sdn-node" on
// this node, until ctx ends.
func newEventRecorder(ctx context.Context, cfg *Config) record.EventRecorder {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cfg.Kube.CoreV1().Events("")})
	go func() {
		<-ctx.Done()
		b.Shutdown()
	}()
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "sdn-node", Host: cfg.NodeName})
}

func (p *policyFeature) start(_ context.Context, e *env) ([]cache.InformerSynced, error) {
	pods, nss, nps := e.kube.Core().V1().Pods(), e.kube.Core().V1().Namespaces(), e.kube.Networking().V1().NetworkPolicies()
	nn := e.net.Network().V1().NetNamespaces()
	// Every pod of the cluster is cached; managedFields are most of an
	// object's size and never read.
	if err := pods.Informer().SetTransform(dropManagedFields); err != nil {
		return nil, err
	}
	p.pods, p.namespaces, p.policies, p.nets = pods.Lister(), nss.Lister(), nps.Lister(), nn.Lister()
	var synced []cache.InformerSynced
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		fn  func(old, obj any)
	}{
		{pods.Informer(), p.onPod}, {nss.Informer(), p.onNamespace},
		{nps.Informer(), p.onPolicy}, {nn.Informer(), p.onNetNamespace},
	} {
		reg, err := h.inf.AddEventHandler(changeHandler(h.fn))
		if err != nil {
			return nil, fmt.Errorf("NetworkPolicy informers: %w", err)
		}
		synced = append(synced, reg.HasSynced)
	}
	return synced, nil
}

// changeHandler calls fn(old, new) on update and fn(nil, obj) on add and
// delete (a tombstone unwrapped).
func changeHandler(fn func(old, obj any)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { fn(nil, obj) },
		UpdateFunc: fn,
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			fn(nil, obj)
		},
	}
}

func dropManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// onPod marks the pod's namespace when something the compiler reads
// changed (not on status-only churn).
func (p *policyFeature) onPod(old, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if o, ok := old.(*corev1.Pod); ok && !networkpolicy.Relevant(o, pod) {
		return
	}
	p.mark(pod.Namespace, false)
}

func (p *policyFeature) onNamespace(old, obj any) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return
	}
	if o, ok := old.(*corev1.Namespace); ok && labels.Equals(o.Labels, ns.Labels) {
		return
	}
	p.mark(ns.Name, true)
}

// onPolicy marks the policy's namespace: only its own namespace's flows
// read a policy.
func (p *policyFeature) onPolicy(old, obj any) {
	np, ok := obj.(*networkingv1.NetworkPolicy)
	if !ok {
		return
	}
	if o, ok := old.(*networkingv1.NetworkPolicy); ok && equality.Semantic.DeepEqual(o.Spec, np.Spec) {
		return
	}
	p.mark(np.Namespace, false)
}

// onNetNamespace marks a namespace whose VNID appeared, changed or went:
// a renumbering is a label change for the compiler (namespace peers).
func (p *policyFeature) onNetNamespace(old, obj any) {
	nn, ok := obj.(*networkv1.NetNamespace)
	if !ok {
		return
	}
	if o, ok := old.(*networkv1.NetNamespace); ok && o.NetID == nn.NetID {
		return
	}
	p.mark(nn.NetName, true)
}

func (p *policyFeature) mark(ns string, labelsChanged bool) {
	if labelsChanged {
		ns = labelsKeyPrefix + ns
	}
	p.e.mark(featureNetworkPolicy, ns)
}

// render recompiles what changed since the last render into the store. The
// first render compiles everything.
func (p *policyFeature) render(_ context.Context, keys []string, _ bool) error {
	dirty := map[string]bool{}
	for _, k := range keys {
		if k == keyLocalPods {
			continue
		}
		ns, lc := strings.CutPrefix(k, labelsKeyPrefix)
		dirty[ns] = dirty[ns] || lc
	}
	p.diffLocal(dirty)
	if p.compiler != nil && len(dirty) == 0 {
		return nil
	}
	in, err := p.input()
	if err != nil {
		for ns, lc := range dirty {
			p.mark(ns, lc)
		}
		return fmt.Errorf("NetworkPolicy input: %w", err)
	}
	var changed map[pipeline.Owner][]ovs.Flow
	if p.compiler == nil {
		p.compiler = networkpolicy.NewCompiler(in)
		changed = p.compiler.Owners()
	} else {
		changed = p.compiler.Update(in, p.affected(dirty)...)
	}
	err = p.apply(changed)
	p.report()
	return err
}

// diffLocal adds to dirty the namespace of every local pod that appeared,
// went or changed IP since the last compile, and remembers the local pods.
func (p *policyFeature) diffLocal(dirty map[string]bool) {
	touch := func(ns string) {
		if _, ok := dirty[ns]; !ok {
			dirty[ns] = false
		}
	}
	for owner, pod := range p.e.local {
		if old, ok := p.local[owner]; !ok || old.IP != pod.IP {
			touch(pod.Namespace)
		}
	}
	for owner, old := range p.local {
		if _, ok := p.e.local[owner]; !ok {
			touch(old.Namespace)
		}
	}
	p.local = make(map[string]pipeline.PodInfo, len(p.e.local))
	for owner, pod := range p.e.local {
		p.local[owner] = pod
	}
}

// affected is the union of the namespaces depending on the dirty ones.
func (p *policyFeature) affected(dirty map[string]bool) []string {
	set := map[string]struct{}{}
	for ns, labelsChanged := range dirty {
		for _, a := range p.compiler.Affected(ns, labelsChanged) {
			set[a] = struct{}{}
		}
	}
	out := make([]string, 0, len(set))
	for ns := range set {
		out = append(out, ns)
	}
	return out
}

// apply sets (or, for nil, deletes) each changed owner in the store.
func (p *policyFeature) apply(changed map[pipeline.Owner][]ovs.Flow) error {
	var errs []error
	for owner, flows := range changed {
		if len(flows) == 0 {
			p.e.store.Delete(owner)
			p.count(owner.String(), 0)
			continue
		}
		if err := p.e.set(featureNetworkPolicy, owner, flows); err != nil {
			errs = append(errs, err)
			continue
		}
		p.count(owner.String(), len(flows))
	}
	p.e.m.policyFlows.Set(float64(p.nflows))
	return errors.Join(errs...)
}

func (p *policyFeature) count(owner string, n int) {
	p.nflows += n - p.counts[owner]
	if n == 0 {
		delete(p.counts, owner)
	} else {
		p.counts[owner] = n
	}
}

// report logs each new or changed policy error once. The Warning Event on
// the policy is the sdn-controller's (one per policy, whether or not any
// node has a pod in its namespace), not every agent's.
func (p *policyFeature) report() {
	current := map[string]string{}
	for _, e := range p.compiler.Errors() {
		key, msg := e.Namespace+"/"+e.Name, e.Err.Error()
		current[key] = msg
		if p.reported[key] == msg {
			continue
		}
		if e.Name == "" { // a namespace, not a policy (duplicate VNID)
			klog.ErrorS(e.Err, "Namespace gets no NetworkPolicy flows; its pods stay isolated", "namespace", e.Namespace)
			continue
		}
		klog.InfoS("NetworkPolicy not enforced as written: it allows nothing in that direction (the pods it selects stay isolated)",
			"networkPolicy", key, "err", msg)
	}
	p.reported = current
}

// input is the compiler's snapshot (networkpolicy.BuildInput): namespaces
// that have a VNID, every pod (local ones with their br0 port's address)
// and every policy.
func (p *policyFeature) input() (networkpolicy.Input, error) {
	s := networkpolicy.Sources{Node: p.e.cfg.NodeName, LocalSubnet: p.e.fc.LocalSubnet,
		LocalIPs: make(map[string]netip.Addr, len(p.local))}
	for _, pod := range p.local {
		s.LocalIPs[pod.Namespace+"/"+pod.Name] = pod.IP
	}
	var err error
	if s.NetNamespaces, err = p.nets.List(labels.Everything()); err != nil {
		return networkpolicy.Input{}, err
	}
	if s.Namespaces, err = p.namespaces.List(labels.Everything()); err != nil {
		return networkpolicy.Input{}, err
	}
	if s.Pods, err = p.pods.List(labels.Everything()); err != nil {
		return networkpolicy.Input{}, err
	}
	if s.Policies, err = p.policies.List(labels.Everything()); err != nil {
		return networkpolicy.Input{}, err
	}
	return networkpolicy.BuildInput(s), nil
}

// explainer returns the explainer of the current compilation (nil before
// the first render). Call it under the agent's render lock.
func (p *policyFeature) explainer() *networkpolicy.Explainer {
	if p.compiler == nil {
		return nil
	}
	return p.compiler.Explainer()
}
