package sdnctl

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/sets"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

// podNetworkChange is one of oc adm pod-network's three requests. The controller applies it
// when it finds the change-network annotation on a NetNamespace (multitenant mode only).
type podNetworkChange struct {
	verb string // "join", "isolate" or "global": the annotation's action
	to   string // the project to join, for "join"
}

// annotation is the value of the change-network annotation that requests the change.
func (p podNetworkChange) annotation() string {
	if p.verb == "join" {
		return "join:" + p.to
	}
	return p.verb
}

// failed wraps a per-project error with oc's wording for the verb.
func (p podNetworkChange) failed(project string, err error) error {
	switch p.verb {
	case "join":
		return fmt.Errorf("project %q failed to join %q, error: %w", project, p.to, err)
	case "isolate":
		return fmt.Errorf("network isolation for project %q failed, error: %w", project, err)
	default:
		return fmt.Errorf("removing network isolation for project %q failed, error: %w", project, err)
	}
}

// done is the success line for a project, naming the NETID it ended with.
func (p podNetworkChange) done(project string, netid uint32) string {
	what := map[string]string{"join": "joined " + p.to, "isolate": "isolated", "global": "made global"}[p.verb]
	return fmt.Sprintf("netnamespace.%s/%s %s (netid %d)", networkv1.GroupName, project, what, netid)
}

// podNetworkOptions are the flags and arguments of one pod-network subcommand.
type podNetworkOptions struct {
	change          podNetworkChange
	projects        []string
	selector        string
	selectorChanged bool
}

func newPodNetworkCommand(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pod-network",
		Short: "Manage pod network isolation of projects (multitenant mode)",
		Long: `Join, isolate or globalize the pod networks of projects, as oc adm pod-network does.

Only supported when ClusterNetwork "default" uses ` + networkv1.MultiTenantPluginName + `.
Each subcommand sets the ` + networkv1.ChangePodNetworkAnnotation + `
annotation on the projects' NetNamespaces and waits until the sdn-controller has applied it,
then prints the NETID each project ended with.

enable-multicast and disable-multicast (multitenant and networkpolicy plugins) set the
multicast annotation and wait until the nodes' bridges have applied it.`,
	}
	cmd.AddCommand(
		newPodNetworkSubcommand(c, "join-projects", "join", "Join project network",
			`  # Allow project p2 to use project p1's network
  sdnctl pod-network join-projects --to=p1 p2

  # Allow all projects labelled name=top-secret to use project p1's network
  sdnctl pod-network join-projects --to=p1 --selector='name=top-secret'`),
		newPodNetworkSubcommand(c, "isolate-projects", "isolate", "Isolate project network",
			`  # Give project p1 its own network
  sdnctl pod-network isolate-projects p1

  # Give every project labelled name=top-secret its own network
  sdnctl pod-network isolate-projects --selector='name=top-secret'`),
		newPodNetworkSubcommand(c, "make-projects-global", "global", "Make project network global",
			`  # Let project p1 reach and be reached by all pods
  sdnctl pod-network make-projects-global p1`),
		newMulticastSubcommand(c, true),
		newMulticastSubcommand(c, false),
	)
	return cmd
}

func newPodNetworkSubcommand(c *cli, use, verb, short, example string) *cobra.Command {
	o := &podNetworkOptions{change: podNetworkChange{verb: verb}}
	cmd := &cobra.Command{
		Use:     use + " [PROJECT ...]",
		Short:   short,
		Example: example,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.projects = args
			o.selectorChanged = cmd.Flags().Changed("selector")
			return o.run(cmd.Context(), c)
		},
	}
	if verb == "join" {
		cmd.Use = use + " --to=PROJECT [PROJECT ...]"
		cmd.Flags().StringVar(&o.change.to, "to", "", "Join network of the given project name")
	}
	cmd.Flags().StringVar(&o.selector, "selector", "", "Label selector to filter projects. Either pass one/more projects as arguments or use this project selector")
	return cmd
}

func (o *podNetworkOptions) run(ctx context.Context, c *cli) error {
	clients, err := c.Clients()
	if err != nil {
		return err
	}
	if err := o.validate(ctx, clients); err != nil {
		return err
	}
	projects, err := resolveProjects(ctx, clients, o.projects, o.selector)
	if err != nil {
		return err
	}
	if o.change.verb == "join" {
		if _, err := resolveProjects(ctx, clients, []string{o.change.to}, ""); err != nil {
			return err
		}
	}
	a := &podNetworkApplier{clients: clients, change: o.change, backoff: c.podNetworkBackoff(), out: c.opts.Out}
	return a.apply(ctx, projects)
}

// validate reports every problem oc's Validate would, together: argument errors and a
// cluster whose network plugin does not support renumbering.
func (o *podNetworkOptions) validate(ctx context.Context, clients *Clients) error {
	var errs []error
	if o.selectorChanged {
		if _, err := labels.Parse(o.selector); err != nil {
			errs = append(errs, errors.New("--selector=<project_selector> must be a valid label selector"))
		}
		if len(o.projects) != 0 {
			errs = append(errs, errors.New("either specify --selector=<project_selector> or projects but not both"))
		}
	} else if len(o.projects) == 0 {
		errs = append(errs, errors.New("must provide --selector=<project_selector> or projects"))
	}
	if o.change.verb == "join" && o.change.to == "" {
		errs = append(errs, errors.New("must provide --to=<project_name>"))
	}
	if err := checkMultitenant(ctx, clients); err != nil {
		errs = append(errs, err)
	}
	return utilerrors.NewAggregate(errs)
}

// checkMultitenant refuses unless ClusterNetwork "default" selects the multitenant plugin:
// in the other modes the controller would refuse (or ignore) every request.
func checkMultitenant(ctx context.Context, clients *Clients) error {
	cn, err := clients.Network.NetworkV1().ClusterNetworks().Get(ctx, networkv1.ClusterNetworkDefault, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return errors.New("managing pod network is only supported for openshift multitenant network plugin")
	case err != nil:
		return fmt.Errorf("failed to fetch current network plugin info: %w", err)
	case !strings.EqualFold(cn.PluginName, networkv1.MultiTenantPluginName):
		return fmt.Errorf("using plugin: %q, managing pod network is only supported for openshift multitenant network plugin", cn.PluginName)
	}
	return nil
}

// resolveProjects returns the names of the selected Namespaces (a project is a Namespace
// here): the named ones, all of which must exist, or those matching selector, of which there
// must be at least one. The result is sorted.
func resolveProjects(ctx context.Context, clients *Clients, names []string, selector string) ([]string, error) {
	if len(names) == 0 {
		list, err := clients.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, err
		}
		if len(list.Items) == 0 {
			return nil, errors.New("no projects found")
		}
		out := make([]string, 0, len(list.Items))
		for _, ns := range list.Items {
			out = append(out, ns.Name)
		}
		sort.Strings(out)
		return out, nil
	}
	found, missing := sets.New[string](), sets.New[string]()
	for _, name := range names {
		_, err := clients.Kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			missing.Insert(name)
		case err != nil:
			return nil, err
		default:
			found.Insert(name)
		}
	}
	if missing.Len() > 0 {
		return nil, fmt.Errorf("projects %s not found", strings.Join(sets.List(missing), ", "))
	}
	return sets.List(found), nil
}
