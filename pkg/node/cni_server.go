package node

// The agent's side of the CNI (SPEC §5): Agent implements cni.PodNetwork
// for the CNI server it runs, and writes the CNI conflist once it is ready.
//
// # Two sources of local pods, one renderer
//
// The agent learns about local pods from two places: the pod ports of br0
// in OVSDB (read by the sync loop after every port change, the source that
// survives restarts) and the CNI server's PodAdded/PodDeleted calls, which
// must return only once the pod's flows are in (or out of) effect. The two
// disagree for a moment: the agent's OVSDB view shows a new port some time
// after the server's transaction, and still shows a deleted pod's port
// after PodDeleted (the server removes the port after the flows). localPods
// merges them into the one port list renderer.renderPods renders:
//
//   - a port PodAdded recorded is rendered even while the OVSDB view does not
//     show it yet, so a stale listing never removes a just-added pod; once
//     the view has shown the port, the view decides (the port is gone when it
//     disappears from it);
//   - a port PodDeleted removed is never rendered again, even while the view
//     still lists it;
//   - one port per pod: when a pod has two ports (a new sandbox added before
//     the old one's DEL), the one PodAdded recorded last wins, else the
//     higher ofport.
//
// Every renderPods call, from the sync loop or a CNI request, runs under
// localPods.mu with that merged list, so both paths render the same state
// and a port change the CNI request already rendered changes nothing when
// the loop renders it again (renderPods skips unchanged pods).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

const (
	// cniVNIDWait bounds how long VNID waits for a NetNamespace that is
	// about to appear (the controller creates it right after the
	// Namespace).
	cniVNIDWait = 5 * time.Second
	// podRecordTTL is how long a PodAdded record whose port the OVSDB view
	// never showed, and a PodDeleted tombstone whose port the view no longer
	// shows, are kept. Both normally resolve within milliseconds; the TTL
	// only bounds records of ports that vanished out of band, and keeps a
	// tombstone long enough that a view lagging behind the deletion cannot
	// bring the pod back.
	podRecordTTL = time.Minute
)

var _ cni.PodNetwork = (*Agent)(nil)

// errNotReady is returned by the PodNetwork methods that need a synced agent.
var errNotReady = types.NewError(types.ErrTryAgainLater, "ovs-sdn node agent is not ready yet; try again later",
	"it is still syncing with the API server and OVS")

// NodeConfig implements cni.PodNetwork: the node's HostSubnet, gateway,
// cluster and service networks, MTU and datapath type, once the agent is
// ready (informers synced, br0 fully synced). Never blocks.
func (a *Agent) NodeConfig() (cni.NodeConfig, bool) {
	// a.fc and a.cn are written once, before the first ready.Store(true).
	if !a.ready.Load() {
		return cni.NodeConfig{}, false
	}
	return cni.NodeConfig{
		Subnet: a.fc.LocalSubnet, Gateway: a.fc.Gateway(), ClusterNetworks: slices.Clone(a.fc.ClusterNetworks),
		ServiceNetwork: a.fc.ServiceNetwork, MTU: a.cn.MTU, DatapathType: a.cfg.DatapathType,
	}, true
}

// VNID implements cni.PodNetwork from the NetNamespace informer's map,
// waiting up to cniVNIDWait for a NetNamespace about to appear. In subnet
// mode every pod has VNID 0. A failure counts in
// ovs_sdn_vnid_not_found_errors_total.
func (a *Agent) VNID(ctx context.Context, namespace string) (uint32, error) {
	if !a.ready.Load() {
		return 0, errNotReady
	}
	if a.fc.Mode == clusternetwork.ModeSubnet {
		return 0, nil
	}
	id, err := a.vnids.WaitAndGet(ctx, namespace, cniVNIDWait)
	if err != nil {
		a.m.vnidNotFound.Inc()
		return 0, fmt.Errorf("no NetNamespace %q: %w", namespace, err)
	}
	return id, nil
}

