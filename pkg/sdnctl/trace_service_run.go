package sdnctl

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/proxy"
)

// The trace to a Service: on the entry node (the source pod's, or the node
// whose address carries the node port) sdnctl's tracer runs over br0's
// dumped flows and groups once per bucket of the Service's select group;
// each endpoint's path then continues on its node with ofproto/trace.

// choice is where a Service's path picks its endpoint: a bucket of the
// port's select group (TCP, SCTP), or a link of its multipath action (UDP,
// whose ports the userspace datapath's group hash leaves out).
type choice struct {
	group uint32 // the select group; 0: multipath
	n     int    // its buckets, or links
}

// noun is what one alternative of the choice is called.
func (c choice) noun() string {
	if c.group == 0 {
		return "link"
	}
	return "bucket"
}

// takes reports whether flow f makes the choice.
func (c choice) takes(f ovs.Flow) bool {
	return slices.ContainsFunc(f.Actions, func(a ovs.Action) bool {
		switch a := a.(type) {
		case ovs.Group:
			return c.group != 0 && a.ID == c.group
		case ovs.Multipath:
			return c.group == 0
		}
		return false
	})
}

// firstChoice is the first choice on tr's path: a flow sending to a select
// group with buckets, or running multipath.
func firstChoice(tr ovs.Trace, groups []ovs.GroupEntry) (choice, bool) {
	buckets := map[uint32]int{}
	for _, g := range groups {
		if g.Type == ovs.GroupSelect && len(g.Buckets) > 0 {
			buckets[g.ID] = len(g.Buckets)
		}
	}
	for _, f := range tr.Flows {
		for _, a := range f.Actions {
			switch a := a.(type) {
			case ovs.Group:
				if n, ok := buckets[a.ID]; ok {
					return choice{group: a.ID, n: n}, true
				}
			case ovs.Multipath:
				return choice{n: int(a.NLinks)}, true
			}
		}
	}
	return choice{}, false
}

// bucketTrace is the entry node's path through one alternative of the choice.
type bucketTrace struct {
	// bucket is the bucket (or link) taken, -1 when the path made no choice
	// (no flow for the Service, or a learned session-affinity choice).
	bucket int
	choice choice
	// vip is where the packet entered the Service (ClusterIP or node-port
	// address, and port); ep the endpoint it was DNATed to (invalid: none).
	vip, ep netip.AddrPort
	tr      ovs.Trace
}

// traceBuckets traces p through flows and groups, once per alternative of
// the first choice it makes (Packet.Bucket selects a group's bucket and a
// multipath's link alike).
func traceBuckets(flows []ovs.Flow, groups []ovs.GroupEntry, p ovs.Packet) ([]bucketTrace, error) {
	vip := netip.AddrPortFrom(p.Dst, p.TpDst)
	first, err := ovs.TraceWithGroups(flows, groups, p)
	if err != nil {
		return nil, err
	}
	c, ok := firstChoice(first, groups)
	if !ok {
		return []bucketTrace{{bucket: -1, vip: vip, ep: dnatTarget(first, vip), tr: first}}, nil
	}
	out := make([]bucketTrace, 0, c.n)
	for b := range c.n {
		p.Bucket = b
		tr, err := ovs.TraceWithGroups(flows, groups, p)
		if err != nil {
			return nil, fmt.Errorf("%s %d: %w", c.noun(), b, err)
		}
		out = append(out, bucketTrace{bucket: b, choice: c, vip: vip, ep: dnatTarget(tr, vip), tr: tr})
	}
	return out, nil
}

// natOf returns the NAT a flow's ct(commit,nat(kind=…)) sets up.
func natOf(f ovs.Flow, kind ovs.NATKind) (ovs.NATSpec, bool) {
	for _, a := range f.Actions {
		if ct, ok := a.(ovs.ConnTrack); ok && ct.Commit && ct.NATSpec.Kind == kind {
			return ct.NATSpec, true
		}
	}
	return ovs.NATSpec{}, false
}

