package sdnctl

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/egressfirewall"
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
	endpoint string
	// portSet and protocolSet: --port and --protocol were given (a Service
	// destination otherwise takes its only port and that port's protocol).
	portSet, protocolSet bool
	nodeReach
}

func newTraceCommand(c *cli) *cobra.Command {
	o := &traceOptions{}
	host, _ := os.Hostname()
	if n := os.Getenv("NODE_NAME"); n != "" {
		host = n
	}
	cmd := &cobra.Command{
		Use:   "trace SRC DST [--port P --protocol tcp|udp|sctp] [--endpoint IP]",
		Short: "Trace a packet through br0 on the nodes it crosses and explain the verdict",
		Long: `Trace a packet from SRC to DST through the OpenFlow pipeline and explain the verdict.

SRC and DST are NAMESPACE/POD or an IP. sdnctl resolves pods from the API (IP, node, MAC
0a:58:<ip>, the namespace's VNID from its NetNamespace), finds the source pod's OVS port,
runs "ovs-appctl ofproto/trace" on the source node and, when the packet leaves through the
VXLAN tunnel, on the destination node (in_port=vxlan0 with the source node as tun_src and the
source VNID as tun_id). It prints the path through the named tables, which table dropped or
delivered the packet, and which NetworkPolicy rule (namespace/name, direction, rule index)
allowed it or which isolation (the policies selecting the pod) dropped it. To an address outside
the cluster network it names the EgressNetworkPolicy rule of table 100 that allowed or
denied the packet (rule i of n has priority n-i; a dnsName rule's flows carry the addresses
the node resolved), or says that no rule matched.

A source that is not a pod (an IP) is traced as host traffic entering the destination
node from tun0.

DST may be a Service: its ClusterIP (--port, or IP:PORT, picks the Service port; a Service
with one port needs neither), or a node's address and a node port (IP:NODEPORT). Open
vSwitch's ofproto/trace cannot choose a bucket of a select group, so sdnctl dumps the
node's flows and groups (ovs-ofctl dump-flows, dump-groups) and pushes the packet through
them with its own tracer, once per bucket: it lists the Service's endpoints as br0 has them
(one line per bucket, local or on which node), the DNAT, and for each endpoint (or only
--endpoint IP) the rest of the path with the NetworkPolicy verdict, which is decided after
DNAT. An endpoint on another node is followed there with ofproto/trace, as for a pod. A
ClusterIP is traced from a pod (SRC); a node port from SRC's address entering that node's
br0 from tun0, where the host's DNAT to the node-port address hands it over.

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
  sdnctl trace proj1/client 8.8.8.8 --protocol udp --port 53

  # Through a ClusterIP: every endpoint, or one
  sdnctl trace proj1/client 172.30.0.10:80
  sdnctl trace proj1/client 172.30.0.10 --port 80 --endpoint 10.128.2.5

  # A node port from outside the cluster
  sdnctl trace 198.18.0.254 192.168.126.10:30080`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.portSet, o.protocolSet = cmd.Flags().Changed("port"), cmd.Flags().Changed("protocol")
			return o.run(cmd.Context(), c, cmd.CommandPath(), args[0], args[1])
		},
	}
	fs := cmd.Flags()
	fs.Uint16Var(&o.port, "port", 80, "Destination port (of a Service: its port, or the node port).")
	fs.StringVar(&o.protocol, "protocol", "tcp", "Protocol: tcp, udp or sctp.")
	fs.StringVar(&o.endpoint, "endpoint", "", "With a Service DST: trace only to this endpoint IP (default: every endpoint).")
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
	var endpointIP netip.Addr
	if o.endpoint != "" {
		var err error
		if endpointIP, err = netip.ParseAddr(o.endpoint); err != nil {
			return usageErrorf(cmdPath, "--endpoint must be an IP address, got %q", o.endpoint)
		}
	}
	cl, err := loadAPIView(ctx, c, "sdnctl trace")
	if err != nil {
		return err
	}
	src, err := cl.resolve(srcArg)
	if err != nil {
		return err
	}
	if err := cl.loadServices(ctx, c); err != nil {
		return err
	}
	sd, err := cl.serviceDst(dstArg, o)
	if err != nil {
		return err
	}
	if sd != nil {
		return o.runService(ctx, c, cl, src, sd, endpointIP, srcArg, dstArg)
	}
	if o.endpoint != "" {
		return usageErrorf(cmdPath, "--endpoint needs a Service destination (a ClusterIP, or a node address and node port); %s is none", dstArg)
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

	t := &tracer{o: o, cl: cl, backend: c.ovsBackend(), src: src, dst: dst, proto: proto, port: o.port, w: w, fw: cl.egressDecisions()}
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
	port     uint16 // the destination port
	w        io.Writer
	verdicts []string
	// fw are the egress firewall's decisions (egress.go), fwWords what
	// table 100 decided in the half being printed.
	fw      map[uint32]egressfirewall.Decision
	fwWords string
	// wire, when set, is the packet as it leaves the first node after NAT (a
	// Service's endpoint half): the later halves trace it instead of src → dst.
	wire *ovs.Packet
	// rerun, when set, is the command printed for a node sdnctl cannot reach.
	rerun string
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
	srcIP, dstIP, srcPort, dstPort := t.src.ip, t.dst.ip, uint16(40000), t.port
	if w := t.wire; w != nil {
		if w.Src != t.src.ip && t.src.pod != nil {
			fields = slices.DeleteFunc(fields, func(f string) bool { return strings.HasPrefix(f, "dl_src=") })
		}
		srcIP, dstIP, srcPort, dstPort = w.Src, w.Dst, w.TpSrc, w.TpDst
	}
	fields = append(fields, "nw_src="+srcIP.String(), "nw_dst="+dstIP.String(), "nw_ttl=64",
		fmt.Sprintf("%[1]s_src=%[2]d,%[1]s_dst=%[3]d", t.proto, srcPort, dstPort))
	return strings.Join(fields, ",")
}

func (t *tracer) skipped(nodeName, srcArg, dstArg string) {
	rerun := t.rerun
	if rerun == "" {
		rerun = fmt.Sprintf("sdnctl trace %s %s --protocol %s --port %d", srcArg, dstArg, t.proto, t.port)
	}
	fmt.Fprintf(t.w, "\n%s: not traced: sdnctl cannot reach this node's OVS. Run on node %s:\n  %s\n"+
		"or name its OVS run directory with --ovs-rundir %s=DIR.\n", nodeName, nodeName, rerun, nodeName)
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
