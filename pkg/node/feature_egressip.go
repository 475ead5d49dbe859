package node

// Egress IPs (SPEC §4.7): the agent side of pkg/egressip. Flows and groups
// are pkg/pipeline's (egressip.go, which also explains the design); the
// host side is host_egressip.go.
//
// Inputs. HostSubnets (egressIPs, the egress-unreachable mark) and
// NetNamespaces (egressIPs, VNIDs), through egressip.FromAPI and
// egressip.Evaluate: the same function the controller uses, so conflicts,
// unassigned IPs and unreachable nodes mean the same here. The agent needs
// no state of its own.
//
// Triggers. Any change of either marks the one key; a render re-evaluates
// everything (the evaluation is linear in the objects) and sets the owners
// whose flows changed: one per VNID that requests egress IPs, and the
// owner of the IPs this node holds.
//
// Order. Claiming an IP: the flows that SNAT to it go to br0 first, then
// (synced) the host answers ARP for it; releasing: br0 stops SNATing
// first, then the host lets go. A host step that fails is logged and
// retried at the next render (the key is marked again). At start-up the
// first synced hands the host the full set, which removes addresses a
// previous agent held and this one does not.

import (
	"context"
	"errors"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	listers "github.com/ovs-sdn/ovs-sdn/pkg/client/listers/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressip"
	"github.com/ovs-sdn/ovs-sdn/pkg/iptables"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

const (
	featureEgressIP = "egressip"
	keyEgressIPs    = "egress-ips"
)

type egressIPFeature struct {
	e *env

	subnets listers.HostSubnetLister
	netnss  listers.NetNamespaceLister

	vnids  map[uint32]bool // VNIDs with an owner set
	hosted []netip.Addr    // rendered: the IPs this node holds in br0
	// hostDirty: the host must be brought to hosted at the next synced.
	hostDirty bool
}

func newEgressIPFeature(e *env) *egressIPFeature {
	return &egressIPFeature{e: e, vnids: map[uint32]bool{}, hostDirty: true}
}

func (*egressIPFeature) name() string          { return featureEgressIP }
func (*egressIPFeature) stage() pipeline.Stage { return pipeline.StageEgressIP }

func (f *egressIPFeature) start(_ context.Context, e *env) ([]cache.InformerSynced, error) {
	hs, nn := e.net.Network().V1().HostSubnets(), e.net.Network().V1().NetNamespaces()
	f.subnets, f.netnss = hs.Lister(), nn.Lister()
	mark := func(any) { e.mark(featureEgressIP, keyEgressIPs) }
	var synced []cache.InformerSynced
	for _, inf := range []cache.SharedIndexInformer{hs.Informer(), nn.Informer()} {
		reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: mark, UpdateFunc: func(_, obj any) { mark(obj) }, DeleteFunc: mark,
		})
		if err != nil {
			return nil, err
		}
		synced = append(synced, reg.HasSynced)
	}
	return synced, nil
}

func (f *egressIPFeature) render(_ context.Context, _ []string, all bool) error {
	if all {
		f.hostDirty = true // start-up, or the iptables were flushed
	}
	hss, err := f.subnets.List(labels.Everything())
	if err != nil {
		return err
	}
	nns, err := f.netnss.List(labels.Everything())
	if err != nil {
		return err
	}
	st := egressip.Evaluate(egressip.FromAPI(hss, nns))
	var errs []error
	seen := map[uint32]bool{}
	dropped := 0
	for vnid, eg := range st.Egress {
		seen[vnid] = true
		var active []pipeline.EgressNode
		for _, a := range eg.Active {
			active = append(active, pipeline.EgressNode{IP: a.IP, HostIP: a.HostIP, Local: a.Node == f.e.cfg.NodeName})
		}
		if len(active) == 0 {
			dropped++
		}
		flows, groups := pipeline.EgressIPFlows(f.e.fc, vnid, active)
		if err := f.e.setWithGroups(featureEgressIP, pipeline.EgressIPOwner(vnid), flows, groups); err != nil {
			errs = append(errs, err)
		}
	}
	for vnid := range f.vnids {
		if !seen[vnid] {
			f.e.store.Delete(pipeline.EgressIPOwner(vnid))
		}
	}
	f.vnids = seen
	var hosted []netip.Addr
	for _, a := range st.Hosted(f.e.cfg.NodeName) {
		hosted = append(hosted, a.IP)
	}
	if err := f.e.set(featureEgressIP, pipeline.OwnerEgressIPHost, pipeline.EgressIPHostFlows(f.e.fc, hosted)); err != nil {
		errs = append(errs, err)
	}
	if !slices.Equal(hosted, f.hosted) {
		f.hosted, f.hostDirty = hosted, true
	}
	f.e.m.egressIPsHosted.Set(float64(len(hosted)))
	f.e.m.egressVNIDsDropped.Set(float64(dropped))
	return errors.Join(errs...)
}

// synced brings the host to the IPs br0 now SNATs to.
func (f *egressIPFeature) synced(context.Context) {
	if !f.hostDirty {
		return
	}
	ipt, err := f.e.iptables()
	if err == nil {
		err = iptables.Ensure(ipt, []iptables.Chain{iptables.EgressIPChain(f.hosted)})
	}
	claimed, herr := f.e.cfg.Host.EnsureEgressIPs(f.e.cfg.NodeIP, f.hosted)
	if err := errors.Join(err, herr); err != nil {
		klog.ErrorS(err, "Egress IPs on the host; retrying", "hosted", f.hosted)
		f.e.mark(featureEgressIP, keyEgressIPs)
		return
	}
	if len(claimed) > 0 {
		klog.InfoS("Egress IPs claimed (gratuitous ARP sent)", "ips", claimed)
	}
	f.hostDirty = false
}
