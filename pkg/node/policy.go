package node

// NetworkPolicy realization (networkpolicy mode, SPEC §4.4): the agent side
// of pkg/networkpolicy.
//
// Inputs. Informers on Pods (all of them: every pod of the cluster can be a
// peer), Namespaces (labels), NetworkPolicies and the NetNamespace informer
// the agent already runs (VNIDs). Local pods — the targets — are the pod
// ports of br0 the renderer read from OVSDB (renderer.pods), with their
// labels from the Pod informer: the IP the CNI server wrote on the port is
// known before status.podIP is, so a new pod is compiled from its first
// packet on. A pod of this node without a port (not yet added, or deleted)
// is not in the dataplane and is left out; so is a port whose Pod the
// informer has not delivered yet (its labels are unknown: it stays
// isolated if its namespace has policies, and is recompiled when the Pod
// arrives).
//
// Triggers. Handlers only mark the namespace concerned dirty (with "its
// labels or VNID changed") and wake the one sync goroutine (STYLE L8).
// A render takes every namespace marked since the last render, adds the
// namespaces of local pods that appeared, disappeared or changed IP since
// then, asks the compiler which namespaces depend on them
// (Compiler.Affected) and recompiles only those (Compiler.Update). Renders
// happen right after every renderPods (the renderer's onPods hook: in the
// sync loop and in a CNI PodAdded/PodDeleted) and once more in every sync
// loop render; the changed owners go into the FlowStore before the caller
// syncs, so everything pending is ONE bundle.
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
	"reflect"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	netinformers "github.com/ovs-sdn/ovs-sdn/pkg/client/informers/externalversions/network/v1"
	listers "github.com/ovs-sdn/ovs-sdn/pkg/client/listers/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// ReasonNetworkPolicyInvalid is the reason of the Warning Event on a
// NetworkPolicy the compiler rejected (in part).
const ReasonNetworkPolicyInvalid = "NetworkPolicyInvalid"

// policyAgent realizes NetworkPolicy for one node. Handlers (any goroutine)
// call mark; podsRendered runs wherever the local pods are rendered (sync
// loop or CNI request), render and synced on the sync loop. A nil
// *policyAgent (other modes) does nothing.
type policyAgent struct {
	nodeName    string
	localSubnet netip.Prefix
	store       *FlowStore
	m           *metrics
	recorder    record.EventRecorder
	request     func() // wakes the sync goroutine

	pods       corelisters.PodLister
	namespaces corelisters.NamespaceLister
	policies   netlisters.NetworkPolicyLister
	nets       listers.NetNamespaceLister

	mu       sync.Mutex
	dirty    map[string]bool      // namespace → its labels or VNID changed
	since    map[string]time.Time // namespace → first event not yet rendered
	inflight []time.Time          // events rendered but not yet applied

	// renderMu serializes renders: the sync loop's and the CNI server's
	// (PodAdded renders the local pods, hence policy, from its request's
	// goroutine). It is taken inside localPods.mu on the pod path.
	renderMu sync.Mutex
	compiler *networkpolicy.Compiler // nil until the first render
	local    map[string]PodInfo      // local pods last compiled, by owner
	reported map[string]string       // "ns/name" → error text reported
	counts   map[string]int          // policy owner → number of flows
	nflows   int
}

// startPolicy starts NetworkPolicy realization in networkpolicy mode and
// returns the HasSynced of its informers; in other modes it does nothing.
// Without a Kubernetes client (Config.Kube nil: tests and labs that have
// no Pods or NetworkPolicies) policies cannot be enforced: it installs
// PolicyAllowAllFlows and says so.
func (a *Agent) startPolicy(ctx context.Context, nn netinformers.NetNamespaceInformer) ([]cache.InformerSynced, error) {
	if a.cn.Mode != clusternetwork.ModeNetworkPolicy {
		return nil, nil
	}
	if a.cfg.Kube == nil {
		klog.InfoS("NetworkPolicy is NOT enforced: networkpolicy mode without a Kubernetes client; all pod traffic is allowed")
		return nil, a.store.Set(OwnerPolicyAllowAll, PolicyAllowAllFlows())
	}
	p := &policyAgent{nodeName: a.cfg.NodeName, localSubnet: a.fc.LocalSubnet, store: a.store, m: a.m,
		recorder: a.cfg.Recorder, request: a.requestSync,
		dirty: map[string]bool{}, since: map[string]time.Time{}, local: map[string]PodInfo{},
		reported: map[string]string{}, counts: map[string]int{}}
	if p.recorder == nil {
		p.recorder = newEventRecorder(ctx, a.cfg)
	}
	synced, err := p.startInformers(ctx, a.cfg, nn)
	if err != nil {
		return nil, fmt.Errorf("NetworkPolicy informers: %w", err)
	}
	a.policy = p
	return synced, nil
}

