package sdnctl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ovs-sdn/ovs-sdn/pkg/networkpolicy"
	"github.com/ovs-sdn/ovs-sdn/pkg/node"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
)

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

type ownerKind struct {
	name     string
	category ovs.CookieCategory
}

// ownerKinds maps the --owner values to cookie categories, in the order blocks are printed.
// "unowned" selects flows with cookie category 0 (added by hand, never by the agent).
var ownerKinds = []ownerKind{
	{"pipeline", ovs.CookiePipeline},
	{"pod", ovs.CookiePod},
	{"node", ovs.CookieNode},
	{"namespace", ovs.CookieNamespace},
	{"policy", ovs.CookiePolicy},
	{"multicast", ovs.CookieMulticast},
	{"egress", ovs.CookieEgress},
	{"unowned", 0},
}

func ownerKindNames() []string {
	names := make([]string, 0, len(ownerKinds))
	for _, k := range ownerKinds {
		names = append(names, k.name)
	}
	return names
}

// categoryName is the --owner name of c, or "category N" for a category this version
// does not know.
func categoryName(c ovs.CookieCategory) string {
	for _, k := range ownerKinds {
		if k.category == c {
			return k.name
		}
	}
	return fmt.Sprintf("category %d", c)
}

// categoryRank orders blocks: the known kinds in ownerKinds order (pipeline first,
// unowned last), unknown categories between egress and unowned.
func categoryRank(c ovs.CookieCategory) int {
	if c == 0 {
		return 1 << 9
	}
	if c <= ovs.CookieEgress {
		return int(c)
	}
	return 1<<8 + int(c)
}

// flowsBackend is how `sdnctl flows` reaches OVS. The default runs ovs-ofctl and dials
// OVSDB; tests put another one into the command's context (withFlowsBackend).
type flowsBackend struct {
	// dump returns the flows of the bridge at target selected by filter. A failure to
	// reach the bridge is an *unreachableError.
	dump func(ctx context.Context, target string, filter ovs.Filter) ([]ovs.DumpedFlow, error)
	// ports lists the ports of bridge from the OVSDB at endpoint.
	ports func(ctx context.Context, endpoint, bridge string) ([]ovsdb.PortInfo, error)
}

type flowsBackendKey struct{}

// withFlowsBackend returns ctx carrying b for the flows command run under it.
func withFlowsBackend(ctx context.Context, b flowsBackend) context.Context {
	return context.WithValue(ctx, flowsBackendKey{}, b)
}

func backendFrom(ctx context.Context) flowsBackend {
	if b, ok := ctx.Value(flowsBackendKey{}).(flowsBackend); ok {
		return b
	}
	return flowsBackend{dump: ofctlDump, ports: ovsdbPorts}
}

// unreachableError marks an ovs-ofctl failure (as opposed to a dump we cannot parse).
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// markingRunner runs ovs-ofctl and marks its failures as unreachableError.
type markingRunner struct{ ovs.ExecRunner }

func (r markingRunner) RunOfctl(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	out, err := r.ExecRunner.RunOfctl(ctx, stdin, args...)
	if err != nil {
		return nil, &unreachableError{err}
	}
	return out, nil
}

// ofctlDump dumps with `ovs-ofctl -O OpenFlow13 dump-flows target filter`, once: an
// interactive command should fail fast rather than retry.
func ofctlDump(ctx context.Context, target string, filter ovs.Filter) ([]ovs.DumpedFlow, error) {
	br := &ovs.OfctlBridge{Name: target, Runner: markingRunner{}, Retry: ovs.Retry{Attempts: 1}}
	return br.DumpFlows(ctx, filter)
}

