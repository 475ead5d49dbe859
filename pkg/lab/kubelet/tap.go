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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// TapConfig describes the pods of one real node (pkg/lab/realnode) a Tap serves.
type TapConfig struct {
	NodeName string
	Kube     kubernetes.Interface
	// Resolve returns the running pod's sandbox as the node's container runtime reports
	// it: the path of its network namespace (e.g. /proc/<sandbox pid>/ns/net) and its
	// address.
	Resolve func(ctx context.Context, pod *corev1.Pod) (Sandbox, error)
}

// Sandbox is a running pod sandbox of a real node.
type Sandbox struct {
	NetNS string
	IP    netip.Addr
}

// TapAnnotation marks the pods a Tap serves (value "true"): the lab's own pods, whose
// container only runs agnhost pause. Every other pod — Kubernetes' e2e tests', CoreDNS,
// a user's — serves its ports itself, and a tap's socket on one of them would take the
// port from the container ("address already in use").
const TapAnnotation = "sdn-lab.ovs-sdn.io/tap"

// Tap gives the pods a real kubelet runs on one node what the stand-in gives its own: for
// every Running pod with an IP and TapAnnotation (hostNetwork pods excepted) it opens the
// declared TCP and UDP ports and the SCTP watcher inside the pod's network namespace — sockets of this process,
// like the stand-in's servers — and runs probes from there. The pod's network is the real
// one (container runtime, CNI, agent); only the servers and probe clients are the lab's,
// so every suite written against the stand-in runs unchanged on real nodes. It implements
// Member. The zero Tap is not usable; use NewTap.
type Tap struct {
	cfg TapConfig

	mu        sync.Mutex
	sandboxes map[types.NamespacedName]*sandbox
}

// NewTap validates cfg. The Tap does nothing until Run.
func NewTap(cfg TapConfig) (*Tap, error) {
	if cfg.NodeName == "" || cfg.Kube == nil || cfg.Resolve == nil {
		return nil, errors.New("kubelet: TapConfig needs NodeName, Kube and Resolve")
	}
	return &Tap{cfg: cfg, sandboxes: map[types.NamespacedName]*sandbox{}}, nil
}

// Run watches the node's pods until ctx is done, then closes every server it opened.
func (t *Tap) Run(ctx context.Context) error {
	f := informers.NewSharedInformerFactoryWithOptions(t.cfg.Kube, 30*time.Second,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", t.cfg.NodeName).String()
		}))
	inf := f.Core().V1().Pods()
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](retryBase, retryMax),
		workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "tap-" + t.cfg.NodeName})
	defer q.ShutDown()
	enqueue := func(obj interface{}) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			ns, name, _ := cache.SplitMetaNamespaceKey(key)
			q.Add(types.NamespacedName{Namespace: ns, Name: name})
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o interface{}) { enqueue(o) }, DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("tap %s: pod informer: %w", t.cfg.NodeName, err)
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	defer t.detachAll()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return ctx.Err()
	}
	go t.worker(ctx, q, inf.Lister())
	<-ctx.Done()
	return nil
}

func (t *Tap) worker(ctx context.Context, q podQueue, lister corelisters.PodLister) {
	for {
		key, quit := q.Get()
		if quit {
			return
		}
		if err := t.sync(ctx, key, lister); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).V(2).Info("Attaching to pod", "pod", key, "err", err)
			q.AddRateLimited(key)
		} else {
			q.Forget(key)
		}
		q.Done(key)
	}
}

// sync attaches servers to a running pod (again, when its sandbox or IP changed) and
// detaches them from a pod that is going away.
func (t *Tap) sync(ctx context.Context, key types.NamespacedName, lister corelisters.PodLister) error {
	pod, err := lister.Pods(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) || err == nil && !attachable(pod) {
		t.detach(key)
		return nil
	}
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(pod.Status.PodIP)
	if err != nil {
		return fmt.Errorf("pod %s: podIP %q: %w", key, pod.Status.PodIP, err)
	}
	if sb := t.sandbox(key); sb != nil && sb.uid == pod.UID && sb.ips[0] == ip && nsAlive(sb.netnsPath) {
		return nil
	}
	t.detach(key)
	sb, err := t.cfg.Resolve(ctx, pod)
	if err != nil {
		return err
	}
	if sb.IP != ip {
		// A new sandbox whose address the pod's status does not show yet: the status
		// update that does will sync the pod again.
		return nil
	}
	srv, err := startServers(sb.NetNS, pod.Name, pod)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.sandboxes[key] = &sandbox{key: key, uid: pod.UID, netnsPath: sb.NetNS, ips: []netip.Addr{ip}, servers: srv}
	t.mu.Unlock()
	return nil
}

// attachable: the pod runs, has an IP of its own and is not being deleted.
func attachable(pod *corev1.Pod) bool {
	return pod.Annotations[TapAnnotation] == "true" && pod.DeletionTimestamp == nil &&
		pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" && !pod.Spec.HostNetwork
}

func nsAlive(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func (t *Tap) sandbox(key types.NamespacedName) *sandbox {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sandboxes[key]
}

// detach closes the pod's servers: their sockets would pin its network namespace.
func (t *Tap) detach(key types.NamespacedName) {
	t.mu.Lock()
	sb := t.sandboxes[key]
	delete(t.sandboxes, key)
	t.mu.Unlock()
	if sb != nil {
		sb.servers.Close()
	}
}

func (t *Tap) detachAll() {
	t.mu.Lock()
	keys := make([]types.NamespacedName, 0, len(t.sandboxes))
	for k := range t.sandboxes {
		keys = append(keys, k)
	}
	t.mu.Unlock()
	for _, k := range keys {
		t.detach(k)
	}
}

// PodNetNS returns the netns path of a pod the tap serves ("" if none).
func (t *Tap) PodNetNS(key types.NamespacedName) string {
	if sb := t.sandbox(key); sb != nil && nsAlive(sb.netnsPath) {
		return sb.netnsPath
	}
	return ""
}

// PodIPs returns the address of a pod the tap serves (nil if none).
func (t *Tap) PodIPs(key types.NamespacedName) []netip.Addr {
	if sb := t.sandbox(key); sb != nil {
		return sb.ips
	}
	return nil
}

func (t *Tap) probe(ctx context.Context, from types.NamespacedName, to netip.AddrPort, protocol corev1.Protocol, timeout time.Duration, w SCTPWitness, via Via) (ProbeResult, error) {
	sb := t.sandbox(from)
	if sb == nil {
		return ProbeResult{}, fmt.Errorf("pod %s is not running on node %s", from, t.cfg.NodeName)
	}
	return probeIn(ctx, sb.netnsPath, sb.ips[0], from, to, protocol, timeout, w, via)
}

// SCTPSeen implements SCTPWitness for the pods of the tap.
func (t *Tap) SCTPSeen(to netip.Addr, port uint16, from netip.Addr, since time.Time) (arrived, served, ok bool) {
	t.mu.Lock()
	var srv *podServers
	for _, sb := range t.sandboxes {
		if containsAddr(sb.ips, to) {
			srv = sb.servers
		}
	}
	t.mu.Unlock()
	if srv == nil {
		return false, false, false
	}
	arrived, served = srv.sctpSeen(port, from, since)
	return arrived, served, true
}

// NodeName is the node whose pods the tap serves.
func (t *Tap) NodeName() string { return t.cfg.NodeName }
