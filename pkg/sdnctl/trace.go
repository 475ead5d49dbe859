package sdnctl

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// defaultOVSRunDir is where a node's OVS keeps br0.mgmt, db.sock and the ovs-vswitchd
// control socket (the sdn-node DaemonSet mounts it).
const defaultOVSRunDir = "/var/run/openvswitch"

type traceOptions struct {
	port     uint16
	protocol string
	nodeReach
}

func newTraceCommand(c *cli) *cobra.Command {
	o := &traceOptions{}
	host, _ := os.Hostname()
	if n := os.Getenv("NODE_NAME"); n != "" {
		host = n
	}
	cmd := &cobra.Command{
		Use:   "trace SRC DST [--port P --protocol tcp|udp|sctp]",
		Short: "Trace a packet through br0 on the nodes it crosses and explain the verdict",
		Long: `Trace a packet from SRC to DST through the OpenFlow pipeline and explain the verdict.

SRC and DST are NAMESPACE/POD or an IP. sdnctl resolves pods from the API (IP, node, MAC
0a:58:<ip>, the namespace's VNID from its NetNamespace), finds the source pod's OVS port,
runs "ovs-appctl ofproto/trace" on the source node and, when the packet leaves through the
VXLAN tunnel, on the destination node (in_port=vxlan0 with the source node as tun_src and the
source VNID as tun_id). It prints the path through the named tables, which table dropped or
delivered the packet, and which NetworkPolicy rule (namespace/name, direction, rule index)
allowed it or which isolation (the policies selecting the pod) dropped it.

A source that is not a pod (an IP) is traced as host traffic entering the destination
node from tun0.

Each node's OVS is reached through its run directory: the local node's is
/var/run/openvswitch, so running sdnctl on a node (or in its sdn-node pod) traces the
local half. --ovs-rundir NODE=DIR or --ovs-rundir-root DIR (DIR/<node>, as in the netlab
lab) name others; --node-target, --node-ovsdb and --appctl-target override single sockets.
A half whose node cannot be reached is skipped with the command to run on that node.`,
		Example: `  # Can proj1/client open TCP 5432 on proj2/db-0?
  sdnctl trace proj1/client proj2/db-0 --port 5432

  # Both nodes of a netlab lab
  sdnctl trace proj1/client proj2/db-0 --port 5432 --ovs-rundir-root /run/netlab/lab1

  # UDP to an address outside the cluster
  sdnctl trace proj1/client 8.8.8.8 --protocol udp --port 53`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), c, cmd.CommandPath(), args[0], args[1])
		},
	}
	fs := cmd.Flags()
	fs.Uint16Var(&o.port, "port", 80, "Destination port.")
	fs.StringVar(&o.protocol, "protocol", "tcp", "Protocol: tcp, udp or sctp.")
	o.addFlags(fs, host, "The bridge to trace on every node.")
	return cmd
}

// endpoint is SRC or DST resolved.
type endpoint struct {
	arg  string
	ip   netip.Addr
	pod  *corev1.Pod // nil for a bare IP
	node string      // the node whose subnet holds ip, "" outside the cluster
	vnid uint32
}

func (e endpoint) name() string {
	if e.pod != nil {
		return e.pod.Namespace + "/" + e.pod.Name
	}
	return e.ip.String()
}

func (o *traceOptions) run(ctx context.Context, c *cli, cmdPath, srcArg, dstArg string) error {
	proto, ok := map[string]ovs.Proto{"tcp": ovs.ProtoTCP, "udp": ovs.ProtoUDP, "sctp": ovs.ProtoSCTP}[strings.ToLower(o.protocol)]
	if !ok {
		return usageErrorf(cmdPath, "--protocol must be tcp, udp or sctp, got %q", o.protocol)
	}
	if o.port == 0 {
		return usageErrorf(cmdPath, "--port must be 1..65535")
	}
	cl, err := loadAPIView(ctx, c, "sdnctl trace")
	if err != nil {
		return err
	}
	src, err := cl.resolve(srcArg)
	if err != nil {
		return err
	}
	dst, err := cl.resolve(dstArg)
	if err != nil {
		return err
	}
	if src.pod == nil && dst.pod == nil {
		return fmt.Errorf("neither %s nor %s is a pod: one end must be a pod", srcArg, dstArg)
	}
	w := c.opts.Out
	fmt.Fprintf(w, "Trace %s %s -> %s port %d\n", strings.ToLower(o.protocol), src.ip, dst.ip, o.port)
	fmt.Fprintf(w, "  source:      %s\n  destination: %s\n", cl.describe(src), cl.describe(dst))

	t := &tracer{o: o, cl: cl, backend: c.ovsBackend(), src: src, dst: dst, proto: proto, w: w}
	return t.run(ctx, c, srcArg, dstArg)
}

