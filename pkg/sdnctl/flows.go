package sdnctl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// `sdnctl flows`: the command, its flags and their validation. The owner
// naming is in flows_owners.go, --policy in flows_policy.go, grouping and
// printing in flows_print.go.

// Defaults of `sdnctl flows`: the local bridge and the system OVSDB socket, as on a node
// running sdn-node (its DaemonSet mounts /var/run/openvswitch).
const (
	defaultOfctlTarget = "br0"
	defaultOVSDB       = "unix:/var/run/openvswitch/db.sock"
	// lookupTimeout bounds each naming lookup (OVSDB, API): names are a convenience and
	// never worth a hanging command.
	lookupTimeout = 5 * time.Second
)

// Output formats of `sdnctl flows`.
const (
	flowsOutputWide = "wide"
	flowsOutputRaw  = "raw"
)

// categoryNames are the --owner values.
func categoryNames() []string {
	names := make([]string, 0, len(pipeline.Categories))
	for _, k := range pipeline.Categories {
		names = append(names, k.Name)
	}
	return names
}

// flowsOptions are the flags of `sdnctl flows`.
type flowsOptions struct {
	ofctlTarget string
	ovsdb       string
	pod         string
	policy      string
	egressFW    string
	service     string
	table       string
	owner       string
	node        string
	output      string
}

func newFlowsCommand(c *cli) *cobra.Command {
	o := &flowsOptions{}
	cmd := &cobra.Command{
		Use:   "flows [--pod NS/NAME | --policy NS/NAME | --service NS/NAME | --egress-firewall NS | --owner KIND] [--table NAME|N]",
		Short: "Display the OpenFlow flows of a node's bridge, grouped by owner",
		Long: `Display the OpenFlow flows of the node's br0 with table names, grouped by owner.

Every flow the node agent installs carries its owner in the cookie: the static pipeline,
a local pod, a remote node, a namespace (VNID), a namespace's NetworkPolicies, multicast,
egress, a Service. sdnctl dumps the bridge with ovs-ofctl and prints one block per owner,
pipeline first, each flow as "table=Name(N),priority=P,cookie=…,match actions=…", sorted
by table and by priority (highest first). The OpenFlow groups a block's flows use (a
Service's select groups: one bucket per endpoint) follow its flows, as ovs-ofctl
dump-groups prints them.

Owners are named from what the node knows: pods from the external_ids of their OVS ports
(--ovsdb), VNIDs from the flows themselves, remote nodes and namespaces from HostSubnets
and NetNamespaces, Services from the Services when the API server is reachable
(--kubeconfig). An owner that cannot be named is shown by its cookie, with a note on
stderr.

--service NS/NAME shows the flows and groups of one Service (every port: ClusterIP and
NodePort entries, the DNAT of each endpoint) and the session-affinity flows OVS learned
for its clients ("learned" block). A Service with no ready endpoint on the node has no
flows: its traffic goes to the host, which rejects it.

--policy NS/NAME shows the flows that one NetworkPolicy compiles to on the node: the
compiled policy flows are owned per namespace (and shared clause flows by no namespace),
so sdnctl reads the namespace's policies, pods and NetNamespaces from the API, compiles
them as the node's agent does for --node (default $NODE_NAME, else the hostname), and
keeps the conjunction, clause and plain allow flows of the policy's rules and the
namespace's default drop that isolates the pods it selects. Each flow is labelled with
its rule ("# ingress[0]") or the pods it isolates. It needs the API server.

--egress-firewall NS shows the EgressNetworkPolicy flows (table 100) of the namespace's
VNID, each labelled with the rule it renders ("# egress[1]: Deny 203.0.113.8/29"; a
dnsName rule's flows carry the addresses the node resolved), and says on stderr what the
VNID's egress firewall does (which policy it enforces, or why it drops all). It needs the
API server.

Run it on a node (or in the sdn-node pod), or point --ofctl-target at a bridge's
management socket.`,
		Example: `  # Every flow of the local br0, by owner
  sdnctl flows

  # The flows of one pod
  sdnctl flows --pod proj1/client-1

  # The flows one NetworkPolicy compiles to on node1, labelled with its rules
  sdnctl flows --node node1 --policy proj1/allow-server

  # The egress firewall of namespace proj1, labelled with its EgressNetworkPolicy rules
  sdnctl flows --egress-firewall proj1
  # The flows and select groups of one Service
  sdnctl flows --service proj1/web

  # One table, by name or by number, with packet counters
  sdnctl flows --table PodAntiSpoof -o wide
  sdnctl flows --table 20

  # The remote-node flows in ovs-ofctl syntax, e.g. to diff two nodes
  sdnctl flows --owner node -o raw`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), c, cmd.CommandPath())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.ofctlTarget, "ofctl-target", defaultOfctlTarget,
		"Where ovs-ofctl connects: a bridge name (the local bridge) or a management socket such as unix:/var/run/openvswitch/br0.mgmt.")
	fs.StringVar(&o.ovsdb, "ovsdb", defaultOVSDB,
		"OVSDB endpoint used to name pod owners from the external_ids of their ports; empty to skip.")
	fs.StringVar(&o.pod, "pod", "", "Only the flows owned by this pod, as NAMESPACE/NAME.")
	fs.StringVar(&o.policy, "policy", "", "Only the flows compiled from this NetworkPolicy, as NAMESPACE/NAME (needs the API server).")
	fs.StringVar(&o.egressFW, "egress-firewall", "", "Only the EgressNetworkPolicy (table 100) flows of this namespace's VNID, each labelled with its rule (needs the API server).")
	fs.StringVar(&o.service, "service", "", "Only the flows and groups of this Service, as NAMESPACE/NAME, and the session-affinity flows learned for it.")
	fs.StringVar(&o.table, "table", "", "Only the flows of this table: a name (case-insensitive, e.g. PodAntiSpoof) or a number.")
	fs.StringVar(&o.owner, "owner", "", "Only the flows of this kind of owner. One of: ("+strings.Join(categoryNames(), ", ")+").")
	fs.StringVar(&o.node, "node", "", "The node whose bridge is shown; printed in the header. --policy compiles for it (default $NODE_NAME, else the hostname).")
	fs.StringVarP(&o.output, "output", "o", "", "Output format. One of: (wide, raw). wide adds packet and byte counters and the flow's age; raw prints bare ovs-ofctl flows (no groups).")
	return cmd
}