// newEventRecorder records Events through the API server as "sdn-node" on
// this node, until ctx ends.
func newEventRecorder(ctx context.Context, cfg Config) record.EventRecorder {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cfg.Kube.CoreV1().Events("")})
	go func() {
		<-ctx.Done()
		b.Shutdown()
	}()
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "sdn-node", Host: cfg.NodeName})
}

func (p *policyAgent) startInformers(ctx context.Context, cfg Config, nn netinformers.NetNamespaceInformer) ([]cache.InformerSynced, error) {
	f := kubeinformers.NewSharedInformerFactory(cfg.Kube, informerResync)
	pods, nss, nps := f.Core().V1().Pods(), f.Core().V1().Namespaces(), f.Networking().V1().NetworkPolicies()
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
			return nil, err
		}
		synced = append(synced, reg.HasSynced)
	}
	f.Start(ctx.Done())
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
func (p *policyAgent) onPod(old, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if o, ok := old.(*corev1.Pod); ok && reflect.DeepEqual(podView(o), podView(pod)) {
		return
	}
	p.mark(pod.Namespace, false)
}

func (p *policyAgent) onNamespace(old, obj any) {
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
func (p *policyAgent) onPolicy(old, obj any) {
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
func (p *policyAgent) onNetNamespace(old, obj any) {
	nn, ok := obj.(*networkv1.NetNamespace)
	if !ok {
		return
	}
	if o, ok := old.(*networkv1.NetNamespace); ok && o.NetID == nn.NetID {
		return
	}
	p.mark(nn.NetName, true)
}

// mark records that namespace ns changed and wakes the sync goroutine.
func (p *policyAgent) mark(ns string, labelsChanged bool) {
	p.mu.Lock()
	p.dirty[ns] = p.dirty[ns] || labelsChanged
	if _, ok := p.since[ns]; !ok {
		p.since[ns] = time.Now()
	}
	p.mu.Unlock()
	p.request()
}

// take returns the marked namespaces and moves their event times in flight.
func (p *policyAgent) take() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.dirty
	p.dirty = map[string]bool{}
	for _, t := range p.since {
		p.inflight = append(p.inflight, t)
	}
	p.since = map[string]time.Time{}
	return d
}

// podsRendered is the renderer's hook after every renderPods (owner →
// local pod): the policy flows of the pods' namespaces land in the store
// before the caller syncs, so in the same bundle as the pod flows.
func (p *policyAgent) podsRendered(local map[string]PodInfo) error {
	if p == nil {
		return nil
	}
	p.renderMu.Lock()
	defer p.renderMu.Unlock()
	return p.renderLocked(local)
}

// render recompiles what the informers marked, with the local pods last
// rendered (sync loop, after the pods).
func (p *policyAgent) render() error {
	if p == nil {
		return nil
	}
	p.renderMu.Lock()
	defer p.renderMu.Unlock()
	return p.renderLocked(p.local)
}

// renderLocked recompiles what changed since the last render into the
// store. The first render compiles everything.
func (p *policyAgent) renderLocked(local map[string]PodInfo) error {
	dirty := p.take()
	p.diffLocal(local, dirty)
	if p.compiler != nil && len(dirty) == 0 {
		return nil
	}
	in, err := p.input(local)
	if err != nil {
		for ns, lc := range dirty {
			p.mark(ns, lc)
		}
		return fmt.Errorf("NetworkPolicy input: %w", err)
	}
	var changed map[string][]ovs.Flow
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
// went or changed IP, and remembers local.
func (p *policyAgent) diffLocal(local map[string]PodInfo, dirty map[string]bool) {
	touch := func(ns string) {
		if _, ok := dirty[ns]; !ok {
			dirty[ns] = false
		}
	}
	for owner, pod := range local {
		if old, ok := p.local[owner]; !ok || old.IP != pod.IP {
			touch(pod.Namespace)
		}
	}
	for owner, old := range p.local {
		if _, ok := local[owner]; !ok {
			touch(old.Namespace)
		}
	}
	p.local = make(map[string]PodInfo, len(local))
	for owner, pod := range local {
		p.local[owner] = pod
	}
}

// affected is the union of the namespaces depending on the dirty ones.
func (p *policyAgent) affected(dirty map[string]bool) []string {
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
func (p *policyAgent) apply(changed map[string][]ovs.Flow) error {
	var errs []error
	for owner, flows := range changed {
		if len(flows) == 0 {
			p.store.Delete(owner)
			p.count(owner, 0)
			continue
		}
		if err := p.store.Set(owner, flows); err != nil {
			errs = append(errs, err)
			continue
		}
		p.count(owner, len(flows))
	}
	p.m.policyFlows.Set(float64(p.nflows))
	return errors.Join(errs...)
}

func (p *policyAgent) count(owner string, n int) {
	p.nflows += n - p.counts[owner]
	if n == 0 {
		delete(p.counts, owner)
	} else {
		p.counts[owner] = n
	}
}

// synced is told the result of the sync that followed a render: on
// success every rendered event is realized.
func (p *policyAgent) synced(err error) {
	if p == nil || err != nil {
		return
	}
	p.mu.Lock()
	done := p.inflight
	p.inflight = nil
	p.mu.Unlock()
	now := time.Now()
	for _, t := range done {
		p.m.policyRealization.Observe(now.Sub(t).Seconds())
	}
}

// report sends one Warning Event per new or changed policy error.
func (p *policyAgent) report() {
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
		klog.InfoS("NetworkPolicy not enforced as written", "networkPolicy", key, "err", msg)
		if np, err := p.policies.NetworkPolicies(e.Namespace).Get(e.Name); err == nil {
			p.recorder.Eventf(np, corev1.EventTypeWarning, ReasonNetworkPolicyInvalid,
				"%s; this policy allows nothing in that direction (the pods it selects stay isolated), other policies are unaffected", msg)
		}
	}
	p.reported = current
}

// input is the compiler's snapshot: namespaces that have a VNID, the pods
// (see podFor) and every policy.
func (p *policyAgent) input(local map[string]PodInfo) (networkpolicy.Input, error) {
	var in networkpolicy.Input
	nets, err := p.nets.List(labels.Everything())
	if err != nil {
		return in, err
	}
	for _, nn := range nets {
		ns := networkpolicy.Namespace{Name: nn.NetName, VNID: nn.NetID}
		if obj, err := p.namespaces.Get(nn.NetName); err == nil {
			ns.Labels = obj.Labels
		}
		in.Namespaces = append(in.Namespaces, ns)
	}
	pods, err := p.pods.List(labels.Everything())
	if err != nil {
		return in, err
	}
	for _, pod := range pods {
		if np, ok := p.podFor(pod, local); ok {
			in.Pods = append(in.Pods, np)
		}
	}
	in.Policies, err = p.policies.List(labels.Everything())
	return in, err
}

// podFor converts a Pod. A local pod takes its IP from its br0 port and is
// left out without one; a remote pod takes status.podIPs (an address in
// this node's subnet is stale and ignored). Finished, host-network and
// address-less pods are left out: the compiler never selects them.
func (p *policyAgent) podFor(pod *corev1.Pod, local map[string]PodInfo) (networkpolicy.Pod, bool) {
	v := podView(pod)
	if v.finished || v.HostNetwork {
		return networkpolicy.Pod{}, false
	}
	np := networkpolicy.Pod{Namespace: pod.Namespace, Name: pod.Name, Labels: pod.Labels, Ports: v.Ports}
	if v.node == p.nodeName {
		lp, ok := local[PodOwner(pod.Namespace, pod.Name)]
		np.IP, np.Local = lp.IP, true
		return np, ok
	}
	np.IP = v.IP
	return np, np.IP.Is4() && !p.localSubnet.Contains(np.IP)
}

// policyPodView is what the compiler reads of a Pod.
type policyPodView struct {
	networkpolicy.Pod
	node     string
	finished bool
}

func podView(pod *corev1.Pod) policyPodView {
	v := policyPodView{node: pod.Spec.NodeName,
		finished: pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed}
	v.Labels, v.HostNetwork, v.IP = pod.Labels, pod.Spec.HostNetwork, statusIPv4(pod)
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name != "" && cp.ContainerPort > 0 && cp.ContainerPort < 1<<16 {
				v.Ports = append(v.Ports, networkpolicy.ContainerPort{Name: cp.Name, Protocol: cp.Protocol, Port: uint16(cp.ContainerPort)})
			}
		}
	}
	return v
}

// statusIPv4 is the pod's first IPv4 address in its status, or the zero
// Addr.
func statusIPv4(pod *corev1.Pod) netip.Addr {
	ips := []string{pod.Status.PodIP}
	for _, ip := range pod.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}
