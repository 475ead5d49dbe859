package sdnctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/util/retry"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// `sdnctl pod-network enable-multicast|disable-multicast PROJECT…` sets or removes the
// NetNamespace annotation netnamespace.network.openshift.io/multicast-enabled: "true" and
// waits until the node agents have applied it.
//
// How sdnctl knows: it reads the flows. Every agent renders, for each multicast-enabled
// VNID and only for those, the table-110 flow "reg0=V → goto 111" (owner multicast/vnid/V,
// pipeline.MulticastVNIDFlows) — on every node, whether or not the node runs pods of the
// VNID. So after annotating, sdnctl works out which VNIDs the change turns on or off (a
// VNID is on when every NetNamespace holding it is annotated) and polls table 110 of br0
// on each node it can reach until those flows are there, or gone, everywhere. It checks
// the dataplane itself rather than an agent's report, and needs nothing from the agents:
// the node agent writes nothing to the API but Events (SPEC §7), and an Event is no
// dependable signal (aggregated, rate-limited, second-resolution timestamps). Nodes are
// reached as `sdnctl trace` reaches them (nodeReach: the local node's
// /var/run/openvswitch, --ovs-rundir-root, --ovs-rundir, --node-target); a node out of
// reach is named on stderr, not waited for.

// DefaultMulticastTimeout bounds the wait for the nodes' bridges.
const DefaultMulticastTimeout = 30 * time.Second

// multicastPoll is how often table 110 is read on each node while waiting.
const multicastPoll = 20 * time.Millisecond

// multicastApplier enables or disables multicast for projects and waits for the nodes.
type multicastApplier struct {
	clients     *Clients
	enable      bool
	reach       *nodeReach
	backend     OVSBackend
	timeout     time.Duration
	out, errOut io.Writer
}

type multicastOptions struct {
	nodeReach
	enable          bool
	projects        []string
	selector        string
	selectorChanged bool
	timeout         time.Duration
}

func newMulticastSubcommand(c *cli, enable bool) *cobra.Command {
	o := &multicastOptions{enable: enable}
	use, short, verb := "enable-multicast", "Enable multicast for projects", "enable"
	if !enable {
		use, short, verb = "disable-multicast", "Disable multicast for projects", "disable"
	}
	cmd := &cobra.Command{
		Use:   use + " [PROJECT ...]",
		Short: short,
		Long: strings.ReplaceAll(`VERB IP multicast for the pods of projects (multitenant and networkpolicy plugins).

Sets (enable) or removes (disable) the `+networkv1.MulticastEnabledAnnotation+`
annotation on each project's NetNamespace. A VNID has multicast when every project sharing it
has the annotation (joined projects share one group). sdnctl then waits until br0 on every
node it can reach has the VNID's multicast flows (table 110), or has them no more, and says
which nodes it could not check. Nodes are reached as for "sdnctl trace".`, "VERB", strings.ToUpper(verb[:1])+verb[1:]),
		Example: `  # Let the pods of p1 and p2 use multicast, checking every node of a netlab lab
  sdnctl pod-network enable-multicast p1 p2 --ovs-rundir-root /run/netlab/lab1`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.projects = args
			o.selectorChanged = cmd.Flags().Changed("selector")
			return o.run(cmd.Context(), c)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.selector, "selector", "", "Label selector to filter projects. Either pass one/more projects as arguments or use this project selector")
	fs.DurationVar(&o.timeout, "timeout", DefaultMulticastTimeout, "How long to wait for the nodes' bridges.")
	o.addFlags(fs, localNodeName(), "The bridge to check on every node.")
	return cmd
}

func (o *multicastOptions) run(ctx context.Context, c *cli) error {
	clients, err := c.Clients()
	if err != nil {
		return err
	}
	var errs []error
	if o.selectorChanged && len(o.projects) != 0 {
		errs = append(errs, errors.New("either specify --selector=<project_selector> or projects but not both"))
	} else if !o.selectorChanged && len(o.projects) == 0 {
		errs = append(errs, errors.New("must provide --selector=<project_selector> or projects"))
	}
	if err := checkMulticastPlugin(ctx, clients); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return utilerrors.NewAggregate(errs)
	}
	projects, err := resolveProjects(ctx, clients, o.projects, o.selector)
	if err != nil {
		return err
	}
	a := &multicastApplier{clients: clients, enable: o.enable, reach: &o.nodeReach, backend: c.ovsBackend(),
		timeout: o.timeout, out: c.opts.Out, errOut: c.opts.ErrOut}
	return a.apply(ctx, projects)
}

