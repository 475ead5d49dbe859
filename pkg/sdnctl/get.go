package sdnctl

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/dynamic"
)

// listChunkSize is the page size of list requests, kubectl's default.
const listChunkSize = 500

// getOptions are the flags of `sdnctl get`.
type getOptions struct {
	output            string
	selector          string
	allNamespaces     bool
	noHeaders         bool
	showManagedFields bool
}

func newGetCommand(c *cli) *cobra.Command {
	o := &getOptions{}
	cmd := &cobra.Command{
		Use:   "get TYPE [NAME ...]",
		Short: "Display network.openshift.io objects",
		Long: `Display ClusterNetworks, HostSubnets, NetNamespaces and EgressNetworkPolicies with the
columns kubectl and oc show for them.

Types (with aliases): clusternetworks (clusternetwork, cn), hostsubnets (hostsubnet, hs),
netnamespaces (netnamespace, netns), egressnetworkpolicies (egressnetworkpolicy, enp;
namespaced).

-o wide prints the same columns as the default: these CRDs declare no extra wide columns.`,
		Example: `  # Node subnets and the egress IPs they host
  sdnctl get hostsubnets

  # The VNID of every namespace
  sdnctl get netnamespaces

  # Egress firewalls of all namespaces
  sdnctl get enp -A

  # One NetNamespace as YAML
  sdnctl get netnamespace default -o yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), c, cmd.CommandPath(), args)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&o.output, "output", "o", "", "Output format. One of: ("+strings.Join(outputFormats, ", ")+").")
	fs.StringVarP(&o.selector, "selector", "l", "", "Selector (label query) to filter on, supports '=', '==', '!=', 'in', 'notin'.")
	fs.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "List the requested object(s) across all namespaces.")
	fs.BoolVar(&o.noHeaders, "no-headers", false, "When using the default or wide output format, don't print headers.")
	fs.BoolVar(&o.showManagedFields, "show-managed-fields", false, "If true, keep the managedFields when printing objects in JSON or YAML format.")
	return cmd
}

// validate checks the flag combinations kubectl refuses before any request is made.
func (o *getOptions) validate(cmdPath string, args []string) error {
	if o.output != outputTable && !slices.Contains(outputFormats, o.output) {
		return usageErrorf(cmdPath, "unable to match a printer suitable for the output format %q, allowed formats are: %s",
			o.output, strings.Join(outputFormats, ","))
	}
	if len(args) > 1 && o.selector != "" {
		return usageErrorf(cmdPath, "name cannot be provided when a selector is specified")
	}
	if len(args) > 1 && o.allNamespaces {
		return usageErrorf(cmdPath, "a resource cannot be retrieved by name across all namespaces")
	}
	return nil
}

func (o *getOptions) run(ctx context.Context, c *cli, cmdPath string, args []string) error {
	reg, err := loadResources()
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return usageErrorf(cmdPath, "you must specify the type of resource to get: one of %s", strings.Join(reg.names(), ", "))
	}
	if err := o.validate(cmdPath, args); err != nil {
		return err
	}
	res, err := reg.lookup(args[0])
	if err != nil {
		return err
	}
	clients, err := c.Clients()
	if err != nil {
		return err
	}
	ns, err := c.Namespace()
	if err != nil {
		return err
	}
	client := resourceClient(clients.Dynamic, res, ns, o.allNamespaces)
	names := args[1:]
	objs, fetchErr := o.fetch(ctx, client, names)
	if fetchErr != nil && len(names) <= 1 {
		return fetchErr
	}
	popts := printOptions{
		Format: o.output, WithNamespace: o.allNamespaces, NoHeaders: o.noHeaders,
		SingleItem: len(names) == 1, ShowManagedFields: o.showManagedFields, Now: c.now(),
	}
	if err := printObjects(c.opts.Out, res, objs, popts); err != nil {
		return err
	}
	if fetchErr == nil && len(objs) == 0 && (o.output == outputTable || o.output == outputWide) {
		noResourcesFound(c, ns, res.Namespaced && !o.allNamespaces)
	}
	return fetchErr
}

// noResourcesFound writes kubectl's note for an empty table: it names the namespace only
// when one namespace of a namespaced kind was listed.
func noResourcesFound(c *cli, ns string, inNamespace bool) {
	if inNamespace {
		fmt.Fprintf(c.opts.ErrOut, "No resources found in %s namespace.\n", ns)
		return
	}
	fmt.Fprintln(c.opts.ErrOut, "No resources found")
}

// resourceClient scopes the dynamic client to the namespace a request targets.
func resourceClient(d dynamic.Interface, res resourceInfo, ns string, allNamespaces bool) dynamic.ResourceInterface {
	nri := d.Resource(res.GVR)
	if !res.Namespaced || allNamespaces {
		return nri
	}
	return nri.Namespace(ns)
}

// fetch gets the named objects in argument order, or lists them all (in the API's order,
// which is by namespace and name) when no name is given. Named objects that fail are
// collected: the others are still returned, as kubectl prints what it found.
func (o *getOptions) fetch(ctx context.Context, client dynamic.ResourceInterface, names []string) ([]unstructured.Unstructured, error) {
	if len(names) == 0 {
		return listAll(ctx, client, o.selector)
	}
	var objs []unstructured.Unstructured
	var errs []error
	for _, name := range names {
		obj, err := client.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, *obj)
	}
	return objs, utilerrors.NewAggregate(errs)
}

// listAll lists in pages of listChunkSize.
func listAll(ctx context.Context, client dynamic.ResourceInterface, selector string) ([]unstructured.Unstructured, error) {
	var objs []unstructured.Unstructured
	opts := metav1.ListOptions{LabelSelector: selector, Limit: listChunkSize}
	for {
		list, err := client.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		objs = append(objs, list.Items...)
		if list.GetContinue() == "" {
			return objs, nil
		}
		opts.Continue = list.GetContinue()
	}
}