func (cl *apiView) describe(e endpoint) string {
	s := e.name()
	if e.pod != nil {
		s += " " + e.ip.String()
	}
	switch {
	case e.node != "":
		s += " on node " + e.node
	case e.pod == nil:
		s += " (outside the pod network)"
	}
	if e.pod != nil {
		s += fmt.Sprintf(" (VNID %d)", e.vnid)
	}
	return s
}

// resolve turns NS/POD or an IP into an endpoint.
func (cl *apiView) resolve(arg string) (endpoint, error) {
	e := endpoint{arg: arg}
	if ip, err := netip.ParseAddr(arg); err == nil {
		e.ip = ip.Unmap()
		for _, p := range cl.pods {
			if !p.Spec.HostNetwork && p.Status.PodIP == e.ip.String() && p.DeletionTimestamp == nil {
				e.pod = p
			}
		}
	} else {
		ns, name, ok := strings.Cut(arg, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return e, fmt.Errorf("%q is neither NAMESPACE/POD nor an IP address", arg)
		}
		for _, p := range cl.pods {
			if p.Namespace == ns && p.Name == name {
				e.pod = p
			}
		}
		if e.pod == nil {
			return e, fmt.Errorf("pod %s not found", arg)
		}
		if e.pod.Spec.HostNetwork {
			return e, fmt.Errorf("pod %s uses the host network: it does not cross br0 with its own address", arg)
		}
		if e.ip, err = netip.ParseAddr(e.pod.Status.PodIP); err != nil {
			return e, fmt.Errorf("pod %s has no IP yet", arg)
		}
	}
	if e.pod != nil {
		v, ok := cl.vnids[e.pod.Namespace]
		if !ok {
			return e, fmt.Errorf("namespace %s has no NetNamespace (VNID) yet", e.pod.Namespace)
		}
		e.vnid = v
	}
	for _, hs := range cl.subnets {
		if p, err := netip.ParsePrefix(hs.Subnet); err == nil && p.Contains(e.ip) {
			e.node = hs.Host
		}
	}
	if e.pod != nil && e.pod.Spec.NodeName != "" {
		e.node = e.pod.Spec.NodeName
	}
	return e, nil
}

// tracer runs the halves and prints them.
type tracer struct {
	o        *traceOptions
	cl       *apiView
	backend  OVSBackend
	src, dst endpoint
	proto    ovs.Proto
	w        io.Writer
	verdicts []string
}

func (t *tracer) run(ctx context.Context, c *cli, srcArg, dstArg string) error {
	if t.src.pod == nil {
		// Host or outside traffic: it enters the destination node from tun0 with VNID 0.
		flow := t.packetFields(fmt.Sprintf("in_port=%d", pipeline.OFPortTun0))
		_, err := t.half(ctx, t.dst.node, flow, srcArg, dstArg)
		return err
	}
	srcNode := t.src.node
	ovsAt, ok := t.o.reach(srcNode)
	if !ok {
		t.skipped(srcNode, srcArg, dstArg)
		return t.continueRemote(ctx, srcArg, dstArg)
	}
	ofport, how, err := t.sourcePort(ctx, ovsAt)
	if err != nil {
		return fmt.Errorf("node %s: %w", srcNode, err)
	}
	fmt.Fprintf(t.w, "  source port: ofport %d (%s)\n", ofport, how)
	tr, err := t.half(ctx, srcNode, t.packetFields(fmt.Sprintf("in_port=%d", ofport)), srcArg, dstArg)
	if err == nil && tr != nil && tr.visits(ovs.TableEgressRouting) {
		for _, line := range egressWords(t.src, t.cl.subnets, t.cl.netNamespaces) {
			fmt.Fprintf(t.w, "  %s\n", line)
		}
	}
	if err != nil || tr == nil || tr.Verdict.Kind != ovs.VerdictTunnel {
		return err
	}
	return t.tunnelHalf(ctx, srcNode, tr.Verdict, srcArg, dstArg)
}