// flowsQuery is the validated form of the flags.
type flowsQuery struct {
	filter      ovs.Filter
	description []string // the filters, for the header
	// policyNS and policyName are the --policy NetworkPolicy ("" without it).
	policyNS, policyName string
	// egressNS is the --egress-firewall namespace ("" without it).
	egressNS string
	// serviceNS and serviceName are the --service Service ("" without it).
	serviceNS, serviceName string
}

// query validates the flags and turns them into a dump filter.
func (o *flowsOptions) query(cmdPath string) (flowsQuery, error) {
	var q flowsQuery
	switch o.output {
	case "", flowsOutputWide, flowsOutputRaw:
	default:
		return q, usageErrorf(cmdPath, "unable to match a printer suitable for the output format %q, allowed formats are: wide,raw", o.output)
	}
	if o.ofctlTarget == "" {
		return q, usageErrorf(cmdPath, "--ofctl-target must not be empty")
	}
	if o.table != "" {
		t, err := parseTableFlag(o.table)
		if err != nil {
			return q, usageErrorf(cmdPath, "%v", err)
		}
		q.filter.Table = &t
		q.description = append(q.description, "table "+t.Named())
	}
	if o.egressFW != "" {
		return o.egressQuery(cmdPath, q)
	}
	if o.service != "" {
		return q, o.serviceQuery(cmdPath, &q)
	}
	if o.policy != "" {
		ns, name, ok := cutNamespacedName(o.policy)
		if !ok {
			return q, usageErrorf(cmdPath, "--policy must be NAMESPACE/NAME, got %q", o.policy)
		}
		if o.pod != "" {
			return q, usageErrorf(cmdPath, "--policy and --pod cannot be combined")
		}
		if o.owner != "" && !strings.EqualFold(o.owner, "policy") {
			return q, usageErrorf(cmdPath, "--policy selects policy flows; it cannot be combined with --owner %s", o.owner)
		}
		// The namespace's flows and the shared clause flows: one category filter, the
		// two owners are kept afterwards.
		q.filter.Cookie = ovs.MatchCategory(ovs.CookiePolicy)
		q.policyNS, q.policyName = ns, name
		q.description = append(q.description, "policy "+ns+"/"+name)
	} else if o.pod != "" {
		ns, name, ok := cutNamespacedName(o.pod)
		if !ok {
			return q, usageErrorf(cmdPath, "--pod must be NAMESPACE/NAME, got %q", o.pod)
		}
		if o.owner != "" && o.owner != "pod" {
			return q, usageErrorf(cmdPath, "--pod selects pod flows; it cannot be combined with --owner %s", o.owner)
		}
		q.filter.Cookie = pipeline.PodOwner(ns, name).CookieMatch()
		q.description = append(q.description, "pod "+ns+"/"+name)
	} else if o.owner != "" {
		i := slices.IndexFunc(pipeline.Categories, func(k pipeline.Category) bool { return k.Name == strings.ToLower(o.owner) })
		if i < 0 {
			return q, usageErrorf(cmdPath, "unknown owner kind %q: one of %s", o.owner, strings.Join(categoryNames(), ", "))
		}
		q.filter.Cookie = ovs.MatchCategory(pipeline.Categories[i].Cookie)
		q.description = append(q.description, "owner "+pipeline.Categories[i].Name)
	}
	return q, nil
}