// dnatTarget is the endpoint the path's DNAT flow chose (invalid: no DNAT).
func dnatTarget(tr ovs.Trace, vip netip.AddrPort) netip.AddrPort {
	for _, f := range tr.Flows {
		if n, ok := natOf(f, ovs.NATDst); ok {
			port := n.Port
			if port == 0 {
				port = vip.Port()
			}
			return netip.AddrPortFrom(n.Addr, port)
		}
	}
	return netip.AddrPort{}
}

// ofTraceOf presents a trace of sdnctl's tracer as the steps of an ofproto/trace.
func ofTraceOf(tr ovs.Trace) *ofTrace {
	out := &ofTrace{Outputs: tr.Outputs, Verdict: tr.Verdict}
	for _, f := range tr.Flows {
		match := make([]string, 0, len(f.Match))
		for _, m := range f.Match {
			match = append(match, m.String())
		}
		var actions []string
		for _, a := range f.Actions {
			if _, drop := a.(ovs.Drop); !drop {
				actions = append(actions, a.String())
			}
		}
		if len(actions) == 0 {
			actions = []string{"drop"}
		}
		out.Steps = append(out.Steps, traceStep{Table: f.Table, Priority: f.Priority, Cookie: f.Cookie,
			Match: strings.Join(match, ","), Actions: actions, Flow: f, FlowOK: true})
	}
	return out
}

// runService traces SRC to the Service port sd (every endpoint, or only).
func (o *traceOptions) runService(ctx context.Context, c *cli, cl *apiView, src endpoint, sd *serviceDst, only netip.Addr, srcArg, dstArg string) error {
	if !sd.nodePort() && src.pod == nil {
		return fmt.Errorf("%s is not a pod: a ClusterIP is traced from a pod (SRC NAMESPACE/POD or a pod's IP)", srcArg)
	}
	w := c.opts.Out
	fmt.Fprintf(w, "Trace %s %s -> %s port %d\n", sd.proto, src.ip, sd.addr.Addr(), sd.addr.Port())
	fmt.Fprintf(w, "  source:      %s\n  destination: %s\n", cl.describe(src), sd.describe())
	t := &tracer{o: o, cl: cl, backend: c.ovsBackend(), src: src, dst: endpoint{arg: dstArg, ip: sd.addr.Addr()},
		proto: sd.proto, port: sd.addr.Port(), w: w}
	return t.service(ctx, sd, only, srcArg, dstArg)
}

func (t *tracer) service(ctx context.Context, sd *serviceDst, only netip.Addr, srcArg, dstArg string) error {
	entry := t.src.node
	if sd.nodePort() {
		entry = sd.node
		fmt.Fprintf(t.w, "  host:        node %s DNATs %s to the node-port address %s:%d and hands it to br0 through tun0\n",
			entry, sd.addr, pipeline.NodePortVIP, sd.addr.Port())
	}
	n, ok := t.o.reach(entry)
	if !ok {
		t.rerun = fmt.Sprintf("sdnctl trace %s %s --protocol %s", srcArg, sd.addr, sd.proto)
		t.skipped(entry, srcArg, dstArg)
		return t.serviceRemoteOnly(ctx, entry, sd, only, srcArg, dstArg)
	}
	if n.ofctl == "" {
		return fmt.Errorf("node %s: a Service is traced over its bridge's flows and groups: pass --node-target %s=TARGET or --ovs-rundir", entry, entry)
	}
	inPort := uint32(pipeline.OFPortTun0)
	if !sd.nodePort() {
		ofport, how, err := t.sourcePort(ctx, n)
		if err != nil {
			return fmt.Errorf("node %s: %w", entry, err)
		}
		fmt.Fprintf(t.w, "  source port: ofport %d (%s)\n", ofport, how)
		inPort = ofport
	}
	flows, groups, err := t.dumpBridge(ctx, entry, n.ofctl)
	if err != nil {
		return err
	}
	traces, err := traceBuckets(flows, groups, sd.entryPacket(t.src, inPort))
	if err != nil {
		return fmt.Errorf("node %s: sdnctl's tracer over br0's flows and groups: %w", entry, err)
	}
	t.printEndpoints(entry, sd, traces, flows)
	if only.IsValid() {
		if traces = slices.DeleteFunc(traces, func(bt bucketTrace) bool { return bt.ep.Addr() != only }); len(traces) == 0 {
			return fmt.Errorf("--endpoint %s: not an endpoint of service %s in br0 of node %s", only, sd.name(), entry)
		}
	}
	ex := t.explainer(ctx, entry, n)
	for _, bt := range traces {
		if err := t.endpointHalves(ctx, entry, sd, bt, ex, srcArg, dstArg); err != nil {
			return err
		}
	}
	return nil
}