// continueRemote traces the destination half when the source node is out of reach but
// the destination node is reachable (sdnctl run on the destination node).
func (t *tracer) continueRemote(ctx context.Context, srcArg, dstArg string) error {
	if t.dst.node == "" || t.dst.node == t.src.node {
		return nil
	}
	if _, ok := t.cl.subnet(t.src.node); !ok {
		return nil
	}
	v := ovs.Verdict{Kind: ovs.VerdictTunnel, Port: pipeline.OFPortVXLAN, TunID: uint64(t.src.vnid)}
	if dstHS, ok := t.cl.subnet(t.dst.node); ok {
		v.TunDst, _ = netip.ParseAddr(dstHS.HostIP)
	}
	return t.tunnelHalf(ctx, t.src.node, v, srcArg, dstArg)
}

// tunnelHalf traces the packet arriving over VXLAN at the node owning v.TunDst.
func (t *tracer) tunnelHalf(ctx context.Context, srcNode string, v ovs.Verdict, srcArg, dstArg string) error {
	dstHS, ok := t.cl.nodeByIP(v.TunDst)
	if !ok {
		fmt.Fprintf(t.w, "\nThe packet goes to %s, which is no node's HostIP: stopping here.\n", v.TunDst)
		return nil
	}
	srcHS, _ := t.cl.subnet(srcNode)
	flow := t.packetFields(fmt.Sprintf("in_port=%d,tun_src=%s,tun_dst=%s,tun_id=%#x", pipeline.OFPortVXLAN, srcHS.HostIP, dstHS.HostIP, v.TunID))
	_, err := t.half(ctx, dstHS.Host, flow, srcArg, dstArg)
	return err
}

// packetFields is the ofproto/trace flow after the in_port part.
func (t *tracer) packetFields(prefix string) string {
	fields := []string{prefix, t.proto.String()}
	if t.src.pod != nil {
		fields = append(fields, "dl_src="+pipeline.PodMAC(t.src.ip).String())
	}
	if t.dst.pod != nil {
		fields = append(fields, "dl_dst="+pipeline.PodMAC(t.dst.ip).String())
	}
	fields = append(fields, "nw_src="+t.src.ip.String(), "nw_dst="+t.dst.ip.String(), "nw_ttl=64",
		fmt.Sprintf("%[1]s_src=40000,%[1]s_dst=%[2]d", t.proto, t.o.port))
	return strings.Join(fields, ",")
}

func (t *tracer) skipped(nodeName, srcArg, dstArg string) {
	fmt.Fprintf(t.w, "\n%s: not traced: sdnctl cannot reach this node's OVS. Run on node %s:\n  sdnctl trace %s %s --protocol %s --port %d\n"+
		"or name its OVS run directory with --ovs-rundir %s=DIR.\n", nodeName, nodeName, srcArg, dstArg, strings.ToLower(t.o.protocol), t.o.port, nodeName)
}