// ovsdbPorts reads the ports of bridge from the OVSDB at endpoint.
func ovsdbPorts(ctx context.Context, endpoint, bridge string) ([]ovsdb.PortInfo, error) {
	client, err := ovsdb.Dial(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	return client.Ports(ctx, bridge)
}

// flowsOptions are the flags of `sdnctl flows`.
type flowsOptions struct {
	ofctlTarget string
	ovsdb       string
	pod         string
	policy      string
	table       string
	owner       string
	node        string
	output      string
}

func newFlowsCommand(c *cli) *cobra.Command {
	o := &flowsOptions{}
	cmd := &cobra.Command{
		Use:   "flows [--pod NS/NAME | --policy NS/NAME | --owner KIND] [--table NAME|N]",
		Short: "Display the OpenFlow flows of a node's bridge, grouped by owner",
		Long: `Display the OpenFlow flows of the node's br0 with table names, grouped by owner.

Every flow the node agent installs carries its owner in the cookie: the static pipeline,
a local pod, a remote node, a namespace (VNID), a namespace's NetworkPolicies, multicast,
egress. sdnctl dumps the bridge with ovs-ofctl and prints one block per owner, pipeline
first, each flow as "table=Name(N),priority=P,cookie=…,match actions=…", sorted by table
and by priority (highest first).

Owners are named from what the node knows: pods from the external_ids of their OVS ports
(--ovsdb), VNIDs from the flows themselves, remote nodes and namespaces from HostSubnets
and NetNamespaces when the API server is reachable (--kubeconfig). An owner that cannot be
named is shown by its cookie, with a note on stderr.

--policy NS/NAME shows the flows that one NetworkPolicy compiles to on the node: the
compiled policy flows are owned per namespace (and shared clause flows by no namespace),
so sdnctl reads the namespace's policies, pods and NetNamespaces from the API, compiles
them as the node's agent does for --node (default $NODE_NAME, else the hostname), and
keeps the conjunction, clause and plain allow flows of the policy's rules and the
namespace's default drop that isolates the pods it selects. Each flow is labelled with
its rule ("# ingress[0]") or the pods it isolates. It needs the API server.

Run it on a node (or in the sdn-node pod), or point --ofctl-target at a bridge's
management socket.`,
		Example: `  # Every flow of the local br0, by owner
  sdnctl flows

  # The flows of one pod
  sdnctl flows --pod proj1/client-1

  # The flows one NetworkPolicy compiles to on node1, labelled with its rules
  sdnctl flows --node node1 --policy proj1/allow-server

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
	fs.StringVar(&o.table, "table", "", "Only the flows of this table: a name (case-insensitive, e.g. PodAntiSpoof) or a number.")
	fs.StringVar(&o.owner, "owner", "", "Only the flows of this kind of owner. One of: ("+strings.Join(ownerKindNames(), ", ")+").")
	fs.StringVar(&o.node, "node", "", "The node whose bridge is shown; printed in the header. --policy compiles for it (default $NODE_NAME, else the hostname).")
	fs.StringVarP(&o.output, "output", "o", "", "Output format. One of: (wide, raw). wide adds packet and byte counters and the flow's age; raw prints bare ovs-ofctl flows.")
	return cmd
}

// flowsQuery is the validated form of the flags.
type flowsQuery struct {
	filter      ovs.Filter
	description []string // the filters, for the header
	// policyNS and policyName are the --policy NetworkPolicy ("" without it).
	policyNS, policyName string
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
	if o.policy != "" {
		ns, name, ok := strings.Cut(o.policy, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
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
		ns, name, ok := strings.Cut(o.pod, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return q, usageErrorf(cmdPath, "--pod must be NAMESPACE/NAME, got %q", o.pod)
		}
		if o.owner != "" && o.owner != "pod" {
			return q, usageErrorf(cmdPath, "--pod selects pod flows; it cannot be combined with --owner %s", o.owner)
		}
		q.filter.Cookie = ovs.MatchOwner(ovs.CookiePod, node.PodOwner(ns, name))
		q.description = append(q.description, "pod "+ns+"/"+name)
	} else if o.owner != "" {
		i := slices.IndexFunc(ownerKinds, func(k ownerKind) bool { return k.name == strings.ToLower(o.owner) })
		if i < 0 {
			return q, usageErrorf(cmdPath, "unknown owner kind %q: one of %s", o.owner, strings.Join(ownerKindNames(), ", "))
		}
		q.filter.Cookie = ovs.MatchCategory(ownerKinds[i].category)
		q.description = append(q.description, "owner "+ownerKinds[i].name)
	}
	return q, nil
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
	if q.policyNS != "" {
		// The API first: without it --policy means nothing, and an unknown policy
		// should not wait for the bridge.
		if pol, err = o.loadPolicy(ctx, c, q.policyNS, q.policyName); err != nil {
			return err
		}
	}
	backend := backendFrom(ctx)
	flows, err := backend.dump(ctx, o.ofctlTarget, q.filter)
	if err != nil {
		var unreachable *unreachableError
		if errors.As(err, &unreachable) {
			return fmt.Errorf("cannot reach the bridge at %s: is this a node running sdn-node, or pass --ofctl-target\n%v",
				o.ofctlTarget, unreachable.err)
		}
		return err
	}
	// ovs-ofctl selected by the filter already; apply it again so that every backend
	// (and an ovs-ofctl that ignored part of it) gives the same answer.
	flows = slices.DeleteFunc(flows, func(f ovs.DumpedFlow) bool { return !q.filter.Selects(f.Flow) })
	var labels map[string]string
	if pol != nil {
		flows, labels = pol.selectFlows(flows, c.opts.ErrOut)
	}
	if len(flows) == 0 {
		where := o.ofctlTarget
		if len(q.description) > 0 {
			where += " matching " + strings.Join(q.description, ", ")
		}
		fmt.Fprintf(c.opts.ErrOut, "No flows found on %s\n", where)
		return nil
	}
	groups := groupFlows(flows)
	if o.output == flowsOutputRaw {
		return printRawFlows(c.opts.Out, groups)
	}
	n := &namer{notes: c.opts.ErrOut}
	n.fromFlows(flows)
	if pol != nil {
		// Both owners (the namespace's and the shared clauses') are known.
		n.add(ovs.CookiePolicy, networkpolicy.NamespaceOwner(pol.namespace), ownerName{name: "namespace " + pol.namespace})
	} else {
		if needs(groups, ovs.CookiePod, ovs.CookiePolicy) {
			n.fromOVSDB(ctx, backend, o.ovsdb, o.ofctlTarget)
		}
		if needs(groups, ovs.CookieNode, ovs.CookieNamespace, ovs.CookiePolicy) {
			n.fromAPI(ctx, c)
		}
	}
	n.name(groups)
	n.reportUnnamed(groups)
	return printFlowGroups(c.opts.Out, o.header(len(flows), len(groups), q), groups, o.output == flowsOutputWide, labels)
}

// policyFlows selects the flows of one NetworkPolicy from a dump of the policy flows,
// through the compiler's explanation of the cluster as the API shows it.
type policyFlows struct {
	namespace, name, node string
	explainer             *networkpolicy.Explainer
	// localPods is how many pods of the namespace the API places on the node.
	localPods int
}

// loadPolicy reads the policy and what the compiler needs from the API, for the node
// --node names (default $NODE_NAME, else the hostname); it fails clearly without the API
// and with the server's NotFound for an unknown policy.
func (o *flowsOptions) loadPolicy(ctx context.Context, c *cli, ns, name string) (*policyFlows, error) {
	if c.injected == nil {
		if _, err := c.RESTConfig(); err != nil {
			if clientcmd.IsEmptyConfig(err) {
				return nil, errors.New("--policy needs the API server to compile the namespace's NetworkPolicies: no kubeconfig (pass --kubeconfig)")
			}
			return nil, fmt.Errorf("--policy needs the API server to compile the namespace's NetworkPolicies: %w", err)
		}
	}
	clients, err := c.Clients()
	if err != nil {
		return nil, err
	}
	if clients.Kube == nil || clients.Network == nil {
		return nil, errors.New("--policy needs the Kubernetes and network.openshift.io APIs")
	}
	if _, err := clients.Kube.NetworkingV1().NetworkPolicies(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		return nil, err
	}
	cl, err := loadTraceCluster(ctx, c)
	if err != nil {
		return nil, err
	}
	nodeName := o.node
	if nodeName == "" {
		nodeName = os.Getenv("NODE_NAME")
	}
	if nodeName == "" {
		nodeName, _ = os.Hostname()
	}
	hs, ok := cl.subnet(nodeName)
	if !ok {
		return nil, fmt.Errorf("--policy compiles the policies for one node, and no HostSubnet names node %q: pass --node NAME, the node whose bridge --ofctl-target reaches", nodeName)
	}
	nodeName = hs.Host
	o.node = nodeName
	p := &policyFlows{namespace: ns, name: name, node: nodeName, explainer: networkpolicy.NewExplainer(cl.input(nodeName))}
	for _, pod := range cl.pods {
		if pod.Namespace == ns && pod.Spec.NodeName == nodeName {
			p.localPods++
		}
	}
	return p, nil
}

// selectFlows keeps the flows of the policy and labels each (by Key) with the rules it
// renders or the pods it isolates. It notes on notes the namespace's allow flows that no
// current rule explains (stale flows, or the wrong node).
func (p *policyFlows) selectFlows(flows []ovs.DumpedFlow, notes io.Writer) ([]ovs.DumpedFlow, map[string]string) {
	nsOwner := ovs.CookieFor(ovs.CookiePolicy, networkpolicy.NamespaceOwner(p.namespace))
	shared := ovs.CookieFor(ovs.CookiePolicy, networkpolicy.SharedCookieKey)
	labels := map[string]string{}
	var out []ovs.DumpedFlow
	nsFlows, unexplained := 0, 0
	for _, f := range flows {
		owner := f.Cookie & ovs.OwnerMask
		if owner != nsOwner && owner != shared {
			continue
		}
		if owner == nsOwner {
			nsFlows++
		}
		all := p.explainer.FlowRules(f.Flow)
		var refs []string
		for _, r := range all {
			if r.Namespace == p.namespace && r.Policy == p.name {
				refs = append(refs, fmt.Sprintf("%s[%d]", r.Direction, r.Index))
			}
		}
		if len(refs) > 0 {
			out = append(out, f)
			labels[f.Key()] = strings.Join(refs, ", ")
			continue
		}
		if owner != nsOwner {
			continue
		}
		if len(all) == 0 && isCompiledAllow(f.Flow) {
			unexplained++
			continue
		}
		d, ok := networkpolicy.DirectionOf(f.Table)
		if !ok || f.Priority != networkpolicy.PriorityNamespace || !f.IsDrop() {
			continue
		}
		if pods, ok := p.explainer.Selected(p.namespace, p.name, d); ok && len(pods) > 0 {
			out = append(out, f)
			labels[f.Key()] = "isolates " + listPods(pods)
		}
	}
	if nsFlows > 0 && p.localPods == 0 {
		fmt.Fprintf(notes, "note: the bridge has policy flows of namespace %s, but the API has none of its pods on node %s: is --node right?\n", p.namespace, p.node)
	} else if unexplained > 0 {
		fmt.Fprintf(notes, "note: %s of namespace %s %s explained by no current NetworkPolicy rule (stale flows, or --node is wrong)\n",
			plural(unexplained, "allow flow"), p.namespace, isAre(unexplained))
	}
	return out, labels
}

// isCompiledAllow reports whether f is a flow the compiler renders for a rule: a plain
// allow, a conj_id flow or a clause with conjunction actions.
func isCompiledAllow(f ovs.Flow) bool {
	if f.Priority == networkpolicy.PriorityPlainAllow {
		return true
	}
	for _, m := range f.Match {
		if _, ok := m.(ovs.ConjID); ok {
			return true
		}
	}
	return slices.ContainsFunc(f.Actions, func(a ovs.Action) bool { _, ok := a.(ovs.Conjunction); return ok })
}

// listPods is "a, b, c" or, for more than maxListedPods, the first ones and a count.
func listPods(pods []string) string {
	const maxListedPods = 5
	if len(pods) <= maxListedPods {
		return strings.Join(pods, ", ")
	}
	return fmt.Sprintf("%s, … (%d pods)", strings.Join(pods[:maxListedPods], ", "), len(pods))
}

// header is the first line of the default and wide output.
func (o *flowsOptions) header(flows, owners int, q flowsQuery) string {
	var b strings.Builder
	b.WriteString("# ")
	b.WriteString(o.ofctlTarget)
	if o.node != "" {
		b.WriteString(" on node ")
		b.WriteString(o.node)
	}
	fmt.Fprintf(&b, ": %s, %s", plural(flows, "flow"), plural(owners, "owner"))
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

// flowGroup is the flows of one owner: one cookie under ovs.OwnerMask (every round).
type flowGroup struct {
	owner    uint64 // cookie & ovs.OwnerMask
	category ovs.CookieCategory
	named    bool
	name     string // "" for the pipeline's own block
	detail   string // e.g. the port and IP of a pod
	flows    []ovs.DumpedFlow
}

// groupFlows groups flows by owner and sorts each group by table, priority (highest
// first) and text. Groups are sorted by name later, once named.
func groupFlows(flows []ovs.DumpedFlow) []*flowGroup {
	byOwner := map[uint64]*flowGroup{}
	var groups []*flowGroup
	for _, f := range flows {
		owner := f.Cookie & ovs.OwnerMask
		g := byOwner[owner]
		if g == nil {
			g = &flowGroup{owner: owner, category: ovs.CookieCategoryOf(owner)}
			byOwner[owner] = g
			groups = append(groups, g)
		}
		g.flows = append(g.flows, f)
	}
	for _, g := range groups {
		slices.SortStableFunc(g.flows, func(a, b ovs.DumpedFlow) int {
			return cmp.Or(
				cmp.Compare(a.Table.ID, b.Table.ID),
				cmp.Compare(b.Priority, a.Priority),
				strings.Compare(a.String(), b.String()))
		})
	}
	sortGroups(groups)
	return groups
}

// sortGroups orders groups by kind (pipeline first), then named before unnamed, by name,
// then by cookie.
func sortGroups(groups []*flowGroup) {
	slices.SortFunc(groups, func(a, b *flowGroup) int {
		return cmp.Or(
			cmp.Compare(categoryRank(a.category), categoryRank(b.category)),
			cmpBool(!a.named, !b.named),
			strings.Compare(a.name, b.name),
			cmp.Compare(a.owner, b.owner))
	})
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// needs reports whether some group has one of the categories.
func needs(groups []*flowGroup, categories ...ovs.CookieCategory) bool {
	for _, g := range groups {
		if slices.Contains(categories, g.category) {
			return true
		}
	}
	return false
}

// ownerName is a name (and detail) for an owner cookie.
type ownerName struct{ name, detail string }

// namer collects owner names from the flows, OVSDB and the API, keyed by owner cookie.
type namer struct {
	names map[uint64]ownerName
	notes io.Writer

	ovsdbErr, apiErr error
}

func (n *namer) add(category ovs.CookieCategory, key string, name ownerName) {
	if n.names == nil {
		n.names = map[uint64]ownerName{}
	}
	n.names[ovs.CookieFor(category, key)] = name
}

// fromFlows names what the flows themselves reveal: the pipeline owners, and the VNID of
// every namespace owner (its flows match on the VNID registers).
func (n *namer) fromFlows(flows []ovs.DumpedFlow) {
	n.add(ovs.CookiePipeline, node.OwnerPipeline, ownerName{})
	n.add(ovs.CookiePipeline, node.OwnerVersion, ownerName{name: "version"})
	n.add(ovs.CookieMulticast, node.OwnerMulticastRemote, ownerName{name: "remote nodes"})
	n.add(ovs.CookiePolicy, networkpolicy.SharedCookieKey, ownerName{name: "shared matches"})
	for _, f := range flows {
		for _, vnid := range vnidsOf(f.Flow) {
			if _, ok := n.names[ovs.CookieFor(ovs.CookieNamespace, node.VNIDOwner(vnid))]; !ok {
				n.add(ovs.CookieNamespace, node.VNIDOwner(vnid), ownerName{name: "vnid " + strconv.FormatUint(uint64(vnid), 10)})
			}
		}
	}
}

// vnidsOf returns the values f matches in or loads into the VNID registers.
func vnidsOf(f ovs.Flow) []uint32 {
	isVNID := func(r ovs.RegField) bool { return r == ovs.SrcVNIDField || r == ovs.DstVNIDField }
	var out []uint32
	for _, m := range f.Match {
		if r, ok := m.(ovs.RegMatch); ok && isVNID(r.Field) && r.Mask == ^uint32(0) {
			out = append(out, r.Value)
		}
	}
	for _, a := range f.Actions {
		if l, ok := a.(ovs.LoadReg); ok && isVNID(l.Field) {
			out = append(out, l.Value)
		}
	}
	return out
}

// bridgeOf is the bridge name behind an ovs-ofctl target: the target itself, or the
// bridge of a management socket ("unix:/run/openvswitch/br0.mgmt" → "br0"); "" when it
// cannot be told (tcp:…).
func bridgeOf(target string) string {
	if path, ok := strings.CutPrefix(target, "unix:"); ok {
		if base := filepath.Base(path); strings.HasSuffix(base, ".mgmt") {
			return strings.TrimSuffix(base, ".mgmt")
		}
		return ""
	}
	if strings.ContainsAny(target, ":/") {
		return ""
	}
	return target
}

// fromOVSDB names pods (and their namespaces' policy owners) from the external_ids of
// the bridge's ports.
func (n *namer) fromOVSDB(ctx context.Context, backend flowsBackend, endpoint, target string) {
	if endpoint == "" {
		return
	}
	bridge := bridgeOf(target)
	if bridge == "" {
		n.ovsdbErr = fmt.Errorf("cannot tell the bridge name of --ofctl-target %s", target)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	ports, err := backend.ports(ctx, endpoint, bridge)
	if err != nil {
		n.ovsdbErr = fmt.Errorf("reading the ports of %s from %s: %w", bridge, endpoint, err)
		return
	}
	for _, p := range ports {
		ns, name := p.ExternalIDs[ovsdb.ExternalIDPodNamespace], p.ExternalIDs[ovsdb.ExternalIDPodName]
		if ns == "" || name == "" {
			continue
		}
		detail := fmt.Sprintf("port %s ofport %d", p.Name, p.OFPort)
		if ip := p.ExternalIDs[ovsdb.ExternalIDIP]; ip != "" {
			detail += ", " + ip
		}
		n.add(ovs.CookiePod, node.PodOwner(ns, name), ownerName{name: ns + "/" + name, detail: detail})
		n.add(ovs.CookiePolicy, networkpolicy.NamespaceOwner(ns), ownerName{name: "namespace " + ns})
	}
}

// fromAPI names remote nodes from HostSubnets and namespaces from NetNamespaces. Without
// a usable kubeconfig or a reachable server it only records why.
func (n *namer) fromAPI(ctx context.Context, c *cli) {
	if c.injected == nil {
		if _, err := c.RESTConfig(); err != nil {
			if clientcmd.IsEmptyConfig(err) {
				err = errors.New("no kubeconfig (pass --kubeconfig)")
			}
			n.apiErr = err
			return
		}
	}
	clients, err := c.Clients()
	if err != nil {
		n.apiErr = err
		return
	}
	if clients.Network == nil {
		n.apiErr = errors.New("no network.openshift.io client")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	api := clients.Network.NetworkV1()
	subnets, err := api.HostSubnets().List(ctx, metav1.ListOptions{})
	if err != nil {
		n.apiErr = fmt.Errorf("listing hostsubnets: %w", err)
		return
	}
	for _, hs := range subnets.Items {
		name := ownerName{name: hs.Host, detail: hs.HostIP + " " + hs.Subnet}
		if name.name == "" {
			name.name = hs.Name
		}
		n.add(ovs.CookieNode, node.NodeOwner(hs.Name), name)
		if hs.UID != "" {
			n.add(ovs.CookieNode, string(hs.UID), name)
		}
	}
	netnss, err := api.NetNamespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		n.apiErr = fmt.Errorf("listing netnamespaces: %w", err)
		return
	}
	byVNID := map[uint32][]string{}
	for _, nn := range netnss.Items {
		byVNID[nn.NetID] = append(byVNID[nn.NetID], nn.Name)
		n.add(ovs.CookiePolicy, networkpolicy.NamespaceOwner(nn.Name), ownerName{name: "namespace " + nn.Name})
	}
	for vnid, names := range byVNID {
		slices.Sort(names)
		n.add(ovs.CookieNamespace, node.VNIDOwner(vnid), ownerName{
			name: "vnid " + strconv.FormatUint(uint64(vnid), 10), detail: strings.Join(names, ", "),
		})
	}
}

// name names every group it can, describes unnamed remote nodes by their flows, and
// re-sorts the groups.
func (n *namer) name(groups []*flowGroup) {
	for _, g := range groups {
		if on, ok := n.names[g.owner]; ok {
			g.named, g.name, g.detail = true, on.name, on.detail
		}
		if g.category == ovs.CookieNode && g.detail == "" {
			g.detail = remoteNodeDetail(g.flows)
		}
	}
	sortGroups(groups)
}

// remoteNodeDetail is "<hostIP> <subnet>" read from a remote node's flows: tun_src of its
// VXLAN ingress flow, nw_dst of its RemotePod flow.
func remoteNodeDetail(flows []ovs.DumpedFlow) string {
	var hostIP, subnet string
	for _, f := range flows {
		for _, m := range f.Match {
			a, ok := m.(ovs.AddrMatch)
			if !ok {
				continue
			}
			switch {
			case a.Field == "tun_src" && f.Table.ID == ovs.TableVXLANIngress.ID:
				hostIP = a.Prefix.Addr().String()
			case a.Field == "nw_dst" && f.Table.ID == ovs.TableRemotePod.ID:
				subnet = a.Prefix.String()
			}
		}
	}
	return strings.TrimSpace(hostIP + " " + subnet)
}

// reportUnnamed writes one note per kind of owner that stayed unnamed, with the reason.
func (n *namer) reportUnnamed(groups []*flowGroup) {
	unnamed := map[ovs.CookieCategory]int{}
	for _, g := range groups {
		if !g.named && g.category != 0 {
			unnamed[g.category]++
		}
	}
	reason := func(errs ...error) string {
		for _, err := range errs {
			if err != nil {
				return ": " + err.Error()
			}
		}
		return ""
	}
	for _, k := range ownerKinds {
		count := unnamed[k.category]
		if count == 0 {
			continue
		}
		var why string
		switch k.category {
		case ovs.CookiePod:
			why = reason(n.ovsdbErr)
			if why == "" {
				why = " (no port on the bridge names them: stale flows?)"
			}
		case ovs.CookieNode:
			why = reason(n.apiErr)
			if why == "" {
				why = " (no HostSubnet has their UID: deleted nodes?)"
			}
		case ovs.CookieNamespace:
			why = reason(n.apiErr)
		case ovs.CookiePolicy:
			why = reason(n.ovsdbErr, n.apiErr)
		}
		fmt.Fprintf(n.notes, "note: %s %s shown by cookie only%s\n", plural(count, k.name+" owner"), isAre(count), why)
	}
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// printFlowGroups writes the header and one block per owner. labels, when not nil, holds
// a comment for flows by Key, written after the flow ("  # ingress[0]").
func printFlowGroups(w io.Writer, header string, groups []*flowGroup, wide bool, labels map[string]string) error {
	var b strings.Builder
	b.WriteString(header)
	b.WriteByte('\n')
	for _, g := range groups {
		b.WriteByte('\n')
		b.WriteString(groupHeader(g))
		b.WriteByte('\n')
		for _, f := range g.flows {
			if wide {
				fmt.Fprintf(&b, "duration=%.3fs, n_packets=%d, n_bytes=%d, ", f.Stats.Duration.Seconds(), f.Stats.Packets, f.Stats.Bytes)
			}
			b.WriteString(f.StringNamed())
			if l := labels[f.Key()]; l != "" {
				b.WriteString("  # " + l)
			}
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// groupHeader is "# <kind> <name> (<detail>; cookie 0x…, N flows)".
func groupHeader(g *flowGroup) string {
	var b strings.Builder
	b.WriteString("# ")
	b.WriteString(categoryName(g.category))
	switch {
	case g.named && g.name != "":
		b.WriteString(" " + g.name)
	case !g.named && g.category != 0:
		b.WriteString(" <unknown>")
	}
	b.WriteString(" (")
	if g.detail != "" {
		b.WriteString(g.detail + "; ")
	}
	fmt.Fprintf(&b, "cookie %#x, %s)", g.owner, plural(len(g.flows), "flow"))
	return b.String()
}

// printRawFlows writes the flows in ovs-ofctl syntax, one per line, in block order.
func printRawFlows(w io.Writer, groups []*flowGroup) error {
	var b strings.Builder
	for _, g := range groups {
		for _, f := range g.flows {
			b.WriteString(f.String())
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
