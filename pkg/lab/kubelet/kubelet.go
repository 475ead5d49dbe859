package kubelet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// DefaultNodeStatusPeriod is how often the Lease is renewed and the Ready condition re-posted
// when Config.NodeStatusPeriod is zero (the kubelet's own default is 10 s).
const DefaultNodeStatusPeriod = 10 * time.Second

// Config describes one node's kubelet stand-in.
type Config struct {
	NodeName string
	NodeIP   netip.Addr // the Node's InternalIP and the hostIP of its pods
	Kube     kubernetes.Interface
	// NodeNetNS is the path of the node's netns; hostNetwork pods run their servers there
	// and the CNI plugins are exec'd there. Optional: without it hostNetwork pods fail to
	// start and the plugins run in the caller's netns.
	NodeNetNS string
	// CNIConfDir holds the network configuration (the lexically first .conf, .conflist or
	// .json is used); CNIBinDir holds the plugins libcni execs.
	CNIConfDir, CNIBinDir string
	// CNICacheDir is libcni's result cache (a runtime's /var/lib/cni). Optional: a temporary
	// directory removed when Run returns.
	CNICacheDir string
	// PodNetNSPrefix starts the name of every pod netns, e.g. "<labprefix>-<node>-p"; it must
	// be specific to this node, because start-up deletes the netns under it no pod owns.
	PodNetNSPrefix string
	// NodeStatusPeriod: see DefaultNodeStatusPeriod.
	NodeStatusPeriod time.Duration
	// Workers is how many pods are set up or torn down in parallel (default 4).
	Workers int
}

func (c *Config) complete() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("NodeName is required"))
	}
	if !c.NodeIP.IsValid() {
		errs = append(errs, errors.New("NodeIP is required"))
	}
	if c.Kube == nil {
		errs = append(errs, errors.New("Kube is required"))
	}
	if c.CNIConfDir == "" || c.CNIBinDir == "" {
		errs = append(errs, errors.New("CNIConfDir and CNIBinDir are required"))
	}
	if c.PodNetNSPrefix == "" {
		errs = append(errs, errors.New("PodNetNSPrefix is required"))
	}
	if c.NodeStatusPeriod <= 0 {
		c.NodeStatusPeriod = DefaultNodeStatusPeriod
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kubelet config: %w", err)
	}
	return nil
}

// Kubelet is the stand-in for one node. Its methods are safe for concurrent use.
type Kubelet struct {
	cfg      Config
	recorder record.EventRecorder
	cni      *cniRuntime

	mu        sync.Mutex
	sandboxes map[types.NamespacedName]*sandbox
}

// New validates cfg. The Kubelet does nothing until Run.
func New(cfg Config) (*Kubelet, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	return &Kubelet{cfg: cfg, sandboxes: map[types.NamespacedName]*sandbox{}}, nil
}

// Run is New followed by Kubelet.Run.
func Run(ctx context.Context, cfg Config) error {
	k, err := New(cfg)
	if err != nil {
		return err
	}
	return k.Run(ctx)
}

// Run registers the Node and runs its pods until ctx is done; then it tears down every
// sandbox it holds and returns nil. It returns an error early only when the Node cannot be
// registered or the pod informer cannot sync. Call it once.
func (k *Kubelet) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("node", k.cfg.NodeName)
	ctx = klog.NewContext(ctx, logger)
	cacheDir, cleanup, err := k.cacheDir()
	if err != nil {
		return err
	}
	defer cleanup()
	k.cni = newCNIRuntime(k.cfg.CNIConfDir, k.cfg.CNIBinDir, cacheDir, k.cfg.NodeNetNS)

	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: k.cfg.Kube.CoreV1().Events("")})
	defer bc.Shutdown()
	k.recorder = bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: k.cfg.NodeName})

	if err := k.registerNode(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); k.heartbeat(ctx) }()
	err = k.runPods(ctx)
	wg.Wait()
	k.teardownAll(logger)
	return err
}

func (k *Kubelet) cacheDir() (string, func(), error) {
	if k.cfg.CNICacheDir != "" {
		return k.cfg.CNICacheDir, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "lab-kubelet-cni-cache-")
	if err != nil {
		return "", nil, fmt.Errorf("kubelet: CNI cache dir: %w", err)
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// NodeName is the name of the node this kubelet runs.
func (k *Kubelet) NodeName() string { return k.cfg.NodeName }
