package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/informers/externalversions"
	networklisters "github.com/ovs-sdn/ovs-sdn/pkg/client/listers/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/subnet"
	"github.com/ovs-sdn/ovs-sdn/pkg/vnid"
)

// eventComponent is the source.component of every Event the controller emits.
const eventComponent = "sdn-controller"

// controller is one leadership term: informers, allocators, queues. It is
// built fresh each time the Lease is acquired, so its allocators are always
// rebuilt from a fresh LIST of the API.
type controller struct {
	opts    Options
	cfg     *clusternetwork.Config
	metrics *metrics

	kubeInformers    informers.SharedInformerFactory
	networkInformers externalversions.SharedInformerFactory
	nodes            corelisters.NodeLister
	namespaces       corelisters.NamespaceLister
	hostSubnets      networklisters.HostSubnetLister
	netNamespaces    networklisters.NetNamespaceLister
	networkPolicies  netlisters.NetworkPolicyLister // networkpolicy mode only
	hostSubnetIndex  cache.Indexer                  // HostSubnets, also indexed by subnet
	netNamespaceIdx  cache.Indexer                  // NetNamespaces, also indexed by netid
	informersSynced  []cache.InformerSynced

	egressPolicies networklisters.EgressNetworkPolicyLister // every mode

	subnets *subnet.Allocator
	vnids   *vnid.Allocator
	// vnidMu serialises decisions that read VNID references from the cache
	// and then allocate, release or write a netid, so two of them never
	// interleave.
	vnidMu sync.Mutex

	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder

	hostSubnetQueue   *workQueue
	netNamespaceQueue *workQueue
	conflictQueue     *workQueue // one key: conflictsKey
	policyQueue       *workQueue // networkpolicy mode: "namespace/name"
	egressQueue       *workQueue // VNID modes; one key: egressKey
	// egressFirewallQueue has one key, egressFirewallKey (every mode).
	egressFirewallQueue *workQueue

	// egressHealth is the reachability of egress nodes (VNID modes).
	egressHealth *egressHealth
	egress       egressGauges

	// conflictingHostSubnets is the number of losing HostSubnets found by
	// the last conflict reconcile (a gauge).
	conflictingHostSubnets atomic.Int64
	// invalidPolicies are the NetworkPolicies Validate currently rejects.
	invalidPolicies keySet
	// invalidEgressPolicies are the EgressNetworkPolicies not enforced as
	// written; egressEventsSeen the facts already recorded this term.
	invalidEgressPolicies, egressEventsSeen keySet
}

func newController(opts Options, cfg *clusternetwork.Config, m *metrics) *controller {
	c := &controller{opts: opts, cfg: cfg, metrics: m}
	c.kubeInformers = informers.NewSharedInformerFactory(opts.Kube, 0)
	c.networkInformers = externalversions.NewSharedInformerFactory(opts.Network, 0)
	c.hostSubnetQueue = newWorkQueue("hostsubnets", &hostSubnetReconciler{c: c}, opts.MaxRetryDelay)
	c.netNamespaceQueue = newWorkQueue("netnamespaces", &netNamespaceReconciler{c: c}, opts.MaxRetryDelay)
	c.conflictQueue = newWorkQueue("hostsubnet-conflicts", &hostSubnetConflictReconciler{c: c}, opts.MaxRetryDelay)
	c.policyQueue = newWorkQueue("networkpolicies", &networkPolicyReconciler{c: c}, opts.MaxRetryDelay)
	c.egressQueue = newWorkQueue("egressips", &egressReconciler{c: c}, opts.MaxRetryDelay)
	c.egressFirewallQueue = newWorkQueue("egressfirewalls", &egressFirewallReconciler{c: c}, opts.MaxRetryDelay)
	c.egressHealth = newEgressHealth(opts)
	return c
}

