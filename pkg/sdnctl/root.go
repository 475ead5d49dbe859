// Package sdnctl is the operator CLI of ovs-sdn: `get` for the network.openshift.io objects
// with kubectl's columns and output formats, `pod-network` for oc's join/isolate/global
// verbs, and (from other files) the node debugging verbs. cmd/sdnctl only calls Main.
//
// Conventions follow kubectl: --kubeconfig, $KUBECONFIG, --context, -n; results on stdout;
// errors on stderr formatted like kubectl's ("Error from server (NotFound): …", "error: …");
// exit code 0 on success and 1 on any failure, usage errors included (kubectl does the same).
package sdnctl

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Options configures one invocation. Only the streams are required; the rest are seams for
// tests (fake clients, a fixed clock, a short wait for the controller).
type Options struct {
	In          io.Reader
	Out, ErrOut io.Writer

	// Clients, when set, are used instead of clients built from the kubeconfig.
	Clients *Clients
	// OVS, when set, reaches the nodes' Open vSwitch instead of ovs-ofctl and
	// OVSDB (flows, trace).
	OVS OVSBackend
	// Now is the clock of AGE columns; time.Now when nil.
	Now func() time.Time
	// PodNetworkBackoff is how pod-network polls for the controller to apply a change;
	// DefaultPodNetworkBackoff (oc's: 500 ms ×1.1, 15 steps ≈ 15 s) when Steps is 0.
	PodNetworkBackoff wait.Backoff
}

// DefaultPodNetworkBackoff is oc adm pod-network's wait for the network controller.
var DefaultPodNetworkBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.1, Steps: 15}

// cli is what every subcommand gets: the connection factory and the invocation's options.
type cli struct {
	*Factory
	opts Options
}

func (c *cli) now() time.Time {
	if c.opts.Now != nil {
		return c.opts.Now()
	}
	return time.Now()
}

func (c *cli) podNetworkBackoff() wait.Backoff {
	if c.opts.PodNetworkBackoff.Steps == 0 {
		return DefaultPodNetworkBackoff
	}
	return c.opts.PodNetworkBackoff
}

// subcommands lists sdnctl's verbs, each built in its own file. A new verb (flows, trace, …)
// adds its constructor here and nothing else.
func subcommands() []func(*cli) *cobra.Command {
	return []func(*cli) *cobra.Command{
		newGetCommand,
		newPodNetworkCommand,
		newFlowsCommand,
		newTraceCommand,
		newRenderManifestsCommand,
	}
}

// NewRootCommand builds the sdnctl command tree for one invocation.
func NewRootCommand(opts Options) *cobra.Command {
	c := &cli{Factory: newFactory(opts.Clients), opts: opts}
	root := &cobra.Command{
		Use:   "sdnctl",
		Short: "sdnctl inspects and manages the ovs-sdn pod network",
		Long: `sdnctl inspects and manages the ovs-sdn pod network.

It reads the network.openshift.io objects (ClusterNetwork, HostSubnet, NetNamespace,
EgressNetworkPolicy) the way kubectl and oc show them, and changes project networks in
multitenant mode the way oc adm pod-network does.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(opts.In)
	root.SetOut(opts.Out)
	root.SetErr(opts.ErrOut)
	c.addFlags(root.PersistentFlags())
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErrorf(cmd.CommandPath(), "%v", err)
	})
	for _, newCmd := range subcommands() {
		root.AddCommand(newCmd(c))
	}
	return root
}

// Main runs sdnctl with args (without the program name) and returns the exit code; errors
// have been written to opts.ErrOut.
func Main(ctx context.Context, args []string, opts Options) int {
	root := NewRootCommand(opts)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		msg := errorMessage(err)
		if !strings.HasSuffix(msg, "\n") {
			msg += "\n"
		}
		fmt.Fprint(opts.ErrOut, msg)
		return ExitFailure
	}
	return ExitOK
}