// sourcePort finds the source pod's ofport: from the external_ids of its OVS port, else
// from the agent's PodAntiSpoof flow for its IP.
func (t *tracer) sourcePort(ctx context.Context, n nodeOVS) (uint32, string, error) {
	var errs []string
	if n.ovsdb != "" {
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		ports, err := t.backend.Ports(lctx, n.ovsdb, t.o.bridge)
		cancel()
		if err == nil {
			for _, p := range ports {
				if p.ExternalIDs[ovsdb.ExternalIDPodNamespace] == t.src.pod.Namespace && p.ExternalIDs[ovsdb.ExternalIDPodName] == t.src.pod.Name && p.OFPort > 0 {
					return uint32(p.OFPort), "OVSDB port " + p.Name, nil
				}
			}
			errs = append(errs, "no port of "+t.o.bridge+" in OVSDB names the pod")
		} else {
			errs = append(errs, fmt.Sprintf("OVSDB %s: %v", n.ovsdb, err))
		}
	}
	if n.ofctl != "" {
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		flows, err := t.backend.DumpFlows(lctx, n.ofctl, ovs.InTable(ovs.TablePodAntiSpoof))
		cancel()
		if err == nil {
			for _, f := range flows {
				if port, ok := antiSpoofPort(f.Flow, t.src.ip); ok {
					return port, "PodAntiSpoof flow of " + t.src.ip.String(), nil
				}
			}
			errs = append(errs, "no PodAntiSpoof flow for "+t.src.ip.String())
		} else {
			errs = append(errs, fmt.Sprintf("dump-flows %s: %v", n.ofctl, err))
		}
	}
	return 0, "", fmt.Errorf("cannot find the OVS port of pod %s: %s", t.src.name(), strings.Join(errs, "; "))
}

func antiSpoofPort(f ovs.Flow, ip netip.Addr) (uint32, bool) {
	var port uint32
	src := false
	for _, m := range f.Match {
		switch m := m.(type) {
		case ovs.InPort:
			port = uint32(m)
		case ovs.AddrMatch:
			src = src || m.Field == "nw_src" && m.Prefix == ovs.HostPrefix(ip)
		}
	}
	return port, src && port != 0
}

// traceCapture, when set (tests), sees every raw ofproto/trace output.
var traceCapture func(nodeName, flow, out string)

// half traces flow on nodeName and prints the path and the verdict.
func (t *tracer) half(ctx context.Context, nodeName, flow, srcArg, dstArg string) (*ofTrace, error) {
	n, ok := t.o.reach(nodeName)
	if !ok {
		t.skipped(nodeName, srcArg, dstArg)
		return nil, nil
	}
	fmt.Fprintf(t.w, "\n%s: ovs-appctl ofproto/trace %s '%s'\n", nodeName, t.o.bridge, flow)
	out, err := ovs.Appctl(ctx, 3*lookupTimeout, n.appctl, "ofproto/trace", t.o.bridge, flow)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w (is ovs-vswitchd running there? pass --appctl-target %s=PATH)", nodeName, err, nodeName)
	}
	if traceCapture != nil {
		traceCapture(nodeName, flow, out)
	}
	tr, err := parseOFTrace(out)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", nodeName, err)
	}
	t.print(nodeName, tr, t.explainer(ctx, nodeName, n))
	return tr, nil
}

// explainer compiles the node's policies as its agent does, with the pod
// ports of its OVSDB when reachable.
func (t *tracer) explainer(ctx context.Context, nodeName string, n nodeOVS) *networkpolicy.Explainer {
	var local map[string]netip.Addr
	if n.ovsdb != "" {
		var err error
		if local, err = localIPs(ctx, t.backend, n.ovsdb, t.o.bridge); err != nil {
			fmt.Fprintf(t.w, "  note: policies compiled with the pods' status addresses: %v\n", err)
		}
	}
	return t.cl.explainer(nodeName, local)
}

// print writes the steps with explanations and the half's verdict.
func (t *tracer) print(nodeName string, tr *ofTrace, ex *networkpolicy.Explainer) {
	pkt := networkpolicy.Packet{Src: t.src.ip, Dst: t.dst.ip, SrcVNID: t.src.vnid, DstVNID: t.dst.vnid, Proto: t.proto, Port: t.o.port}
	var policyWords string
	for _, s := range tr.Steps {
		if s.NoMatch {
			fmt.Fprintf(t.w, "  %-22s no match\n", s.Table.Named())
			continue
		}
		match := s.Match
		if match == "" {
			match = "*"
		}
		fmt.Fprintf(t.w, "  %-22s p%-5d %s -> %s\n", s.Table.Named(), s.Priority, match, strings.Join(s.displayActions(), ","))
		if words := t.explainStep(ex, s, pkt); words != "" {
			fmt.Fprintf(t.w, "  %-22s        %s\n", "", words)
			if _, isPolicy := networkpolicy.DirectionOf(s.Table); isPolicy {
				policyWords = words
			}
		}
	}
	for _, n := range tr.Notes {
		fmt.Fprintf(t.w, "  note: %s\n", n)
	}
	fmt.Fprintf(t.w, "  => %s\n", t.verdictWords(nodeName, tr, policyWords))
}

