package node

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"errors"
	informers "github.com/ovs-sdn/ovs-sdn/pkg/client/informers/externalversions"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/iptables"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/vnid"
)

// feature is one part of br0's pipeline the agent hosts (STYLE L16): the
// stage of pkg/pipeline it renders (tables and priority bands), the
// informers it waits for, and a render of its dirty keys into the flow
// store, one owner at a time. A new stage of br0 is a new feature (one
// file) added to features(); the sync loop does not change.
//
// Contract. start is called once, before the informer factories start: it
// registers handlers that only mark keys (env.mark, never render) and
// returns what must have synced before the first render. render is called
// with the keys marked since the feature's last render (all=true: every
// key, at start-up and after a rebuild); renders never run concurrently
// (the agent's render lock) and run in features() order within one pass, so
// a feature may read what an earlier one published in the same pass (the
// local pods) and marks made by an earlier feature reach a later one in the
// same pass. render Sets or Deletes the owners its keys affect through
// env.set, which refuses flows outside the feature's stage. It must be
// idempotent (rendering a key twice changes nothing); a key it could not
// render it marks again, to be retried.
type feature interface {
	name() string
	stage() pipeline.Stage
	start(ctx context.Context, e *env) ([]cache.InformerSynced, error)
	render(ctx context.Context, keys []string, all bool) error
}

// syncer is a feature that acts once what it rendered is on br0: synced is
// called, under the render lock, after every successful sync.
type syncer interface {
	synced(ctx context.Context)
}

// Feature names: the keys of the dirty queue and the label of the
// realization metric.
const (
	featureBase          = "base"
	featureNodes         = "nodes"
	featurePods          = "pods"
	featureIsolation     = "isolation"
	featureNetworkPolicy = "networkpolicy"
	featureMulticast     = "multicast"
)

// features returns the agent's features in render order for the isolation
// mode. This is the one place that assembles the pipeline from the mode.
func (e *env) features() []feature {
	fs := []feature{&baseFeature{e: e}, &nodesFeature{e: e}, &podsFeature{e: e}, &isolationFeature{e: e}}
	if e.iso.EnforcesNetworkPolicy() {
		if e.cfg.Kube == nil {
			fs = append(fs, &allowAllFeature{e: e})
		} else {
			fs = append(fs, newPolicyFeature(e))
		}
	}
	if e.fc.OVSProxy() {
		fs = append(fs, newServicesFeature(e))
	}
	if e.iso.UsesVNIDs() {
		fs = append(fs, newEgressIPFeature(e), &multicastFeature{e: e})
	}
	return fs
}

// env is what features share: the node's configuration, the flow store,
// the dirty queue, the informer factories, the VNID map and the local pods
// the pods feature publishes. Everything but the informer factories'
// caches and the VNID map is used only under the agent's render lock.
type env struct {
	cfg   *Config
	cn    *clusternetwork.Config
	fc    pipeline.FlowConfig
	iso   pipeline.Isolation
	m     *metrics
	store *FlowStore
	queue *dirtyQueue
	vnids *vnid.Map
	pods  *localPods // OVSDB view + CNI calls (pods.go)
	db    SwitchDB   // replaced on reconnect, under the render lock

	net  informers.SharedInformerFactory
	kube kubeinformers.SharedInformerFactory // nil without Config.Kube

	recorder record.EventRecorder
	// local is the local pods last rendered by the pods feature, by owner
	// key; later features read it in the same pass.
	local map[string]pipeline.PodInfo
	// stages maps a feature name to its stage, for set.
	stages map[string]pipeline.Stage
	// ipt is the node's iptables (set up before the features start).
	ipt iptables.Interface
}

// iptables returns the node's iptables.
func (e *env) iptables() (iptables.Interface, error) {
	if e.ipt == nil {
		return nil, errors.New("iptables not set up")
	}
	return e.ipt, nil
}

// set makes flows the desired flows of owner for feature f, after checking
// that every flow lies in f's stage: a renderer that strays out of its
// bands could shadow another feature's flows, so the owner is refused
// (its previous flows stay) and the error names the flow.
func (e *env) set(f string, owner pipeline.Owner, flows []ovs.Flow) error {
	if err := pipeline.CheckFlowBands(e.stages[f], flows); err != nil {
		return fmt.Errorf("owner %s: %w", owner, err)
	}
	return e.store.Set(owner, flows)
}

// setWithGroups is set for an owner that also owns groups.
func (e *env) setWithGroups(f string, owner pipeline.Owner, flows []ovs.Flow, groups []ovs.GroupEntry) error {
	if err := pipeline.CheckFlowBands(e.stages[f], flows); err != nil {
		return fmt.Errorf("owner %s: %w", owner, err)
	}
	return e.store.SetWithGroups(owner, flows, groups)
}

// mark marks key of feature f dirty and wakes the sync loop.
func (e *env) mark(f, key string) { e.queue.mark(f, key) }

// dirtyQueue is the agent's one record of what changed: per feature, the
// keys marked since its last render, each with the time of its first mark
// (realization latency). mark never blocks; a pending sync request
// coalesces all marks made before it runs. Safe for concurrent use.
type dirtyQueue struct {
	mu       sync.Mutex
	keys     map[string]map[string]time.Time // feature → key → first mark
	all      map[string]bool                 // feature → render every key
	inflight map[string][]time.Time          // feature → marks rendered, not yet applied
	trigger  chan struct{}                   // size 1
	now      func() time.Time
}

func newDirtyQueue() *dirtyQueue {
	return &dirtyQueue{keys: map[string]map[string]time.Time{}, all: map[string]bool{},
		inflight: map[string][]time.Time{}, trigger: make(chan struct{}, 1), now: time.Now}
}

// mark records key of feature f and requests a sync.
func (q *dirtyQueue) mark(f, key string) {
	q.mu.Lock()
	if q.keys[f] == nil {
		q.keys[f] = map[string]time.Time{}
	}
	if _, ok := q.keys[f][key]; !ok {
		q.keys[f][key] = q.now()
	}
	q.mu.Unlock()
	q.request()
}

// markAll makes the next render of f render every key.
func (q *dirtyQueue) markAll(f string) {
	q.mu.Lock()
	q.all[f] = true
	q.mu.Unlock()
	q.request()
}

// request wakes the sync loop; requests made while one is pending
// coalesce into it.
func (q *dirtyQueue) request() {
	select {
	case q.trigger <- struct{}{}:
	default:
	}
}

// take returns f's marked keys (sorted) and whether all are to be
// rendered, and moves their mark times in flight.
func (q *dirtyQueue) take(f string) (keys []string, all bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for k, t := range q.keys[f] {
		keys = append(keys, k)
		q.inflight[f] = append(q.inflight[f], t)
	}
	delete(q.keys, f)
	all = q.all[f]
	delete(q.all, f)
	sort.Strings(keys)
	return keys, all
}

// applied is told that everything rendered so far is on br0: it returns,
// per feature, the time from each mark to now, and forgets them.
func (q *dirtyQueue) applied() map[string][]time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	out := make(map[string][]time.Duration, len(q.inflight))
	for f, times := range q.inflight {
		for _, t := range times {
			out[f] = append(out[f], now.Sub(t))
		}
	}
	q.inflight = map[string][]time.Time{}
	return out
}

// keyCount returns the number of keys marked for feature f.
func (q *dirtyQueue) keyCount(f string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.keys[f])
}

// has reports whether feature f has marked keys.
func (q *dirtyQueue) has(f string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.keys[f]) > 0 || q.all[f]
}
