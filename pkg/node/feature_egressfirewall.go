package node

// EgressNetworkPolicy realization (VNID modes, SPEC §4.6): the agent side of
// pkg/egressfirewall.
//
// Inputs. Informers on EgressNetworkPolicies and NetNamespaces, converted
// by egressfirewall.BuildInput (the conversion the sdn-controller and
// sdnctl use too), and the node's resolver (pkg/dnsresolver) for dnsName
// rules. Every render evaluates all policies (egressfirewall.Evaluate: a
// VNID's decision depends on every namespace sharing it) and renders only
// the VNIDs whose decision or resolved addresses changed since the last
// render: one owner per VNID (pipeline.EgressFirewallOwner), whose flows
// change together in the pass's one bundle.
//
// DNS. The names of the enforced dnsName rules are tracked (one reference
// each) while some enforced rule names them; the resolver's OnChange only
// marks the name dirty. A name with no address yet renders no flow: an
// Allow rule for it allows nothing yet, a Deny rule denies nothing yet. The
// start-up render waits (at most dnsStartWait) until every name has been
// answered or has failed once, so that a restarted agent does not replace
// the addresses on br0 with nothing only because it has not asked yet.
//
// Reporting. Problems (a shared VNID, several policies, VNID 0, a rule
// that cannot be enforced) are logged once here; the Warning Event on the
// policy is the sdn-controller's, one per policy, not every node's.

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	listers "github.com/ovs-sdn/ovs-sdn/pkg/client/listers/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/dnsresolver"
	"github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// featureEgressFirewall is the feature's name (feature.go).
const featureEgressFirewall = "egressfirewall"

// Keys of the egress firewall feature.
const (
	keyEgressPolicies = "policies" // an EgressNetworkPolicy or NetNamespace changed
	keyDNSPrefix      = "dns/"     // dns/<name>: the name's addresses changed
)

// dnsStartWait bounds the start-up render's wait for the first resolution
// of every name (the resolver's query timeout, 5 s, and a margin).
const dnsStartWait = 6 * time.Second

// egressFirewallFeature renders table 100 (see above).
type egressFirewallFeature struct {
	e        *env
	policies listers.EgressNetworkPolicyLister
	nets     listers.NetNamespaceLister
	resolver *dnsresolver.Resolver // nil when it could not be created

	names    map[string]struct{}     // names tracked
	rendered map[uint32]renderedVNID // what each VNID's owner holds
	logged   map[uint32]string       // problem message logged per VNID
}

// renderedVNID is what a VNID's flows were rendered from.
type renderedVNID struct {
	d     egressfirewall.Decision
	addrs map[string][]netip.Addr
}

func newEgressFirewallFeature(e *env) *egressFirewallFeature {
	return &egressFirewallFeature{e: e, names: map[string]struct{}{}, rendered: map[uint32]renderedVNID{}, logged: map[uint32]string{}}
}

func (*egressFirewallFeature) name() string          { return featureEgressFirewall }
func (*egressFirewallFeature) stage() pipeline.Stage { return pipeline.StageEgressFirewall }

func (f *egressFirewallFeature) start(ctx context.Context, e *env) ([]cache.InformerSynced, error) {
	enps, nns := e.net.Network().V1().EgressNetworkPolicies(), e.net.Network().V1().NetNamespaces()
	f.policies, f.nets = enps.Lister(), nns.Lister()
	var synced []cache.InformerSynced
	for _, inf := range []cache.SharedIndexInformer{enps.Informer(), nns.Informer()} {
		reg, err := inf.AddEventHandler(changeHandler(f.onChange))
		if err != nil {
			return nil, err
		}
		synced = append(synced, reg.HasSynced)
	}
	f.startResolver(ctx)
	return synced, nil
}

// onChange marks the policies dirty when a policy's spec, or a
// NetNamespace's VNID, appears, changes or goes.
func (f *egressFirewallFeature) onChange(old, obj any) {
	switch o := obj.(type) {
	case *networkv1.EgressNetworkPolicy:
		if p, ok := old.(*networkv1.EgressNetworkPolicy); ok && p.Generation == o.Generation && p.Generation != 0 {
			return
		}
	case *networkv1.NetNamespace:
		if p, ok := old.(*networkv1.NetNamespace); ok && p.NetID == o.NetID && p.NetName == o.NetName {
			return
		}
	default:
		return
	}
	f.e.mark(featureEgressFirewall, keyEgressPolicies)
}

// startResolver creates and runs the resolver from the agent's DNS
// configuration. Without one (no nameserver configured) dnsName rules
// match nothing, which the agent logs; the rest works.
func (f *egressFirewallFeature) startResolver(ctx context.Context) {
	cfg := f.e.cfg
	rc := dnsresolver.Config{Servers: cfg.DNSServers, ResolvConf: cfg.ResolvConf, Lookuper: cfg.DNSLookuper,
		Registerer: cfg.Registry,
		OnChange:   func(name string, _ []netip.Addr) { f.e.mark(featureEgressFirewall, keyDNSPrefix+name) }}
	if cfg.HostNetNS != "" {
		rc.Dial = dnsresolver.DialInNetNS(cfg.HostNetNS) // DNS is reachable from the node's netns
	}
	r, err := dnsresolver.New(rc)
	if err != nil {
		klog.ErrorS(err, "No DNS resolver: dnsName rules of EgressNetworkPolicies match no address")
		return
	}
	f.resolver = r
	go r.Run(ctx)
}