// explainStep returns words for the steps that decide: policy tables and drops.
func (t *tracer) explainStep(ex *networkpolicy.Explainer, s traceStep, pkt networkpolicy.Packet) string {
	if d, ok := networkpolicy.DirectionOf(s.Table); ok && s.FlowOK {
		if x := ex.ExplainFlow(s.Flow, pkt); x.Kind != networkpolicy.KindNotCompiled {
			return "NetworkPolicy " + string(d) + ": " + x.String()
		}
		return staticPolicyWords(s, d)
	}
	if s.FlowOK && s.Flow.IsDrop() {
		return dropWords(s)
	}
	return ""
}

// staticPolicyWords explains the flows of tables 27/80 that pkg/node renders.
func staticPolicyWords(s traceStep, d networkpolicy.Direction) string {
	cat := ovs.CookieCategoryOf(s.Cookie)
	switch {
	case s.Priority == 0:
		return "dropped: no " + string(d) + " flow admits this packet (final drop of the table)"
	case cat == ovs.CookieNamespace:
		return "allowed: source and destination share a VNID (multitenant isolation)"
	case d == networkpolicy.Ingress && s.Priority == 300:
		return "allowed: traffic from the node gateway always reaches pods"
	case d == networkpolicy.Egress && s.Priority == 300:
		return "allowed: service traffic passes here; egress is checked after DNAT"
	case s.Priority == 200 && strings.Contains(s.Match, "+rpl"):
		return "allowed: a reply of an allowed connection"
	case s.Priority == 200 || s.Priority == 500:
		return "allowed by the isolation mode (subnet, or the global VNID 0 in multitenant)"
	case s.Priority == 50:
		return "allowed by the allow-all placeholder: the agent has not installed compiled policies for this namespace"
	}
	return ""
}

// dropWords explains the final drops of the other tables.
func dropWords(s traceStep) string {
	why := map[uint8]string{
		ovs.TableClassifier.ID:   "not IP or ARP, or from an unexpected port",
		ovs.TableVXLANIngress.ID: "VXLAN from a host that is no known node",
		ovs.TablePodAntiSpoof.ID: "the source address does not belong to the pod on this port (anti-spoofing)",
		ovs.TableRouting.ID:      "no route for the destination",
		ovs.TableLocalPod.ID:     "no local pod has the destination address",
		ovs.TableRemotePod.ID:    "no node's subnet holds the destination address",
	}[s.Table.ID]
	if why == "" {
		why = "no flow of the table admits this packet"
	}
	return "dropped: " + why
}

func (t *tracer) verdictWords(nodeName string, tr *ofTrace, policyWords string) string {
	v := tr.Verdict
	switch v.Kind {
	case ovs.VerdictTunnel:
		to := v.TunDst.String()
		if hs, ok := t.cl.nodeByIP(v.TunDst); ok {
			to = "node " + hs.Host + " (" + v.TunDst.String() + ")"
		}
		return fmt.Sprintf("sent through the VXLAN tunnel to %s with VNID %d", to, v.TunID)
	case ovs.VerdictOutput:
		switch {
		case v.Port == pipeline.OFPortTun0:
			return "delivered to tun0 (the host: services, or traffic leaving the cluster)"
		case t.dst.pod != nil && t.dst.node == nodeName:
			return fmt.Sprintf("delivered to pod %s (ofport %d) on %s", t.dst.name(), v.Port, nodeName)
		}
		return fmt.Sprintf("output to ofport %d", v.Port)
	}
	s := "dropped in " + v.Table.Named() + " on " + nodeName
	if len(tr.Steps) > 0 {
		last := tr.Steps[len(tr.Steps)-1]
		if _, isPolicy := networkpolicy.DirectionOf(last.Table); isPolicy && policyWords != "" {
			s += ": " + policyWords
		} else if last.FlowOK {
			s += ": " + strings.TrimPrefix(dropWords(last), "dropped: ")
		}
	}
	return s
}