// serviceQuery validates --service and the flags it cannot be combined with.
func (o *flowsOptions) serviceQuery(cmdPath string, q *flowsQuery) error {
	ns, name, ok := cutNamespacedName(o.service)
	if !ok {
		return usageErrorf(cmdPath, "--service must be NAMESPACE/NAME, got %q", o.service)
	}
	switch {
	case o.pod != "":
		return usageErrorf(cmdPath, "--service and --pod cannot be combined")
	case o.policy != "":
		return usageErrorf(cmdPath, "--service and --policy cannot be combined")
	case o.owner != "" && !strings.EqualFold(o.owner, "service"):
		return usageErrorf(cmdPath, "--service selects service flows; it cannot be combined with --owner %s", o.owner)
	}
	q.filter.Cookie = pipeline.ServiceOwner(ns, name).CookieMatch()
	q.serviceNS, q.serviceName = ns, name
	q.description = append(q.description, "service "+ns+"/"+name)
	return nil
}

// cutNamespacedName splits "NAMESPACE/NAME"; ok is false for anything else.
func cutNamespacedName(s string) (ns, name string, ok bool) {
	ns, name, ok = strings.Cut(s, "/")
	return ns, name, ok && ns != "" && name != "" && !strings.Contains(name, "/")
}

// parseTableFlag accepts a pipeline table name in any case, "Name(N)", or a number 0..254.
func parseTableFlag(s string) (ovs.Table, error) {
	if name, rest, ok := strings.Cut(s, "("); ok && strings.HasSuffix(rest, ")") {
		t, err := parseTableFlag(strings.TrimSuffix(rest, ")"))
		if err != nil || !strings.EqualFold(t.Name, name) {
			return ovs.Table{}, fmt.Errorf("unknown table %q", s)
		}
		return t, nil
	}
	if id, err := strconv.ParseUint(s, 10, 8); err == nil {
		if id == 255 {
			return ovs.Table{}, fmt.Errorf("table %d is not a flow table (0..254)", id)
		}
		t, _ := ovs.TableByID(uint8(id))
		return t, nil
	}
	for _, t := range ovs.Tables {
		if strings.EqualFold(t.Name, s) {
			return t, nil
		}
	}
	names := make([]string, 0, len(ovs.Tables))
	for _, t := range ovs.Tables {
		names = append(names, t.Name)
	}
	return ovs.Table{}, fmt.Errorf("unknown table %q: a number or one of %s", s, strings.Join(names, ", "))
}