// dumpBridge reads every flow and group of a node's bridge.
func (t *tracer) dumpBridge(ctx context.Context, nodeName, target string) ([]ovs.Flow, []ovs.GroupEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*lookupTimeout)
	defer cancel()
	dumped, err := t.backend.DumpFlows(ctx, target, ovs.Filter{})
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: %w", nodeName, err)
	}
	groups, err := dumpGroups(ctx, t.backend, target)
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: %w", nodeName, err)
	}
	flows := make([]ovs.Flow, 0, len(dumped))
	for _, d := range dumped {
		flows = append(flows, d.Flow)
	}
	return flows, groups, nil
}

// printEndpoints says what br0 does with the Service's traffic: one line per
// bucket, the session-affinity choice, or why no flow takes it; and whether
// the API agrees.
func (t *tracer) printEndpoints(entry string, sd *serviceDst, traces []bucketTrace, flows []ovs.Flow) {
	first := traces[0]
	switch {
	case first.bucket >= 0 && first.choice.group != 0:
		fmt.Fprintf(t.w, "\n%s: select group %d, %s (traced by sdnctl over br0's flows and groups: ofproto/trace cannot choose a bucket)\n",
			entry, first.choice.group, plural(first.choice.n, "bucket"))
		t.printChoices(entry, traces)
	case first.bucket >= 0:
		fmt.Fprintf(t.w, "\n%s: multipath over the 5-tuple, %s (traced by sdnctl over br0's flows and groups, once per link)\n",
			entry, plural(first.choice.n, "link"))
		t.printChoices(entry, traces)
	case first.ep.IsValid():
		fmt.Fprintf(t.w, "\n%s: session affinity: OVS learned %s for this client; the group is not consulted\n", entry, t.where(entry, first.ep))
	case first.tr.Verdict.Kind == ovs.VerdictDrop:
		// Whether or not br0 has flows for the Service, this packet never
		// reaches them: the path below says where it ends.
		fmt.Fprintf(t.w, "\n%s: br0 drops the packet in %s before it is load-balanced (the path follows)\n", entry, first.tr.Verdict.Table.Named())
		return
	case !slices.ContainsFunc(flows, func(f ovs.Flow) bool { return f.Cookie&ovs.OwnerMask == pipeline.OwnerServiceProxy.Cookie() }):
		fmt.Fprintf(t.w, "\n%s: br0 has no service proxy flows: the node runs --proxy-mode=kube-proxy, and br0 hands service traffic to the host (tun0) for kube-proxy\n", entry)
		return
	default:
		fmt.Fprintf(t.w, "\n%s: no flow of br0 load-balances %s/%s: br0 hands it to the host (tun0), which rejects it with ICMP port unreachable (the client sees \"connection refused\")\n",
			entry, first.vip, sd.proto)
	}
	t.compareWithAPI(entry, sd, traces)
}

// printChoices writes one line per bucket (or link) and its endpoint.
func (t *tracer) printChoices(entry string, traces []bucketTrace) {
	for _, bt := range traces {
		ep := "no DNAT flow: the packet is not load-balanced"
		if bt.ep.IsValid() {
			ep = t.where(entry, bt.ep)
		}
		fmt.Fprintf(t.w, "  %s %d: %s\n", bt.choice.noun(), bt.bucket, ep)
	}
}

// where is "10.128.0.6:8080 local (pod proj1/server)" or "… on node node2 (…)".
func (t *tracer) where(entry string, ep netip.AddrPort) string {
	s := ep.String()
	switch node := t.cl.nodeOfIP(ep.Addr()); node {
	case entry:
		s += " local"
	case "":
		s += " outside the pod network"
	default:
		s += " on node " + node
	}
	if e, err := t.cl.resolve(ep.Addr().String()); err == nil && e.pod != nil {
		s += " (pod " + e.name() + ")"
	}
	return s
}

