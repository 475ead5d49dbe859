package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	informers "github.com/ovs-sdn/ovs-sdn/pkg/client/informers/externalversions"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// informerResync is the informers' resync period (as OpenShift SDN).
const informerResync = 30 * time.Minute

// startInformers starts the HostSubnet and NetNamespace informers and
// waits until their caches and handlers have seen the initial lists: no
// flow is rendered from a partial view.
func (a *Agent) startInformers(ctx context.Context) error {
	f := informers.NewSharedInformerFactory(a.cfg.Network, informerResync)
	hs := f.Network().V1().HostSubnets()
	nn := f.Network().V1().NetNamespaces()
	a.subnets = hs.Lister()
	hsReg, err := hs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.markNode(obj) },
		UpdateFunc: func(_, obj any) { a.markNode(obj) },
		DeleteFunc: func(obj any) { a.markNode(obj) },
	})
	if err != nil {
		return err
	}
	nnReg, err := nn.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.onNetNamespace(obj, false) },
		UpdateFunc: func(_, obj any) { a.onNetNamespace(obj, false) },
		DeleteFunc: func(obj any) { a.onNetNamespace(obj, true) },
	})
	if err != nil {
		return err
	}
	policySynced, err := a.startPolicy(ctx, nn) // networkpolicy mode: policy.go
	if err != nil {
		return err
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), append([]cache.InformerSynced{hsReg.HasSynced, nnReg.HasSynced}, policySynced...)...) {
		return fmt.Errorf("informers did not sync: %w", ctx.Err())
	}
	return nil
}

// markNode marks the HostSubnet's node dirty. Handlers never render.
func (a *Agent) markNode(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	hs, ok := obj.(*networkv1.HostSubnet)
	if !ok {
		return
	}
	a.mu.Lock()
	a.dirty.nodes[hs.Name] = struct{}{}
	a.mu.Unlock()
	a.requestSync()
}

// onNetNamespace updates the VNID map and marks the local pods dirty: a
// VNID change rewrites the flows of that namespace's pods.
func (a *Agent) onNetNamespace(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	nn, ok := obj.(*networkv1.NetNamespace)
	if !ok {
		return
	}
	if deleted {
		a.vnids.Delete(nn.NetName)
	} else {
		a.vnids.Set(nn.NetName, nn.NetID)
	}
	a.markPods()
}

// markPods marks the local pods dirty (OVSDB port change, VNID change).
func (a *Agent) markPods() {
	a.mu.Lock()
	a.dirty.pods = true
	a.mu.Unlock()
	a.requestSync()
}

// requestSync wakes the sync loop; requests made while a sync is pending
// coalesce into it.
func (a *Agent) requestSync() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

func (a *Agent) takeDirty() dirtySet {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.dirty
	a.dirty = dirtySet{nodes: map[string]struct{}{}}
	return d
}

// renderAll marks everything dirty and renders it.
func (a *Agent) renderAll(ctx context.Context) error {
	names, err := a.r.allNodeNames()
	if err != nil {
		return err
	}
	a.mu.Lock()
	for _, n := range names {
		a.dirty.nodes[n] = struct{}{}
	}
	a.dirty.pods = true
	a.mu.Unlock()
	return a.render(ctx)
}

// render renders every dirty owner into the store. What could not be
// rendered (OVSDB unreachable) is marked dirty again.
func (a *Agent) render(ctx context.Context) error {
	d := a.takeDirty()
	var errs []error
	for name := range d.nodes {
		errs = append(errs, a.r.renderNode(name))
	}
	if len(d.nodes) > 0 {
		errs = append(errs, a.r.renderMulticast())
	}
	if d.pods {
		ports, err := a.db.Ports(ctx, BridgeName)
		if err != nil {
			a.markPods()
			return fmt.Errorf("list pod ports: %w", err)
		}
		errs = append(errs, a.pods.render(a.r, ports)) // merged with CNI calls (cni_server.go)
	}
	errs = append(errs, a.policy.render()) // NetworkPolicy changes (policy.go)
	return errors.Join(errs...)
}

// syncOnce renders the dirty owners and applies the difference.
func (a *Agent) syncOnce(ctx context.Context) error {
	defer a.m.timeSync("incremental", time.Now())
	if err := a.render(ctx); err != nil {
		klog.ErrorS(err, "Rendering flows") // a renderer conflict must not block other owners
	}
	err := a.store.Sync(ctx, a.br)
	a.observeStore()
	a.policy.synced(err)
	return err
}

func (a *Agent) fullSync(ctx context.Context) error {
	defer a.m.timeSync("full", time.Now())
	err := a.store.FullSync(ctx, a.br)
	a.observeStore()
	a.policy.synced(err)
	return err
}

func (a *Agent) observeStore() {
	a.m.flows.Set(float64(a.store.Len()))
	a.m.pendingOwners.Set(float64(a.store.Pending()))
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
		case <-a.trigger:
			err = a.syncOnce(ctx)
		case <-retry.C:
			err = a.syncOnce(ctx)
		case <-full.C:
			err = a.fullSync(ctx)
		case <-health.C:
			err = a.checkVersionFlow(ctx)
		case <-a.db.Disconnected():
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
	want := VersionFlow(a.fc)
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
	if err := a.setupOVS(ctx, a.db); err != nil {
		return err
	}
	a.markPods()
	if err := a.render(ctx); err != nil {
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
	a.db.Close()
	for ctx.Err() == nil {
		db, err := a.cfg.Dial(ctx, a.cfg.OVSDBEndpoint)
		if err == nil {
			a.db = db
			db.OnPortChange(a.markPods)
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