// PodAdded implements cni.PodNetwork: it records the pod's port, renders
// the local pods into the FlowStore and syncs it to br0 before returning.
// On any error the record is dropped again and the pod has no flows.
func (a *Agent) PodAdded(ctx context.Context, p cni.PodPort) error {
	if !a.ready.Load() {
		return errNotReady
	}
	sp := switchPortOf(p)
	if _, ok := podFromPort(sp); !ok {
		return fmt.Errorf("pod %s/%s: port %q (ofport %d, ip %s) is not a usable pod port", p.Namespace, p.Name, p.PortName, p.OFPort, p.IP)
	}
	if err := a.pods.add(sp); err != nil {
		return err
	}
	if err := a.store.Sync(ctx, a.br); err != nil {
		a.pods.forget(sp.Name)
		a.observeStore()
		return err
	}
	a.observeStore()
	return nil
}

// PodDeleted implements cni.PodNetwork: the pod's port is never rendered
// again (whatever the OVSDB view still shows) and the FlowStore is synced
// before returning. Before the agent is ready it only records the
// deletion: no pod can be added until the full sync that makes the agent
// ready, and that sync applies it.
func (a *Agent) PodDeleted(ctx context.Context, p cni.PodPort) error {
	if err := a.pods.remove(p); err != nil {
		klog.ErrorS(err, "Rendering local pods after a CNI DEL", "pod", p.Namespace+"/"+p.Name)
	}
	if !a.ready.Load() {
		return nil
	}
	err := a.store.Sync(ctx, a.br)
	a.observeStore()
	return err
}

// CheckPod implements cni.PodNetwork: the pod must be rendered with p's
// address, port and VNID, the FlowStore must hold its PodFlows, and br0 must
// hold exactly the store's flows of the pod (dumped by the pod's cookie).
func (a *Agent) CheckPod(ctx context.Context, p cni.PodPort) error {
	if !a.ready.Load() {
		return errNotReady
	}
	owner := PodOwner(p.Namespace, p.Name)
	pod, ok := a.pods.rendered(owner)
	switch {
	case !ok:
		return fmt.Errorf("the node agent has no flows for pod %s/%s", p.Namespace, p.Name)
	case pod.IP != p.IP || (p.OFPort != 0 && pod.OFPort != p.OFPort):
		return fmt.Errorf("pod %s/%s is rendered with IP %s on ofport %d, not IP %s on ofport %d",
			p.Namespace, p.Name, pod.IP, pod.OFPort, p.IP, p.OFPort)
	case a.fc.Mode != clusternetwork.ModeSubnet && pod.VNID != p.VNID:
		return fmt.Errorf("pod %s/%s is rendered with VNID %d, its namespace has %d", p.Namespace, p.Name, pod.VNID, p.VNID)
	}
	stored := a.store.Flows(owner)
	if missing := missingFlows(PodFlows(a.fc, pod), stored); len(missing) > 0 {
		return fmt.Errorf("the flow store lacks %d flows of pod %s/%s, e.g. %s", len(missing), p.Namespace, p.Name, missing[0])
	}
	dumped, err := a.br.DumpFlows(ctx, ovs.ByCookie(ovs.MatchOwner(ovs.CookiePod, owner)))
	if err != nil {
		return fmt.Errorf("dump the flows of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	onBridge := make([]ovs.Flow, len(dumped))
	for i, d := range dumped {
		onBridge[i] = d.Flow
	}
	if missing := missingFlows(stored, onBridge); len(missing) > 0 {
		return fmt.Errorf("br0 lacks %d flows of pod %s/%s, e.g. %s", len(missing), p.Namespace, p.Name, missing[0])
	}
	if extra := missingFlows(onBridge, stored); len(extra) > 0 {
		return fmt.Errorf("br0 has %d unexpected flows with the cookie of pod %s/%s, e.g. %s", len(extra), p.Namespace, p.Name, extra[0])
	}
	return nil
}

// missingFlows returns the flows of want that are not in have.
func missingFlows(want, have []ovs.Flow) []ovs.Flow {
	set := make(map[string]struct{}, len(have))
	for _, f := range have {
		set[f.Canonical()] = struct{}{}
	}
	var out []ovs.Flow
	for _, f := range want {
		if _, ok := set[f.Canonical()]; !ok {
			out = append(out, f)
		}
	}
	return out
}

// switchPortOf is the br0 port the CNI server created for p, as the OVSDB
// view will show it.
func switchPortOf(p cni.PodPort) SwitchPort {
	ip := ""
	if p.IP.IsValid() {
		ip = p.IP.String()
	}
	return SwitchPort{Name: p.PortName, OFPort: int(p.OFPort), ExternalIDs: map[string]string{
		ExternalIDSandbox: p.SandboxID, ExternalIDIP: ip,
		ExternalIDNamespace: p.Namespace, ExternalIDPodName: p.Name,
	}}
}

// localPods merges the OVSDB view of br0's ports with the CNI server's
// PodAdded/PodDeleted calls (see the file comment) and serializes every
// renderPods call. The zero value is ready to use.
type localPods struct {
	mu      sync.Mutex
	r       *renderer             // nil until the first render
	listed  []SwitchPort          // the OVSDB view at the last render
	added   map[string]*addedPort // port name → PodAdded record
	deleted map[string]time.Time  // port name → when PodDeleted ran
	now     func() time.Time      // time.Now; tests
	seq     uint64                // PodAdded order
	order   map[string]uint64     // port name → seq of its PodAdded
}

type addedPort struct {
	port SwitchPort
	at   time.Time
	seen bool // the OVSDB view has shown the port with an ofport
}

func (l *localPods) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// render renders the local pods from listed, a fresh OVSDB view (the sync
// loop).
func (l *localPods) render(r *renderer, listed []SwitchPort) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.r, l.listed = r, listed
	return l.renderLocked()
}

func (l *localPods) renderLocked() error {
	if l.r == nil {
		return nil
	}
	return l.r.renderPods(l.mergeLocked())
}

// add records the port PodAdded was given and renders; it fails, leaving
// no record, when the pod did not get flows (no VNID yet, a flow conflict).
func (l *localPods) add(p SwitchPort) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.added == nil {
		l.added, l.order = map[string]*addedPort{}, map[string]uint64{}
	}
	l.seq++
	l.added[p.Name] = &addedPort{port: p, at: l.clock()}
	l.order[p.Name] = l.seq
	delete(l.deleted, p.Name)
	err := l.renderLocked()
	want, _ := podFromPort(p)
	got, ok := l.r.pods[PodOwner(want.Namespace, want.Name)]
	if ok && got.IP == want.IP && got.OFPort == want.OFPort {
		return nil
	}
	l.forgetLocked(p.Name)
	if rerr := l.renderLocked(); rerr != nil {
		klog.ErrorS(rerr, "Rendering local pods after a failed CNI ADD")
	}
	if err == nil {
		err = fmt.Errorf("namespace %q has no VNID yet", want.Namespace)
	}
	return fmt.Errorf("render flows of pod %s/%s: %w", want.Namespace, want.Name, err)
}