// checkMulticastPlugin refuses a cluster whose plugin has no VNIDs (subnet): it has no
// NetNamespaces to annotate and no multicast.
func checkMulticastPlugin(ctx context.Context, clients *Clients) error {
	cn, err := clients.Network.NetworkV1().ClusterNetworks().Get(ctx, networkv1.ClusterNetworkDefault, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("failed to fetch current network plugin info: %w", err)
	}
	for _, p := range []string{networkv1.MultiTenantPluginName, networkv1.NetworkPolicyPluginName} {
		if strings.EqualFold(cn.PluginName, p) {
			return nil
		}
	}
	return fmt.Errorf("using plugin: %q, multicast is only supported by the multitenant and networkpolicy network plugins", cn.PluginName)
}

// apply annotates every project, then waits for the VNIDs the change concerns.
func (a *multicastApplier) apply(ctx context.Context, projects []string) error {
	var errs []error
	var done []string
	for _, p := range projects {
		if err := a.annotate(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("project %q: %w", p, err))
			continue
		}
		done = append(done, p)
	}
	if len(done) == 0 {
		return utilerrors.NewAggregate(errs)
	}
	want, err := a.desired(ctx, done)
	if err != nil {
		return utilerrors.NewAggregate(append(errs, err))
	}
	if err := a.wait(ctx, want); err != nil {
		errs = append(errs, err)
	}
	return utilerrors.NewAggregate(errs)
}

// annotate sets or removes the annotation, retrying on conflicts with other writers.
func (a *multicastApplier) annotate(ctx context.Context, project string) error {
	client := a.clients.Network.NetworkV1().NetNamespaces()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		netns, err := client.Get(ctx, project, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if multicastOn(netns) == a.enable {
			return nil
		}
		if a.enable {
			if netns.Annotations == nil {
				netns.Annotations = map[string]string{}
			}
			netns.Annotations[networkv1.MulticastEnabledAnnotation] = "true"
		} else {
			delete(netns.Annotations, networkv1.MulticastEnabledAnnotation)
		}
		_, err = client.Update(ctx, netns, metav1.UpdateOptions{})
		return err
	})
}

func multicastOn(nn *networkv1.NetNamespace) bool {
	return nn.Annotations[networkv1.MulticastEnabledAnnotation] == "true"
}

// desired returns, for the VNIDs of projects, whether each has multicast now (every
// NetNamespace holding it annotated), and prints one line per project.
func (a *multicastApplier) desired(ctx context.Context, projects []string) (map[uint32]bool, error) {
	list, err := a.clients.Network.NetworkV1().NetNamespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing NetNamespaces: %w", err)
	}
	byName := map[string]*networkv1.NetNamespace{}
	byVNID := map[uint32][]*networkv1.NetNamespace{}
	for i := range list.Items {
		nn := &list.Items[i]
		byName[nn.Name] = nn
		byVNID[nn.NetID] = append(byVNID[nn.NetID], nn)
	}
	want := map[uint32]bool{}
	for _, p := range projects {
		nn := byName[p]
		if nn == nil {
			return nil, fmt.Errorf("NetNamespace %q disappeared", p)
		}
		var off []string
		for _, other := range byVNID[nn.NetID] {
			if !multicastOn(other) {
				off = append(off, other.Name)
			}
		}
		slices.Sort(off)
		want[nn.NetID] = len(off) == 0
		fmt.Fprintln(a.out, a.projectLine(p, nn.NetID, off))
	}
	return want, nil
}