func (o *flowsOptions) run(ctx context.Context, c *cli, cmdPath string) error {
	q, err := o.query(cmdPath)
	if err != nil {
		return err
	}
	var pol *policyFlows
	var fw *egressFlows
	if q.egressNS != "" {
		if fw, err = o.loadEgressFirewall(ctx, c, q.egressNS); err != nil {
			return err
		}
		q.filter.Cookie = pipeline.EgressFirewallOwner(fw.vnid).CookieMatch()
	}
	if q.policyNS != "" {
		// The API first: without it --policy means nothing, and an unknown policy
		// should not wait for the bridge.
		if pol, err = o.loadPolicy(ctx, c, q.policyNS, q.policyName); err != nil {
			return err
		}
	}
	backend := c.ovsBackend()
	flows, err := o.dump(ctx, backend, q.filter)
	if err != nil {
		return err
	}
	if q.serviceName != "" {
		learned, err := o.dump(ctx, backend, ovs.Filter{Table: q.filter.Table, Cookie: affinityCookie(q.serviceNS, q.serviceName)})
		if err != nil {
			return err
		}
		flows = append(flows, learned...)
	}
	var labels map[string]string
	if pol != nil {
		flows, labels = pol.selectFlows(flows, c.opts.ErrOut)
	}
	if fw != nil {
		labels = fw.label(flows, c.opts.ErrOut)
	}
	if len(flows) == 0 {
		where := o.ofctlTarget
		if len(q.description) > 0 {
			where += " matching " + strings.Join(q.description, ", ")
		}
		fmt.Fprintf(c.opts.ErrOut, "No flows found on %s\n", where)
		if q.serviceName != "" {
			fmt.Fprintf(c.opts.ErrOut, "A Service has flows on a node running --proxy-mode=ovs once it has a ready endpoint "+
				"(for internalTrafficPolicy Local: on this node); until then the host rejects its traffic.\n")
		}
		return nil
	}
	groups := groupFlows(flows)
	if o.output == flowsOutputRaw {
		return printRawFlows(c.opts.Out, groups)
	}
	nGroups := attachGroups(ctx, backend, o.ofctlTarget, groups, c.opts.ErrOut)
	n := o.namer(ctx, c, backend, flows, groups, pol, fw, q)
	n.name(groups)
	n.reportUnnamed(groups)
	return printFlowGroups(c.opts.Out, o.header(len(flows), len(groups), nGroups, q), groups, o.output == flowsOutputWide, labels)
}

// dump dumps the flows filter selects, with the error a person can act on when the
// bridge is out of reach.
func (o *flowsOptions) dump(ctx context.Context, backend OVSBackend, filter ovs.Filter) ([]ovs.DumpedFlow, error) {
	flows, err := backend.DumpFlows(ctx, o.ofctlTarget, filter)
	if err != nil {
		var unreachable *unreachableError
		if errors.As(err, &unreachable) {
			return nil, fmt.Errorf("cannot reach the bridge at %s: is this a node running sdn-node, or pass --ofctl-target\n%v",
				o.ofctlTarget, unreachable.err)
		}
		return nil, err
	}
	// ovs-ofctl selected by the filter already; apply it again so that every backend
	// (and an ovs-ofctl that ignored part of it) gives the same answer.
	return slices.DeleteFunc(flows, func(f ovs.DumpedFlow) bool { return !filter.Selects(f.Flow) }), nil
}

// namer collects the names of the blocks' owners from the sources they need.
func (o *flowsOptions) namer(ctx context.Context, c *cli, backend OVSBackend, flows []ovs.DumpedFlow, groups []*flowGroup,
	pol *policyFlows, fw *egressFlows, q flowsQuery) *namer {
	n := &namer{notes: c.opts.ErrOut}
	n.fromFlows(flows)
	switch {
	case fw != nil:
		n.add(pipeline.EgressFirewallOwner(fw.vnid), ownerName{name: fw.ownerName()})
		return n
	case pol != nil:
		// Both owners (the namespace's and the shared clauses') are known.
		n.add(pipeline.PolicyNamespaceOwner(pol.namespace), ownerName{name: "namespace " + pol.namespace})
		return n
	}
	if needs(groups, ovs.CookiePod, ovs.CookiePolicy) {
		n.fromOVSDB(ctx, backend, o.ovsdb, o.ofctlTarget)
	}
	if needs(groups, ovs.CookieNode, ovs.CookieNamespace, ovs.CookiePolicy, ovs.CookieEgress) {
		n.fromAPI(ctx, c)
	}
	if q.serviceName != "" {
		// Named by the flag, and by the API too when it answers (the ClusterIP).
		n.nameService(q.serviceNS, q.serviceName, "")
	}
	if needs(groups, ovs.CookieService, ovs.CookieLearned) {
		n.fromServices(ctx, c)
	}
	return n
}

// header is the first line of the default and wide output.
func (o *flowsOptions) header(flows, owners, groups int, q flowsQuery) string {
	var b strings.Builder
	b.WriteString("# ")
	b.WriteString(o.ofctlTarget)
	if o.node != "" {
		b.WriteString(" on node ")
		b.WriteString(o.node)
	}
	fmt.Fprintf(&b, ": %s, %s", plural(flows, "flow"), plural(owners, "owner"))
	if groups > 0 {
		b.WriteString(", " + plural(groups, "group"))
	}
	if len(q.description) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(q.description, ", "))
		b.WriteString(")")
	}
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