// forget drops the record of port name (a PodAdded whose sync failed) and
// renders.
func (l *localPods) forget(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgetLocked(name)
	if err := l.renderLocked(); err != nil {
		klog.ErrorS(err, "Rendering local pods after a failed CNI ADD")
	}
}

func (l *localPods) forgetLocked(name string) {
	delete(l.added, name)
	delete(l.order, name)
}

// remove tombstones the pod's port (every port of the pod when p has no
// PortName) and renders.
func (l *localPods) remove(p cni.PodPort) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.deleted == nil {
		l.deleted = map[string]time.Time{}
	}
	names := []string{p.PortName}
	if p.PortName == "" {
		names = l.portsOfLocked(p.Namespace, p.Name)
	}
	for _, n := range names {
		l.deleted[n] = l.clock()
		l.forgetLocked(n)
	}
	return l.renderLocked()
}

func (l *localPods) portsOfLocked(ns, name string) []string {
	var out []string
	for _, sp := range l.listed {
		if sp.ExternalIDs[ExternalIDNamespace] == ns && sp.ExternalIDs[ExternalIDPodName] == name {
			out = append(out, sp.Name)
		}
	}
	for n, ap := range l.added {
		if ap.port.ExternalIDs[ExternalIDNamespace] == ns && ap.port.ExternalIDs[ExternalIDPodName] == name {
			out = append(out, n)
		}
	}
	return out
}

// rendered returns the pod last rendered for owner.
func (l *localPods) rendered(owner string) (PodInfo, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.r == nil {
		return PodInfo{}, false
	}
	p, ok := l.r.pods[owner]
	return p, ok
}

