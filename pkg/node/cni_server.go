package node

// The agent's side of the CNI (SPEC §5): Agent implements cni.PodNetwork
// for the CNI server it runs, and writes the CNI conflist once it is ready.
// The local pods the calls report are merged with br0's ports in OVSDB by
// localPods (pods.go) and rendered by the pods feature; every call renders
// and syncs before it returns, so the pod's flows are in effect (or gone).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// cniVNIDWait bounds how long VNID waits for a NetNamespace that is about
// to appear (the controller creates it right after the Namespace).
const cniVNIDWait = 5 * time.Second

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
	if !a.env.iso.UsesVNIDs() {
		return 0, nil
	}
	id, err := a.env.vnids.WaitAndGet(ctx, namespace, cniVNIDWait)
	if err != nil {
		a.m.vnidNotFound.Inc()
		return 0, fmt.Errorf("no NetNamespace %q: %w", namespace, err)
	}
	return id, nil
}

// PodAdded implements cni.PodNetwork: it records the pod's port, renders
// (the pod's flows, and its namespace's policy flows in the same pass) and
// syncs the FlowStore to br0 before returning. When the pod did not get
// flows (no VNID yet, a flow conflict) or the sync fails, the record is
// dropped again and the pod has no flows.
func (a *Agent) PodAdded(ctx context.Context, p cni.PodPort) error {
	if !a.ready.Load() {
		return errNotReady
	}
	sp := switchPortOf(p)
	want, ok := podFromPort(sp)
	if !ok {
		return fmt.Errorf("pod %s/%s: port %q (ofport %d, ip %s) is not a usable pod port", p.Namespace, p.Name, p.PortName, p.OFPort, p.IP)
	}
	a.env.pods.add(sp)
	a.env.mark(featurePods, keyCNI)
	err := a.syncForCNI(ctx)
	if got, ok := a.renderedPod(pipeline.PodOwner(want.Namespace, want.Name)); err == nil && !(ok && got.IP == want.IP && got.OFPort == want.OFPort) {
		err = fmt.Errorf("namespace %q has no VNID yet", want.Namespace)
	}
	if err == nil {
		return nil
	}
	a.env.pods.forget(sp.Name)
	a.env.mark(featurePods, keyCNI)
	if rerr := a.syncForCNI(ctx); rerr != nil {
		klog.ErrorS(rerr, "Syncing local pods after a failed CNI ADD")
	}
	return fmt.Errorf("render flows of pod %s/%s: %w", want.Namespace, want.Name, err)
}

// PodDeleted implements cni.PodNetwork: the pod's port is never rendered
// again (whatever the OVSDB view still shows) and the FlowStore is synced
// before returning. Before the agent is ready it only records the
// deletion: no pod can be added until the full sync that makes the agent
// ready, and that sync applies it.
func (a *Agent) PodDeleted(ctx context.Context, p cni.PodPort) error {
	a.env.pods.remove(p)
	a.env.mark(featurePods, keyCNI)
	if !a.ready.Load() {
		return nil
	}
	return a.syncForCNI(ctx)
}

// syncForCNI renders and applies what is marked, in a sync shared with the
// CNI calls made meanwhile (syncGate): it returns once a sync that started
// after the caller's marks is done.
func (a *Agent) syncForCNI(ctx context.Context) error {
	return a.cniSyncs.do(ctx, func() error { return a.sync(a.runCtx) })
}

// CheckPod implements cni.PodNetwork: the pod must be rendered with p's
// address, port and VNID, the FlowStore must hold its PodFlows, and br0 must
// hold exactly the store's flows of the pod (dumped by the pod's cookie).
func (a *Agent) CheckPod(ctx context.Context, p cni.PodPort) error {
	if !a.ready.Load() {
		return errNotReady
	}
	owner := pipeline.PodOwner(p.Namespace, p.Name)
	pod, ok := a.renderedPod(owner)
	switch {
	case !ok:
		return fmt.Errorf("the node agent has no flows for pod %s/%s", p.Namespace, p.Name)
	case pod.IP != p.IP || (p.OFPort != 0 && pod.OFPort != p.OFPort):
		return fmt.Errorf("pod %s/%s is rendered with IP %s on ofport %d, not IP %s on ofport %d",
			p.Namespace, p.Name, pod.IP, pod.OFPort, p.IP, p.OFPort)
	case a.env.iso.UsesVNIDs() && pod.VNID != p.VNID:
		return fmt.Errorf("pod %s/%s is rendered with VNID %d, its namespace has %d", p.Namespace, p.Name, pod.VNID, p.VNID)
	}
	stored := a.store.Flows(owner)
	if missing := missingFlows(pipeline.PodFlows(a.fc, pod), stored); len(missing) > 0 {
		return fmt.Errorf("the flow store lacks %d flows of pod %s/%s, e.g. %s", len(missing), p.Namespace, p.Name, missing[0])
	}
	dumped, err := a.br.DumpFlows(ctx, ovs.ByCookie(owner.CookieMatch()))
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
		ovsdb.ExternalIDSandbox: p.SandboxID, ovsdb.ExternalIDIP: ip,
		ovsdb.ExternalIDPodNamespace: p.Namespace, ovsdb.ExternalIDPodName: p.Name,
	}}
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
		Bridge: pipeline.BridgeName, HostNetNS: a.cfg.HostNetNS, PodNetwork: a, Registry: a.cfg.Registry,
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