// render re-evaluates every policy and renders the VNIDs that changed (all
// of them with all=true, at start-up).
func (f *egressFirewallFeature) render(ctx context.Context, _ []string, all bool) error {
	var errs []error
	if all {
		errs = append(errs, f.e.set(featureEgressFirewall, pipeline.OwnerEgressFirewall, egressfirewall.StaticFlows(f.e.fc)))
	}
	decisions, err := f.evaluate()
	if err != nil {
		f.e.mark(featureEgressFirewall, keyEgressPolicies)
		return errors.Join(append(errs, err)...)
	}
	added := f.track(decisions)
	if all {
		f.waitSettled(ctx, added)
	}
	for vnid := range f.rendered {
		if _, ok := decisions[vnid]; !ok {
			f.e.store.Delete(pipeline.EgressFirewallOwner(vnid))
			delete(f.rendered, vnid)
			delete(f.logged, vnid)
		}
	}
	for _, d := range decisions {
		f.logProblem(d)
		errs = append(errs, f.renderVNID(d, all))
	}
	return errors.Join(errs...)
}

func (f *egressFirewallFeature) evaluate() (map[uint32]egressfirewall.Decision, error) {
	enps, err := f.policies.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	nns, err := f.nets.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	return egressfirewall.Evaluate(egressfirewall.BuildInput(enps, nns)), nil
}

// track makes the tracked names those of the enforced rules and returns
// the names it added.
func (f *egressFirewallFeature) track(decisions map[uint32]egressfirewall.Decision) []string {
	want := map[string]struct{}{}
	for _, d := range decisions {
		for _, n := range d.Names() {
			want[n] = struct{}{}
		}
	}
	var added []string
	for n := range want {
		if _, ok := f.names[n]; ok {
			continue
		}
		f.names[n] = struct{}{}
		added = append(added, n)
		if f.resolver != nil {
			if _, err := f.resolver.Track(n); err != nil {
				klog.ErrorS(err, "Cannot track a dnsName of an EgressNetworkPolicy", "name", n)
			}
		}
	}
	for n := range f.names {
		if _, ok := want[n]; !ok {
			delete(f.names, n)
			if f.resolver != nil {
				f.resolver.Untrack(n)
			}
		}
	}
	return added
}

// waitSettled waits until every name has been resolved or has failed once,
// or dnsStartWait has passed.
func (f *egressFirewallFeature) waitSettled(ctx context.Context, names []string) {
	if f.resolver == nil || len(names) == 0 {
		return
	}
	deadline := time.Now().Add(dnsStartWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !slices.ContainsFunc(names, func(n string) bool { return !f.resolver.Settled(n) }) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	klog.InfoS("Rendering EgressNetworkPolicies before every dnsName was resolved once", "waited", dnsStartWait)
}

// addrs returns the resolver's addresses of the decision's names.
func (f *egressFirewallFeature) addrs(d egressfirewall.Decision) map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	for _, n := range d.Names() {
		if f.resolver != nil {
			out[n], _ = f.resolver.Addrs(n)
		}
	}
	return out
}

// renderVNID sets the VNID's flows unless nothing they depend on changed
// (always with force).
func (f *egressFirewallFeature) renderVNID(d egressfirewall.Decision, force bool) error {
	owner := pipeline.EgressFirewallOwner(d.VNID)
	if d.Kind == egressfirewall.KindIgnored {
		f.e.store.Delete(owner)
		f.rendered[d.VNID] = renderedVNID{d: d}
		return nil
	}
	addrs := f.addrs(d)
	if prev, ok := f.rendered[d.VNID]; ok && !force && prev.d.Equal(d) &&
		maps.EqualFunc(prev.addrs, addrs, slices.Equal[[]netip.Addr]) {
		return nil
	}
	flows := egressfirewall.Flows(d, func(n string) []netip.Addr { return addrs[n] })
	if len(flows) == 0 {
		f.e.store.Delete(owner)
	} else if err := f.e.set(featureEgressFirewall, owner, flows); err != nil {
		return err
	}
	f.rendered[d.VNID] = renderedVNID{d: d, addrs: addrs}
	return nil
}

// logProblem logs a VNID's problem once per change of its message.
func (f *egressFirewallFeature) logProblem(d egressfirewall.Decision) {
	if f.logged[d.VNID] == d.Message {
		return
	}
	f.logged[d.VNID] = d.Message
	if d.Message != "" {
		klog.InfoS("EgressNetworkPolicy not enforced as written", "vnid", d.VNID, "reason", d.Reason, "message", d.Message)
	}
}
