// Command sdn-controller allocates a pod subnet per Node (HostSubnet) and a
// VNID per Namespace (NetNamespace) for ovs-sdn. Several replicas may run;
// one leads through a coordination.k8s.io Lease. See pkg/controller.
//
// It exits non-zero with a message when ClusterNetwork "default" is invalid
// or when it loses leadership (so that it restarts as a standby).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned"
	"github.com/ovs-sdn/ovs-sdn/pkg/controller"
	"github.com/ovs-sdn/ovs-sdn/pkg/kubeconfig"
	"github.com/ovs-sdn/ovs-sdn/pkg/probes"
)

// flags are the command-line settings, completed into controller.Options.
type flags struct {
	kubeconfig     string
	identity       string
	leaseNamespace string
	leaseName      string
	leaseDuration  time.Duration
	renewDeadline  time.Duration
	retryPeriod    time.Duration
	metricsAddress string
	qps            float32
	burst          int
	egressInterval time.Duration
	egressTimeout  time.Duration
	egressFailures int
}

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sdn-controller:", err)
		klog.Flush()
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:           "sdn-controller",
		Short:         "Allocate HostSubnets and NetNamespaces for ovs-sdn (leader-elected)",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return f.run(ctx)
		},
	}
	hostname, _ := os.Hostname()
	fs := cmd.Flags()
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, else in-cluster configuration)")
	fs.StringVar(&f.identity, "identity", hostname, "holder identity in the leader-election Lease")
	fs.StringVar(&f.leaseNamespace, "lease-namespace", controller.DefaultLeaseNamespace, "namespace of the leader-election Lease")
	fs.StringVar(&f.leaseName, "lease-name", controller.DefaultLeaseName, "name of the leader-election Lease")
	fs.DurationVar(&f.leaseDuration, "lease-duration", controller.DefaultLeaseDuration, "how long a standby waits before taking over an unrenewed Lease")
	fs.DurationVar(&f.renewDeadline, "renew-deadline", controller.DefaultRenewDeadline, "how long the leader retries renewing before giving up")
	fs.DurationVar(&f.retryPeriod, "retry-period", controller.DefaultRetryPeriod, "interval between leader-election attempts")
	fs.StringVar(&f.metricsAddress, "metrics-bind-address", "127.0.0.1:29100", "address serving /metrics, /healthz and /readyz (empty disables)")
	fs.Float32Var(&f.qps, "kube-api-qps", 50, "sustained requests per second to the API server")
	fs.IntVar(&f.burst, "kube-api-burst", 100, "request burst to the API server")
	fs.DurationVar(&f.egressInterval, "egress-probe-interval", controller.DefaultEgressProbeInterval, "how often egress nodes are health-checked (TCP to hostIP port 9)")
	fs.DurationVar(&f.egressTimeout, "egress-probe-timeout", controller.DefaultEgressProbeTimeout, "how long one egress health check waits for an answer")
	fs.IntVar(&f.egressFailures, "egress-probe-failures", controller.DefaultEgressProbeFailures, "consecutive failed health checks after which an egress node is unreachable and its automatic egress IPs move")
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	return cmd
}

func (f *flags) run(ctx context.Context) error {
	defer klog.Flush()
	cfg, err := kubeconfig.Load(f.kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "sdn-controller/" + f.identity
	cfg.QPS, cfg.Burst = f.qps, f.burst
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	network, err := versioned.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("network client: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	status := &controller.Status{}
	if f.metricsAddress != "" {
		if _, err := probes.Serve(ctx, f.metricsAddress, reg, status.Healthy, status.Ready); err != nil {
			return err
		}
	}
	return controller.Run(ctx, controller.Options{
		Kube: kube, Network: network, Identity: f.identity,
		LeaseNamespace: f.leaseNamespace, LeaseName: f.leaseName,
		LeaseDuration: f.leaseDuration, RenewDeadline: f.renewDeadline, RetryPeriod: f.retryPeriod,
		Registry: reg, Status: status,
		EgressProbeInterval: f.egressInterval, EgressProbeTimeout: f.egressTimeout, EgressProbeFailures: f.egressFailures,
	})
}
