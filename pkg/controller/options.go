package controller

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned"
	"github.com/ovs-sdn/ovs-sdn/pkg/vnid"
)

// Defaults of Options, as OpenShift's library-go leader election (reference §9.4).
const (
	DefaultLeaseNamespace = "ovs-sdn"
	DefaultLeaseName      = "sdn-controller"
	DefaultLeaseDuration  = 137 * time.Second
	DefaultRenewDeadline  = 107 * time.Second
	DefaultRetryPeriod    = 26 * time.Second
	DefaultMaxRetryDelay  = 30 * time.Second
	DefaultWorkers        = 2

	// Egress node health checks: a probe every second with a one-second
	// timeout, unreachable after two failures in a row — a dead node is
	// declared within about 3 s (OpenShift SDN: 5 s polls, 3 failures).
	DefaultEgressProbeInterval = time.Second
	DefaultEgressProbeTimeout  = time.Second
	DefaultEgressProbeFailures = 2
)

// VNIDRange bounds the VNIDs the controller allocates. The zero value means
// vnid.MinVNID..vnid.MaxVNID; tests shrink it to exercise exhaustion.
type VNIDRange struct {
	Min, Max uint32
}

// Options configure Run. Kube, Network and Identity are required; every other
// zero field takes the documented default.
type Options struct {
	// Kube and Network are the API clients (core and network.openshift.io).
	Kube    kubernetes.Interface
	Network versioned.Interface

	// Identity names this replica in the Lease (holderIdentity); unique per
	// process, e.g. the host name.
	Identity string
	// LeaseNamespace/LeaseName locate the coordination.k8s.io Lease
	// (default ovs-sdn/sdn-controller). The namespace is not created.
	LeaseNamespace, LeaseName string
	// LeaseDuration, RenewDeadline and RetryPeriod are the leader-election
	// timings (default 137s/107s/26s). RenewDeadline < LeaseDuration.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	// Registry receives the ovs_sdn_controller_* metrics; nil = not exported.
	Registry prometheus.Registerer
	// Rand drives VNID choice; nil = seeded randomly.
	Rand *rand.Rand
	// VNIDRange limits allocatable VNIDs (zero = 10..2^24-1).
	VNIDRange VNIDRange
	// Workers is the number of reconcile goroutines per kind (default 2).
	Workers int
	// MaxRetryDelay caps the per-key exponential requeue backoff (default 30s).
	MaxRetryDelay time.Duration
	// ClusterNetworkPollInterval is how often a missing ClusterNetwork
	// "default" is looked up again (default RetryPeriod, at most 5s).
	ClusterNetworkPollInterval time.Duration
	// Status, when set, is updated with readiness and health for probes.
	Status *Status

	// EgressDial opens the health-check connections to egress nodes
	// (hostIP, TCP port EgressProbePort). nil = a plain net.Dialer. A lab
	// whose node addresses live in another network namespace injects a
	// dialer that opens its sockets there.
	EgressDial DialFunc
	// EgressProbeInterval, EgressProbeTimeout and EgressProbeFailures tune
	// the health checks (defaults 1s, 1s, 2): a node is unreachable after
	// EgressProbeFailures consecutive failed probes, reachable again after
	// one success.
	EgressProbeInterval, EgressProbeTimeout time.Duration
	EgressProbeFailures                     int
}

// complete fills in defaults and checks what cannot be defaulted.
func (o Options) complete() (Options, error) {
	var errs []error
	if o.Kube == nil {
		errs = append(errs, errors.New("options: Kube client is required"))
	}
	if o.Network == nil {
		errs = append(errs, errors.New("options: Network client is required"))
	}
	if o.Identity == "" {
		errs = append(errs, errors.New("options: Identity is required"))
	}
	setDefault(&o.LeaseNamespace, DefaultLeaseNamespace)
	setDefault(&o.LeaseName, DefaultLeaseName)
	setDefault(&o.LeaseDuration, DefaultLeaseDuration)
	setDefault(&o.RenewDeadline, DefaultRenewDeadline)
	setDefault(&o.RetryPeriod, DefaultRetryPeriod)
	setDefault(&o.MaxRetryDelay, DefaultMaxRetryDelay)
	setDefault(&o.Workers, DefaultWorkers)
	setDefault(&o.ClusterNetworkPollInterval, min(o.RetryPeriod, 5*time.Second))
	setDefault(&o.VNIDRange, VNIDRange{Min: vnid.MinVNID, Max: vnid.MaxVNID})
	setDefault(&o.EgressProbeInterval, DefaultEgressProbeInterval)
	setDefault(&o.EgressProbeTimeout, DefaultEgressProbeTimeout)
	setDefault(&o.EgressProbeFailures, DefaultEgressProbeFailures)
	if o.EgressDial == nil {
		o.EgressDial = (&net.Dialer{}).DialContext
	}
	if o.EgressProbeInterval < 0 || o.EgressProbeTimeout < 0 || o.EgressProbeFailures < 1 {
		errs = append(errs, fmt.Errorf("options: egress probe interval %v, timeout %v and failures %d must be positive",
			o.EgressProbeInterval, o.EgressProbeTimeout, o.EgressProbeFailures))
	}
	if o.RenewDeadline >= o.LeaseDuration {
		errs = append(errs, fmt.Errorf("options: RenewDeadline %v must be shorter than LeaseDuration %v", o.RenewDeadline, o.LeaseDuration))
	}
	if r := o.VNIDRange; r.Min < vnid.MinVNID || r.Max > vnid.MaxVNID || r.Min > r.Max {
		errs = append(errs, fmt.Errorf("options: VNIDRange %d..%d is not within %d..%d", r.Min, r.Max, vnid.MinVNID, vnid.MaxVNID))
	}
	if o.Status == nil {
		o.Status = &Status{}
	}
	return o, errors.Join(errs...)
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