// run starts informers, waits for their caches, rebuilds the allocators and
// reconciles until ctx is done. It returns nil when ctx ends and an error
// only when the controller cannot start.
func (c *controller) run(ctx context.Context) error {
	var err error
	if c.subnets, err = subnet.NewAllocator(c.cfg.ClusterNetworks); err != nil {
		return fmt.Errorf("clusternetwork %q: %w", networkv1.ClusterNetworkDefault, err)
	}
	if c.vnids, err = vnid.NewAllocatorRange(c.opts.VNIDRange.Min, c.opts.VNIDRange.Max, c.opts.Rand); err != nil {
		return fmt.Errorf("options: VNIDRange: %w", err)
	}
	if err := c.setupInformers(); err != nil {
		return err
	}
	c.startEvents()
	defer c.broadcaster.Shutdown()
	c.kubeInformers.Start(ctx.Done())
	c.networkInformers.Start(ctx.Done())
	defer c.kubeInformers.Shutdown()
	defer c.networkInformers.Shutdown()
	if !cache.WaitForNamedCacheSync(eventComponent, ctx.Done(), c.informersSynced...) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("informer caches of nodes, namespaces, hostsubnets and netnamespaces did not sync")
	}
	c.rebuild()
	c.metrics.setSource(c)
	defer c.metrics.setSource(nil)
	c.opts.Status.setSynced()
	klog.InfoS("Caches synced and allocators rebuilt; reconciling", "mode", c.cfg.Mode,
		"hostSubnets", c.subnets.Allocated(), "vnids", c.vnids.Allocated())
	var wg sync.WaitGroup
	for q, workers := range c.queues() {
		wg.Add(1)
		go func() { defer wg.Done(); q.run(ctx, workers) }()
	}
	if c.cfg.Mode.UsesVNIDs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.egressHealth.run(ctx, c.egressTargets, func() { c.egressQueue.add(egressKey) })
		}()
	}
	wg.Wait()
	return nil
}

// queues returns the work queues of this mode with their number of workers.
// Queues with a single key get one worker.
func (c *controller) queues() map[*workQueue]int {
	qs := map[*workQueue]int{c.hostSubnetQueue: c.opts.Workers, c.conflictQueue: 1, c.egressFirewallQueue: 1}
	if c.cfg.Mode.UsesVNIDs() {
		qs[c.netNamespaceQueue] = c.opts.Workers
		qs[c.egressQueue] = 1
	}
	if c.cfg.Mode == clusternetwork.ModeNetworkPolicy {
		qs[c.policyQueue] = c.opts.Workers
	}
	return qs
}

// startEvents connects an EventRecorder (component sdn-controller) to the API.
func (c *controller) startEvents() {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = networkv1.AddToScheme(scheme)
	c.broadcaster = record.NewBroadcaster()
	c.broadcaster.StartStructuredLogging(4)
	c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.opts.Kube.CoreV1().Events("")})
	c.recorder = c.broadcaster.NewRecorder(scheme, corev1.EventSource{Component: eventComponent, Host: c.opts.Identity})
}

// gaugeSource implementation, read on metric scrapes.
func (c *controller) subnetsAllocated() int       { return c.subnets.Allocated() }
func (c *controller) subnetsFree() int            { return c.subnets.Free() }
func (c *controller) vnidsAllocated() int         { return c.vnids.Allocated() }
func (c *controller) invalidNetworkPolicies() int { return c.invalidPolicies.len() }
func (c *controller) invalidEgressNetworkPolicies() int {
	return c.invalidEgressPolicies.len()
}
func (c *controller) egressIPsAssigned() int      { return int(c.egress.assigned.Load()) }
func (c *controller) egressIPsActive() int        { return int(c.egress.active.Load()) }
func (c *controller) egressNodesUnreachable() int { return int(c.egress.unreachable.Load()) }
func (c *controller) hostSubnetConflicts() int {
	return int(c.conflictingHostSubnets.Load())
}
func (c *controller) multicastNamespaces() int {
	if c.netNamespaces == nil {
		return 0 // subnet mode: no NetNamespace informer
	}
	all, err := c.netNamespaces.List(everything)
	if err != nil {
		return 0
	}
	n := 0
	for _, ns := range all {
		if ns.Annotations[networkv1.MulticastEnabledAnnotation] == "true" {
			n++
		}
	}
	return n
}