// compareWithAPI notes when the endpoints br0 uses are not the ready
// endpoints the API gives this traffic on the node (the agent lags, or
// does not run).
func (t *tracer) compareWithAPI(entry string, sd *serviceDst, traces []bucketTrace) {
	want, err := t.cl.apiEndpoints(sd, entry)
	if err != nil {
		fmt.Fprintf(t.w, "  note: %v\n", err)
		return
	}
	var have []netip.AddrPort
	for _, bt := range traces {
		if bt.bucket >= 0 && bt.ep.IsValid() {
			have = append(have, bt.ep)
		}
	}
	if traces[0].bucket < 0 && traces[0].ep.IsValid() {
		return // a learned choice says nothing about the group
	}
	slices.SortFunc(have, netip.AddrPort.Compare)
	if !slices.Equal(have, want) {
		fmt.Fprintf(t.w, "  note: the API gives this traffic %s on node %s (%s), br0 has %s: the agent has not caught up, or is not running\n",
			plural(len(want), "ready endpoint"), entry, joinAddrPorts(want), joinAddrPorts(have))
	}
}

func joinAddrPorts(a []netip.AddrPort) string {
	if len(a) == 0 {
		return "none"
	}
	s := make([]string, 0, len(a))
	for _, x := range a {
		s = append(s, x.String())
	}
	return strings.Join(s, ", ")
}

