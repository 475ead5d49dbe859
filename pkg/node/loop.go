package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	informers "github.com/ovs-sdn/ovs-sdn/pkg/client/informers/externalversions"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// informerResync is the informers' resync period (as OpenShift SDN).
const informerResync = 30 * time.Minute

// startFeatures builds the features of the mode, starts the informers they
// and the VNID map need, and waits until their caches and handlers have
// seen the initial lists: no flow is rendered from a partial view.
func (a *Agent) startFeatures(ctx context.Context) error {
	e := a.env
	e.net = informers.NewSharedInformerFactory(a.cfg.Network, informerResync)
	if a.cfg.Kube != nil {
		e.kube = kubeinformers.NewSharedInformerFactory(a.cfg.Kube, informerResync)
		e.recorder = a.cfg.Recorder
		if e.recorder == nil {
			e.recorder = newEventRecorder(ctx, &a.cfg)
		}
	}
	synced, err := a.startVNIDs()
	if err != nil {
		return err
	}
	a.features = e.features()
	e.stages = map[string]pipeline.Stage{}
	for _, f := range a.features {
		e.stages[f.name()] = f.stage()
		s, err := f.start(ctx, e)
		if err != nil {
			return fmt.Errorf("feature %s: %w", f.name(), err)
		}
		synced = append(synced, s...)
	}
	e.net.Start(ctx.Done())
	if e.kube != nil {
		e.kube.Start(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("informers did not sync: %w", ctx.Err())
	}
	return nil
}

// startVNIDs keeps the VNID map (namespace → VNID) from NetNamespaces; a
// VNID change rewrites the flows of that namespace's pods.
func (a *Agent) startVNIDs() ([]cache.InformerSynced, error) {
	handle := func(obj any, deleted bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		nn, ok := obj.(*networkv1.NetNamespace)
		if !ok {
			return
		}
		if deleted {
			a.env.vnids.Delete(nn.NetName)
		} else {
			a.env.vnids.Set(nn.NetName, nn.NetID)
		}
		a.env.mark(featurePods, keyVNIDs)
	}
	reg, err := a.env.net.Network().V1().NetNamespaces().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { handle(obj, false) },
		UpdateFunc: func(_, obj any) { handle(obj, false) },
		DeleteFunc: func(obj any) { handle(obj, true) },
	})
	if err != nil {
		return nil, err
	}
	return []cache.InformerSynced{reg.HasSynced}, nil
}

// markPorts marks br0's ports changed (OVSDB).
func (a *Agent) markPorts() { a.env.mark(featurePods, keyPorts) }

// renderAll marks every key of every feature and renders.
func (a *Agent) renderAll(ctx context.Context) error {
	for _, f := range a.features {
		a.env.queue.markAll(f.name())
	}
	_, err := a.render(ctx)
	return err
}

// render runs one render pass: every feature, in order, with the keys
// marked for it. It returns the mark times of everything rendered so far
// and not yet applied (for the realization metrics of the sync that
// follows). A feature's failure does not stop the others.
func (a *Agent) render(ctx context.Context) (map[string][]time.Duration, error) {
	a.renderMu.Lock()
	defer a.renderMu.Unlock()
	var errs []error
	for _, f := range a.features {
		keys, all := a.env.queue.take(f.name())
		if len(keys) == 0 && !all {
			continue
		}
		if err := f.render(ctx, keys, all); err != nil {
			errs = append(errs, fmt.Errorf("feature %s: %w", f.name(), err))
		}
	}
	return a.env.queue.applied(), errors.Join(errs...)
}

// sync renders what is marked and applies the difference as one bundle.
// Callers: the sync loop and the CNI calls.
func (a *Agent) sync(ctx context.Context) error {
	defer a.m.timeSync("incremental", time.Now())
	waits, err := a.render(ctx)
	if err != nil {
		klog.ErrorS(err, "Rendering flows") // a renderer conflict must not block other owners
	}
	err = a.store.Sync(ctx, a.br)
	a.observeStore()
	if err == nil {
		a.observeRealization(waits)
		a.synced(ctx)
	}
	return err
}

// synced tells the features that act after a sync (syncer) that br0 holds
// everything rendered so far.
func (a *Agent) synced(ctx context.Context) {
	a.renderMu.Lock()
	defer a.renderMu.Unlock()
	for _, f := range a.features {
		if s, ok := f.(syncer); ok {
			s.synced(ctx)
		}
	}
}

