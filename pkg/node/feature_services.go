package node

// Services in br0 (--proxy-mode=ovs, SPEC §4.5): the agent side of
// pkg/proxy.
//
// Inputs. Informers on Services and EndpointSlices (discovery.k8s.io/v1),
// converted per Service by proxy.Build (the conversion sdnctl uses too).
//
// Triggers. Handlers mark the Service concerned ("ns/name"; a slice marks
// the Service named by its kubernetes.io/service-name label) in the dirty
// queue. A render re-reads each marked Service and its slices and Sets its
// owner (pipeline.ServiceOwner) with its flows and groups, so an
// EndpointSlice change touches only that Service's flows and groups, and
// everything pending goes to br0 in one bundle. The static flows of the
// proxy (pipeline.ServiceProxyFlows) are rendered on a full render.
//
// IDs. Every port gets a group ID that stays while the port exists
// (proxy.IDAllocator): a group that keeps its ID is modified in place, so
// established connections (which bypass the group through conntrack) and
// the other Services are untouched by a change.
//
// Removed endpoints. kube-proxy deletes the conntrack entries of UDP flows
// to an endpoint that left (UDP has no close: a client would keep sending
// to it). The agent does the same once the bundle that removed the
// endpoint is on br0 (synced), with a partial-tuple
// dpctl/flush-conntrack on the reply tuple (source = the endpoint), in
// zone 0 and in the SNAT zone. TCP and SCTP connections are left alone: a
// connection to a deleted pod is reset by its peer or times out, as with
// kube-proxy.
//
// Bad Services. proxy.ServiceError: the Service (or port) gets no flows,
// one Warning Event "ServiceNotProgrammed" per node and change, and a log.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/proxy"
)

const featureServices = "services"

// servicesFeature programs the node's Services. Keys are "ns/name".
type servicesFeature struct {
	e *env

	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister

	ids      *proxy.IDAllocator
	ports    map[string][]proxy.ServicePort // Service key → ports last rendered
	reported map[string]string              // Service key → error text reported
	// flush holds the UDP endpoints removed by renders whose bundle is not
	// yet on br0; synced flushes their conntrack entries.
	flush []netip.AddrPort
	// flushConntrack runs dpctl/flush-conntrack; a seam for tests.
	flushConntrack func(ctx context.Context, args ...string) error
}

func newServicesFeature(e *env) *servicesFeature {
	f := &servicesFeature{e: e, ids: proxy.NewIDAllocator(), ports: map[string][]proxy.ServicePort{}, reported: map[string]string{}}
	f.flushConntrack = func(ctx context.Context, args ...string) error {
		target, err := vswitchdTarget(ovsRunDir(e.cfg.OVSDBEndpoint))
		if err != nil {
			return err
		}
		_, err = ovs.Appctl(ctx, 5*time.Second, target, append([]string{"dpctl/flush-conntrack"}, args...)...)
		return err
	}
	return f
}

func (*servicesFeature) name() string { return featureServices }

// stage is the proxy's static bands and the per-Service bands.
func (*servicesFeature) stage() pipeline.Stage {
	return pipeline.Stage{Name: "services",
		Bands: append(slices.Clone(pipeline.StageServiceProxy.Bands), pipeline.StageServices.Bands...)}
}

func (f *servicesFeature) start(_ context.Context, e *env) ([]cache.InformerSynced, error) {
	if e.kube == nil {
		return nil, nil // static flows only: no Services without an API client
	}
	svcs, eps := e.kube.Core().V1().Services(), e.kube.Discovery().V1().EndpointSlices()
	for _, inf := range []cache.SharedIndexInformer{svcs.Informer(), eps.Informer()} {
		if err := inf.SetTransform(dropManagedFields); err != nil {
			return nil, err
		}
	}
	f.services, f.slices = svcs.Lister(), eps.Lister()
	var synced []cache.InformerSynced
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		fn  func(old, obj any)
	}{{svcs.Informer(), f.onService}, {eps.Informer(), f.onSlice}} {
		reg, err := h.inf.AddEventHandler(changeHandler(h.fn))
		if err != nil {
			return nil, fmt.Errorf("Service informers: %w", err)
		}
		synced = append(synced, reg.HasSynced)
	}
	return synced, nil
}

func (f *servicesFeature) onService(old, obj any) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	if o, ok := old.(*corev1.Service); ok && o.ResourceVersion == svc.ResourceVersion {
		return // resync
	}
	f.e.mark(featureServices, svc.Namespace+"/"+svc.Name)
}

func (f *servicesFeature) onSlice(old, obj any) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	if o, ok := old.(*discoveryv1.EndpointSlice); ok && o.ResourceVersion == es.ResourceVersion {
		return
	}
	if name := es.Labels[discoveryv1.LabelServiceName]; name != "" {
		f.e.mark(featureServices, es.Namespace+"/"+name)
	}
	if o, ok := old.(*discoveryv1.EndpointSlice); ok {
		if name := o.Labels[discoveryv1.LabelServiceName]; name != "" && name != es.Labels[discoveryv1.LabelServiceName] {
			f.e.mark(featureServices, o.Namespace+"/"+name)
		}
	}
}