// apiEndpoints are the endpoints of sd's traffic on node per the API,
// through the agent's own conversion (proxy.Build), sorted. Like the
// renderer, a traffic policy Local keeps the node's endpoints only
// (internalTrafficPolicy for a ClusterIP, externalTrafficPolicy for a node
// port).
func (v *apiView) apiEndpoints(sd *serviceDst, node string) ([]netip.AddrPort, error) {
	ports, errs := proxy.Build(proxy.Sources{Node: node, Services: []*corev1.Service{sd.svc}, Slices: v.slicesOf(sd.svc)})
	if len(errs) > 0 {
		return nil, errs[0]
	}
	var out []netip.AddrPort
	for _, p := range ports {
		if p.PortName != sd.port.Name || p.Protocol != sd.proto {
			continue
		}
		eps := p.Endpoints
		if sd.nodePort() && p.ExternalLocal || !sd.nodePort() && p.InternalLocal {
			eps = p.LocalEndpoints()
		}
		for _, e := range eps {
			out = append(out, netip.AddrPortFrom(e.IP, e.Port))
		}
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return out, nil
}

// endpointHalves prints the entry node's path through one bucket, then the
// endpoint's node's half when the packet leaves through the tunnel.
func (t *tracer) endpointHalves(ctx context.Context, entry string, sd *serviceDst, bt bucketTrace, ex *networkpolicy.Explainer, srcArg, dstArg string) error {
	et := *t
	if bt.ep.IsValid() {
		if e, err := t.cl.resolve(bt.ep.Addr().String()); err == nil {
			et.dst = e
		} else {
			et.dst = endpoint{ip: bt.ep.Addr()}
		}
		et.port = bt.ep.Port()
		et.rerun = fmt.Sprintf("sdnctl trace %s %s --protocol %s --endpoint %s", srcArg, sd.addr, sd.proto, bt.ep.Addr())
	}
	et.wire = wirePacket(bt)
	switch {
	case bt.bucket >= 0:
		fmt.Fprintf(t.w, "\n%s: %s %d -> %s\n", entry, bt.choice.noun(), bt.bucket, bt.ep)
	case bt.ep.IsValid():
		fmt.Fprintf(t.w, "\n%s: -> %s\n", entry, bt.ep)
	default:
		fmt.Fprintf(t.w, "\n%s: -> the host\n", entry)
	}
	tr := ofTraceOf(bt.tr)
	et.printWith(entry, tr, ex, serviceWords(bt))
	if tr.Verdict.Kind != ovs.VerdictTunnel {
		return nil
	}
	return et.tunnelHalf(ctx, entry, tr.Verdict, srcArg, dstArg)
}

// wirePacket is the packet as it left the entry node (after DNAT and SNAT),
// or, when it did not leave, the translated packet the policies judged.
func wirePacket(bt bucketTrace) *ovs.Packet {
	if len(bt.tr.OutputPackets) > 0 {
		p := bt.tr.OutputPackets[0]
		return &p
	}
	p := bt.tr.Packet // the packet before the group's bucket ran (OVS runs buckets on a copy)
	if bt.ep.IsValid() {
		p.Dst, p.TpDst = bt.ep.Addr(), bt.ep.Port()
	}
	for _, f := range bt.tr.Flows {
		if n, ok := natOf(f, ovs.NATSrc); ok {
			p.Src = n.Addr
		}
	}
	return &p
}

// serviceWords explains the steps of a Service: the choice of the endpoint,
// session affinity, the DNAT and the SNAT.
func serviceWords(bt bucketTrace) func(traceStep) string {
	return func(s traceStep) string {
		if bt.bucket >= 0 && bt.choice.takes(s.Flow) {
			if bt.choice.group == 0 {
				return fmt.Sprintf("multipath over the 5-tuple: link %d of %d -> %s", bt.bucket, bt.choice.n, bt.ep)
			}
			return fmt.Sprintf("select group %d: bucket %d of %d -> %s", bt.choice.group, bt.bucket, bt.choice.n, bt.ep)
		}
		if s.Table.ID == ovs.TableServiceAffinity.ID {
			if ovs.CookieCategoryOf(s.Cookie) == ovs.CookieLearned {
				return "session affinity: the endpoint OVS learned for this client"
			}
			return "session affinity: no earlier choice for this client"
		}
		if _, ok := natOf(s.Flow, ovs.NATDst); ok {
			w := fmt.Sprintf("DNAT %s -> %s: conntrack commits the connection; its replies are un-DNATed in %s", bt.vip, bt.ep, ovs.TableRouting.Named())
			if slices.ContainsFunc(s.Flow.Actions, func(a ovs.Action) bool { _, ok := a.(ovs.Learn); return ok }) {
				w += "; OVS learns this choice for the client (sessionAffinity ClientIP)"
			}
			return w
		}
		if n, ok := natOf(s.Flow, ovs.NATSrc); ok {
			return fmt.Sprintf("SNAT to %s: the reply must come back through this node (node port with externalTrafficPolicy Cluster, or hairpin)", n.Addr)
		}
		return ""
	}
}

// serviceRemoteOnly traces, when the entry node is out of reach, the one
// endpoint given with --endpoint on its own node: sdnctl runs there. The
// endpoint's port comes from the API then, and the packet is the ClusterIP
// connection after DNAT (node ports are not followed: their SNAT is the
// entry node's).
func (t *tracer) serviceRemoteOnly(ctx context.Context, entry string, sd *serviceDst, only netip.Addr, srcArg, dstArg string) error {
	if !only.IsValid() || sd.nodePort() {
		return nil
	}
	epNode := t.cl.nodeOfIP(only)
	hs, ok := t.cl.subnet(epNode)
	if !ok || epNode == entry {
		return nil
	}
	want, err := t.cl.apiEndpoints(sd, entry)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(want, func(a netip.AddrPort) bool { return a.Addr() == only })
	if i < 0 {
		return fmt.Errorf("--endpoint %s: the API gives service %s no such ready endpoint", only, sd.name())
	}
	et := *t
	et.wire = &ovs.Packet{Src: t.src.ip, Dst: only, TpSrc: 40000, TpDst: want[i].Port()}
	et.port = want[i].Port()
	et.rerun = t.rerun + " --endpoint " + only.String()
	if e, err := t.cl.resolve(only.String()); err == nil {
		et.dst = e
	}
	if _, ok := t.o.reach(epNode); ok {
		fmt.Fprintf(t.w, "\n%s: the packet after DNAT to %s (its port from the API), arriving from node %s\n", epNode, want[i], entry)
	}
	v := ovs.Verdict{Kind: ovs.VerdictTunnel, Port: pipeline.OFPortVXLAN, TunID: uint64(t.src.vnid)}
	v.TunDst, _ = netip.ParseAddr(hs.HostIP)
	return et.tunnelHalf(ctx, entry, v, srcArg, dstArg)
}