// mergeLocked returns the ports to render: the OVSDB view without
// tombstoned ports, plus recorded ports the view has not shown yet, one
// port per pod. It also expires records and tombstones.
func (l *localPods) mergeLocked() []SwitchPort {
	now := l.clock()
	listed := map[string]SwitchPort{}
	for _, sp := range l.listed {
		if _, ok := podFromPort(sp); ok {
			listed[sp.Name] = sp
		}
	}
	for n, at := range l.deleted {
		if _, ok := listed[n]; !ok && now.Sub(at) > podRecordTTL {
			delete(l.deleted, n)
		}
	}
	var out []SwitchPort
	for n, ap := range l.added {
		_, inView := listed[n]
		switch {
		case inView:
			ap.seen = true
		case ap.seen || now.Sub(ap.at) > podRecordTTL:
			l.forgetLocked(n) // gone from the view after it was there, or never showed up
		default:
			out = append(out, ap.port)
		}
	}
	for n, sp := range listed {
		if _, gone := l.deleted[n]; !gone {
			out = append(out, sp)
		}
	}
	return l.onePerPodLocked(out)
}

// onePerPodLocked keeps one port per pod: the latest PodAdded, else the
// highest ofport.
func (l *localPods) onePerPodLocked(ports []SwitchPort) []SwitchPort {
	best := map[string]SwitchPort{}
	for _, sp := range ports {
		pod, _ := podFromPort(sp)
		owner := PodOwner(pod.Namespace, pod.Name)
		cur, ok := best[owner]
		if !ok || l.newer(sp, cur) {
			best[owner] = sp
		}
	}
	out := make([]SwitchPort, 0, len(best))
	for _, sp := range best {
		out = append(out, sp)
	}
	slices.SortFunc(out, func(x, y SwitchPort) int { return cmp.Compare(x.Name, y.Name) })
	return out
}

func (l *localPods) newer(a, b SwitchPort) bool {
	if sa, sb := l.order[a.Name], l.order[b.Name]; sa != sb {
		return sa > sb
	}
	if a.OFPort != b.OFPort {
		return a.OFPort > b.OFPort
	}
	return a.Name > b.Name
}

// startCNI starts the CNI server when Config.CNISocketPath is set (else it
// does nothing). The server runs from before start-up on, so the plugin
// gets "not ready, try again" (not "not running") while the agent syncs.
// The returned stop ends the server, waiting for requests in flight.
func (a *Agent) startCNI(ctx context.Context) (stop func(), err error) {
	if a.cfg.CNISocketPath == "" {
		return func() {}, nil
	}
	srv, err := cni.NewServer(cni.ServerConfig{
		SocketPath: a.cfg.CNISocketPath, StateDir: a.cfg.CNIStateDir, OVSDBEndpoint: a.cfg.OVSDBEndpoint,
		Bridge: BridgeName, HostNetNS: a.cfg.HostNetNS, PodNetwork: a, Registry: a.cfg.Registry,
	})
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		_ = srv.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	klog.InfoS("CNI server listening", "socket", a.cfg.CNISocketPath)
	return func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			klog.ErrorS(err, "CNI server stopped")
		}
		if err := srv.Close(); err != nil {
			klog.ErrorS(err, "Closing the CNI server")
		}
	}, nil
}

// announceCNI writes the CNI conflist (the node's network-ready signal to
// the container runtime) when both the socket and the conf dir are
// configured. The agent calls it once ready.
func (a *Agent) announceCNI() error {
	if a.cfg.CNISocketPath == "" || a.cfg.CNIConfDir == "" {
		return nil
	}
	if err := cni.WriteConflist(a.cfg.CNIConfDir, a.cfg.CNISocketPath); err != nil {
		return err
	}
	klog.InfoS("CNI conflist written", "dir", a.cfg.CNIConfDir, "file", cni.ConflistName)
	return nil
}

// withdrawCNI removes the conflist when Run returns, so the runtime stops
// setting up pods here while the agent is gone.
func (a *Agent) withdrawCNI() {
	if a.cfg.CNISocketPath == "" || a.cfg.CNIConfDir == "" {
		return
	}
	if err := cni.RemoveConflist(a.cfg.CNIConfDir); err != nil {
		klog.ErrorS(err, "Removing the CNI conflist")
	}
}