// render re-renders the marked Services (all of them, and the static
// flows, when all is set).
func (f *servicesFeature) render(_ context.Context, keys []string, all bool) error {
	var errs []error
	if all {
		errs = append(errs, f.e.set(featureServices, pipeline.OwnerServiceProxy, pipeline.ServiceProxyFlows(f.e.fc)))
		if f.services == nil {
			return errors.Join(errs...)
		}
		list, err := f.services.List(labels.Everything())
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		set := map[string]bool{}
		for _, s := range list {
			set[s.Namespace+"/"+s.Name] = true
		}
		for k := range f.ports {
			set[k] = true
		}
		keys = keys[:0]
		for k := range set {
			keys = append(keys, k)
		}
		slices.Sort(keys) // IDs are assigned in key order: the same after a restart
	}
	for _, k := range keys {
		if err := f.renderService(k); err != nil {
			errs = append(errs, err)
		}
	}
	f.observe()
	return errors.Join(errs...)
}

// renderService sets (or deletes) the owner of Service key.
func (f *servicesFeature) renderService(key string) error {
	ns, name, _ := strings.Cut(key, "/")
	owner := pipeline.ServiceOwner(ns, name)
	svc, err := f.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		f.forget(key, owner)
		return nil
	}
	if err != nil {
		f.e.mark(featureServices, key)
		return err
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name})
	eps, err := f.slices.EndpointSlices(ns).List(sel)
	if err != nil {
		f.e.mark(featureServices, key)
		return err
	}
	ports, serr := proxy.Build(proxy.Sources{Node: f.e.cfg.NodeName, Services: []*corev1.Service{svc}, Slices: eps})
	f.report(key, svc, serr)
	old := f.ports[key]
	f.ids.Assign(ports)
	f.releaseGone(old, ports)
	flows, groups := proxy.Render(f.e.fc, ports)
	if err := f.e.setWithGroups(featureServices, owner, flows, groups); err != nil {
		// The previous flows stay (the store refused the owner); keep the
		// ports they were rendered from.
		return err
	}
	f.queueFlush(old, ports)
	if len(ports) == 0 {
		delete(f.ports, key)
	} else {
		f.ports[key] = ports
	}
	return nil
}

// forget removes a deleted Service.
func (f *servicesFeature) forget(key string, owner pipeline.Owner) {
	old := f.ports[key]
	f.e.store.Delete(owner)
	f.releaseGone(old, nil)
	f.queueFlush(old, nil)
	delete(f.ports, key)
	delete(f.reported, key)
}

// releaseGone frees the IDs of ports in old that are not in ports.
func (f *servicesFeature) releaseGone(old, ports []proxy.ServicePort) {
	for _, p := range old {
		if !slices.ContainsFunc(ports, func(n proxy.ServicePort) bool { return n.Key() == p.Key() }) {
			f.ids.Release(p.Key())
		}
	}
}

// queueFlush records the UDP endpoints of old that ports no longer has.
func (f *servicesFeature) queueFlush(old, ports []proxy.ServicePort) {
	keep := map[netip.AddrPort]bool{}
	for _, p := range ports {
		if p.Protocol == ovs.ProtoUDP {
			for _, ep := range p.Endpoints {
				keep[netip.AddrPortFrom(ep.IP, ep.Port)] = true
			}
		}
	}
	for _, p := range old {
		if p.Protocol != ovs.ProtoUDP {
			continue
		}
		for _, ep := range p.Endpoints {
			if ap := netip.AddrPortFrom(ep.IP, ep.Port); !keep[ap] {
				keep[ap] = true // once
				f.flush = append(f.flush, ap)
			}
		}
	}
}

// synced is called once everything rendered so far is on br0: it flushes
// the conntrack entries of the UDP endpoints that left. A failure is
// logged (the entries then expire on their own, 30 s idle for UDP).
func (f *servicesFeature) synced(ctx context.Context) {
	for _, ap := range f.flush {
		reply := fmt.Sprintf("ct_nw_proto=17,ct_nw_src=%s,ct_tp_src=%d", ap.Addr(), ap.Port())
		for _, zone := range []uint16{0, ovs.SNATZone} {
			if err := f.flushConntrack(ctx, fmt.Sprintf("zone=%d", zone), "", reply); err != nil {
				klog.ErrorS(err, "Flushing UDP conntrack entries of a removed Service endpoint", "endpoint", ap, "zone", zone)
			}
		}
	}
	f.flush = nil
}

// report records the Service's errors: a new or changed error text is one
// Warning Event and a log line.
func (f *servicesFeature) report(key string, svc *corev1.Service, errs []*proxy.ServiceError) {
	if len(errs) == 0 {
		delete(f.reported, key)
		return
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Err.Error()
	}
	msg := strings.Join(msgs, "; ")
	if f.reported[key] == msg {
		return
	}
	f.reported[key] = msg
	klog.InfoS("Service not programmed as written", "service", key, "err", msg)
	if f.e.recorder != nil {
		f.e.recorder.Eventf(svc, corev1.EventTypeWarning, "ServiceNotProgrammed", "node %s: %s", f.e.cfg.NodeName, msg)
	}
}

// observe updates the Service gauges.
func (f *servicesFeature) observe() {
	var ports, eps int
	for _, ps := range f.ports {
		ports += len(ps)
		for _, p := range ps {
			eps += len(p.Endpoints)
		}
	}
	f.e.m.services.Set(float64(len(f.ports)))
	f.e.m.servicePorts.Set(float64(ports))
	f.e.m.serviceEndpoints.Set(float64(eps))
}