func (a *multicastApplier) projectLine(project string, netid uint32, off []string) string {
	prefix := fmt.Sprintf("netnamespace.%s/%s", networkv1.GroupName, project)
	switch {
	case !a.enable:
		return fmt.Sprintf("%s multicast disabled (netid %d)", prefix, netid)
	case len(off) == 0:
		return fmt.Sprintf("%s multicast enabled (netid %d)", prefix, netid)
	}
	return fmt.Sprintf("%s multicast requested; netid %d stays off until %s enable it too", prefix, netid, strings.Join(off, ", "))
}

// wait polls table 110 on every reachable node until it agrees with want, or the timeout.
func (a *multicastApplier) wait(ctx context.Context, want map[uint32]bool) error {
	nodes, err := a.nodes(ctx)
	if err != nil {
		return err
	}
	pending := map[string]string{} // node → ofctl target
	var unreachable []string
	for _, n := range nodes {
		if at, ok := a.reach.reach(n); ok {
			pending[n] = at.ofctl
		} else {
			unreachable = append(unreachable, n)
		}
	}
	if len(unreachable) > 0 {
		fmt.Fprintf(a.errOut, "note: multicast not verified on %s: its OVS is out of reach (run sdnctl there, or pass --ovs-rundir-root or --ovs-rundir)\n",
			strings.Join(unreachable, ", "))
	}
	if len(pending) == 0 {
		return nil
	}
	reached := slices.Sorted(maps.Keys(pending))
	lastErr := map[string]string{}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	for {
		for _, n := range slices.Sorted(maps.Keys(pending)) {
			why := a.check(ctx, pending[n], want)
			if why == "" {
				delete(pending, n)
				continue
			}
			lastErr[n] = why
		}
		if len(pending) == 0 {
			fmt.Fprintf(a.out, "applied on br0 of %s\n", strings.Join(reached, ", "))
			return nil
		}
		select {
		case <-ctx.Done():
			return a.timeoutError(pending, lastErr)
		case <-time.After(multicastPoll):
		}
	}
}

func (a *multicastApplier) timeoutError(pending, lastErr map[string]string) error {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(pending)) {
		parts = append(parts, n+": "+lastErr[n])
	}
	return fmt.Errorf("timed out after %v waiting for the node agents (is sdn-node running there?): %s", a.timeout, strings.Join(parts, "; "))
}

// check reads table 110 at target and returns "" when it agrees with want, or why not.
func (a *multicastApplier) check(ctx context.Context, target string, want map[uint32]bool) string {
	flows, err := a.backend.DumpFlows(ctx, target, ovs.InTable(ovs.TableMulticastFromLocal))
	if err != nil {
		return err.Error()
	}
	have := map[uint32]bool{}
	for _, f := range flows {
		if id, ok := multicastVNIDOf(f.Flow); ok {
			have[id] = true
		}
	}
	var bad []string
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if have[id] != want[id] {
			state := map[bool]string{true: "still has", false: "has no"}[have[id]]
			bad = append(bad, fmt.Sprintf("table 110 %s the flow of VNID %d", state, id))
		}
	}
	return strings.Join(bad, ", ")
}

// multicastVNIDOf returns V for the table-110 flow of multicast VNID V (its owner's cookie
// and "reg0=V").
func multicastVNIDOf(f ovs.Flow) (uint32, bool) {
	for _, m := range f.Match {
		r, ok := m.(ovs.RegMatch)
		if !ok || r.Field.Reg != ovs.SrcVNIDField.Reg || r.Mask != ^uint32(0) {
			continue
		}
		if f.Cookie&ovs.OwnerMask == pipeline.MulticastVNIDOwner(r.Value).Cookie()&ovs.OwnerMask {
			return r.Value, true
		}
	}
	return 0, false
}

// nodes are the nodes running agents: every HostSubnet's host, except external hosts
// (HostSubnets with a fixed VNID, which have no agent).
func (a *multicastApplier) nodes(ctx context.Context) ([]string, error) {
	list, err := a.clients.Network.NetworkV1().HostSubnets().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing HostSubnets: %w", err)
	}
	var out []string
	for _, hs := range list.Items {
		if _, external := hs.Annotations[networkv1.FixedVNIDHostAnnotation]; external {
			continue
		}
		name := hs.Host
		if name == "" {
			name = hs.Name
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
