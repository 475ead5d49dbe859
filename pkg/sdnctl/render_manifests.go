package sdnctl

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ovs-sdn/ovs-sdn/pkg/manifests"
)

// newRenderManifestsCommand renders the deployment manifests from a config file; it needs
// no cluster. The rendering itself lives in pkg/manifests.
func newRenderManifestsCommand(_ *cli) *cobra.Command {
	var configFile, outputDir string
	cmd := &cobra.Command{
		Use:   "render-manifests [--config FILE] [--output-dir DIR]",
		Short: "Render the ovs-sdn deployment manifests from a config file",
		Long: `Render the Namespace, CRDs, RBAC, ClusterNetwork, ConfigMap, sdn-node DaemonSet,
sdn-controller Deployment and metrics Services of an ovs-sdn installation from one config
file (cluster and service networks, mode, VXLAN port, MTU, images, log level; see
manifests/config.yaml). Without --config the defaults are used. Without --output-dir the
manifests are written to stdout as one YAML stream; with it, one file per group, and files
rendered earlier that are no longer produced are removed.`,
		Example: `  sdnctl render-manifests --config manifests/config.yaml --output-dir manifests
  sdnctl render-manifests --config my-cluster.yaml | kubectl apply --server-side -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := manifests.Default()
			if configFile != "" {
				var err error
				if cfg, err = manifests.Load(configFile); err != nil {
					return err
				}
			}
			if outputDir != "" {
				return manifests.Write(cfg, outputDir)
			}
			out, err := manifests.RenderYAML(cfg)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			if err != nil {
				return fmt.Errorf("writing manifests: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "config file (default: the built-in defaults)")
	cmd.Flags().StringVar(&outputDir, "output-dir", "", "directory to write the manifest files into (default: stdout)")
	return cmd
}