func (a *Agent) fullSync(ctx context.Context) error {
	defer a.m.timeSync("full", time.Now())
	err := a.store.FullSync(ctx, a.br)
	a.observeStore()
	return err
}

func (a *Agent) observeStore() {
	a.m.flows.Set(float64(a.store.Len()))
	a.m.pendingOwners.Set(float64(a.store.Pending()))
}

// observeRealization records, per feature, the time from each event to the
// bundle that realized it.
func (a *Agent) observeRealization(waits map[string][]time.Duration) {
	for f, ds := range waits {
		for _, d := range ds {
			a.m.realization.WithLabelValues(f).Observe(d.Seconds())
			if f == featureNetworkPolicy {
				a.m.policyRealization.Observe(d.Seconds())
			}
		}
	}
}

// policyFeature returns the NetworkPolicy feature, or nil in other modes
// and without a Kubernetes client.
func (a *Agent) policyFeature() *policyFeature {
	for _, f := range a.features {
		if p, ok := f.(*policyFeature); ok {
			return p
		}
	}
	return nil
}

// renderedPod returns the local pod last rendered for owner.
func (a *Agent) renderedPod(owner pipeline.Owner) (pipeline.PodInfo, bool) {
	a.renderMu.Lock()
	defer a.renderMu.Unlock()
	p, ok := a.env.local[owner.String()]
	return p, ok
}

// loop is the one goroutine that renders and applies.
func (a *Agent) loop(ctx context.Context) {
	full := time.NewTicker(a.cfg.FullSyncPeriod)
	defer full.Stop()
	health := time.NewTicker(a.cfg.HealthCheckPeriod)
	defer health.Stop()
	retry := time.NewTimer(0)
	<-retry.C
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-a.env.queue.trigger:
			err = a.sync(ctx)
		case <-retry.C:
			err = a.sync(ctx)
		case <-full.C:
			err = a.fullSync(ctx)
		case <-health.C:
			err = a.checkVersionFlow(ctx)
		case <-a.env.db.Disconnected():
			err = a.reconnect(ctx)
		}
		if err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Node sync failed; retrying")
			retry.Reset(time.Second)
		}
	}
}

// checkVersionFlow detects an ovs-vswitchd restart (or a deleted bridge):
// the version flow, written last, is gone. The bridge, tun0 and all flows
// are then rebuilt.
func (a *Agent) checkVersionFlow(ctx context.Context) error {
	flows, err := a.br.DumpFlows(ctx, ovs.InTable(ovs.TableVersion))
	if ctx.Err() != nil {
		return ctx.Err() // stopping: a dump cut short is not a missing flow
	}
	want := pipeline.VersionFlow(a.fc)
	if err == nil {
		for _, f := range flows {
			if f.Flow.Equal(want) {
				return nil
			}
		}
	}
	klog.InfoS("Version flow missing on br0 (OVS restarted?); rebuilding", "dumpErr", err)
	return a.rebuild(ctx)
}

// rebuild re-creates the bridge, ports and tun0 address, re-reads the pod
// ports and fully syncs the flows.
func (a *Agent) rebuild(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, rebuildTimeout)
	defer cancel()
	if err := a.setupOVS(ctx, a.env.db); err != nil {
		return err
	}
	a.markPorts()
	if _, err := a.render(ctx); err != nil {
		return err
	}
	if err := a.fullSync(ctx); err != nil {
		return err
	}
	a.ready.Store(true)
	return nil
}

// rebuildTimeout bounds a rebuild, which waits for ovs-vswitchd; the next
// health check retries.
const rebuildTimeout = 30 * time.Second

// reconnect replaces a lost OVSDB connection (ovsdb-server restarted) and
// rebuilds. Readiness is false meanwhile.
func (a *Agent) reconnect(ctx context.Context) error {
	a.ready.Store(false)
	klog.InfoS("Lost the OVSDB connection; reconnecting", "endpoint", a.cfg.OVSDBEndpoint)
	a.env.db.Close()
	for ctx.Err() == nil {
		db, err := a.cfg.Dial(ctx, a.cfg.OVSDBEndpoint)
		if err == nil {
			a.renderMu.Lock()
			a.env.db = db
			a.renderMu.Unlock()
			db.OnPortChange(a.markPorts)
			break
		}
		klog.ErrorS(err, "OVSDB reconnect failed")
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return a.rebuild(ctx)
}
