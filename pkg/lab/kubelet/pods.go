package kubelet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// Retry backoff of a failing pod (CNI ADD error, network not ready, API conflict).
const (
	retryBase = 100 * time.Millisecond
	retryMax  = 5 * time.Second
)

// teardownTimeout bounds the clean-up of one sandbox when Run returns.
const teardownTimeout = 15 * time.Second

type podQueue = workqueue.TypedRateLimitingInterface[types.NamespacedName]

// runPods runs the pod informer and the workers until ctx is done.
func (k *Kubelet) runPods(ctx context.Context) error {
	f := informers.NewSharedInformerFactoryWithOptions(k.cfg.Kube, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.cfg.NodeName).String()
		}))
	inf := f.Core().V1().Pods()
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](retryBase, retryMax),
		workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "pods-" + k.cfg.NodeName})
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
		return fmt.Errorf("kubelet: pod informer: %w", err)
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("kubelet: pod informer did not sync")
	}
	k.removeOrphanNetNS(ctx, inf.Lister())
	done := make(chan struct{})
	for i := 0; i < k.cfg.Workers; i++ {
		go func() { defer func() { done <- struct{}{} }(); k.worker(ctx, q, inf.Lister()) }()
	}
	<-ctx.Done()
	q.ShutDown()
	for i := 0; i < k.cfg.Workers; i++ {
		<-done
	}
	return nil
}

func (k *Kubelet) worker(ctx context.Context, q podQueue, lister corelisters.PodLister) {
	logger := klog.FromContext(ctx)
	for {
		key, quit := q.Get()
		if quit {
			return
		}
		err := k.syncPod(ctx, key, lister)
		switch {
		case err == nil:
			q.Forget(key)
		case ctx.Err() != nil:
		default:
			if !errors.Is(err, ErrNetworkNotReady) {
				logger.Error(err, "Syncing pod", "pod", key)
			}
			q.AddRateLimited(key)
		}
		q.Done(key)
	}
}

// syncPod converges one pod: sandbox up and status reported, or sandbox gone and the API
// object finalized.
func (k *Kubelet) syncPod(ctx context.Context, key types.NamespacedName, lister corelisters.PodLister) error {
	pod, err := lister.Pods(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return k.teardown(ctx, key)
	}
	if err != nil {
		return err
	}
	if sb := k.sandbox(key); sb != nil && sb.uid != pod.UID {
		if err := k.teardown(ctx, key); err != nil { // the pod was recreated
			return err
		}
	}
	if pod.DeletionTimestamp != nil {
		if err := k.teardown(ctx, key); err != nil {
			return err
		}
		return k.forceDelete(ctx, pod)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return k.teardown(ctx, key)
	}
	sb, err := k.ensureSandbox(ctx, pod)
	if err != nil {
		k.reportSandboxFailure(ctx, pod, err)
		return err
	}
	return k.reportRunning(ctx, pod, sb)
}

func (k *Kubelet) sandbox(key types.NamespacedName) *sandbox {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sandboxes[key]
}

// ensureSandbox brings the pod's sandbox up step by step; each step is skipped once done,
// so a retry after a failure resumes where it stopped.
func (k *Kubelet) ensureSandbox(ctx context.Context, pod *corev1.Pod) (*sandbox, error) {
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	sb := k.sandbox(key)
	if sb == nil {
		sb = k.newSandbox(pod)
		k.mu.Lock()
		k.sandboxes[key] = sb
		k.mu.Unlock()
	}
	if sb.servers != nil {
		return sb, nil
	}
	if err := k.attach(ctx, sb, pod); err != nil {
		return sb, err
	}
	srv, err := startServers(sb.netnsPath, pod.Name, pod)
	if err != nil {
		return sb, err
	}
	k.mu.Lock()
	sb.servers = srv
	k.mu.Unlock()
	klog.FromContext(ctx).V(2).Info("Pod sandbox ready", "pod", key, "netns", sb.netns, "ips", sb.ips)
	return sb, nil
}

func (k *Kubelet) newSandbox(pod *corev1.Pod) *sandbox {
	sb := &sandbox{key: types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name},
		uid: pod.UID, id: sandboxID(pod.UID), hostNetwork: pod.Spec.HostNetwork}
	if sb.hostNetwork {
		sb.netnsPath = k.cfg.NodeNetNS
	} else {
		sb.netns = k.podNetNSName(sb.id)
		sb.netnsPath = netnsDir + "/" + sb.netns
	}
	return sb
}

// attach creates the netns and runs CNI ADD (nothing for hostNetwork pods).
func (k *Kubelet) attach(ctx context.Context, sb *sandbox, pod *corev1.Pod) error {
	if sb.hostNetwork {
		if sb.netnsPath == "" {
			return errors.New("hostNetwork pod, but the kubelet has no NodeNetNS")
		}
		sb.ips = []netip.Addr{k.cfg.NodeIP}
		return nil
	}
	if sb.added {
		return nil
	}
	if err := ensureNetNS(ctx, sb.netns); err != nil {
		return fmt.Errorf("create pod netns: %w", err)
	}
	ips, err := k.cni.add(ctx, sb, pod)
	if err != nil {
		return err
	}
	k.mu.Lock()
	sb.ips, sb.added = ips, true
	k.mu.Unlock()
	return nil
}

// teardown stops the servers, runs CNI DEL and deletes the netns of the pod's sandbox, if
// any; the sandbox is forgotten only when all of that succeeded, so a failure is retried.
func (k *Kubelet) teardown(ctx context.Context, key types.NamespacedName) error {
	sb := k.sandbox(key)
	if sb == nil {
		return nil
	}
	if sb.servers != nil {
		_ = sb.servers.Close()
		k.mu.Lock()
		sb.servers = nil
		k.mu.Unlock()
	}
	if !sb.hostNetwork {
		if err := k.cni.del(ctx, sb); err != nil {
			return fmt.Errorf("tear down pod %s: %w", key, err)
		}
		if err := deleteNetNS(ctx, sb.netns); err != nil {
			return fmt.Errorf("tear down pod %s: %w", key, err)
		}
	}
	k.mu.Lock()
	delete(k.sandboxes, key)
	k.mu.Unlock()
	klog.FromContext(ctx).V(2).Info("Pod sandbox removed", "pod", key)
	return nil
}

// forceDelete removes the API object once the pod is gone from the node, as the kubelet
// does after a graceful deletion.
func (k *Kubelet) forceDelete(ctx context.Context, pod *corev1.Pod) error {
	err := k.cfg.Kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptrInt64(0), Preconditions: metav1.NewUIDPreconditions(string(pod.UID))})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

func ptrInt64(v int64) *int64 { return &v }

// removeOrphanNetNS deletes netns under the prefix that belong to no pod bound here (a
// crashed earlier run); their plugin state cannot be released without the container ID.
func (k *Kubelet) removeOrphanNetNS(ctx context.Context, lister corelisters.PodLister) {
	pods, _ := lister.List(labels.Everything())
	owned := map[string]bool{}
	for _, p := range pods {
		owned[k.podNetNSName(sandboxID(p.UID))] = true
	}
	for _, name := range netnsWithPrefix(k.cfg.PodNetNSPrefix) {
		if owned[name] {
			continue
		}
		if err := deleteNetNS(ctx, name); err != nil {
			klog.FromContext(ctx).Error(err, "Removing orphaned pod netns", "netns", name)
		}
	}
}

// teardownAll removes every sandbox when Run returns (best-effort CNI DEL; the netns goes
// in any case).
func (k *Kubelet) teardownAll(logger logr.Logger) {
	k.mu.Lock()
	var keys []types.NamespacedName
	for key := range k.sandboxes {
		keys = append(keys, key)
	}
	k.mu.Unlock()
	for _, key := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
		if err := k.teardown(ctx, key); err != nil {
			logger.Error(err, "Tearing down pod on exit", "pod", key)
			if sb := k.sandbox(key); sb != nil && !sb.hostNetwork {
				_ = deleteNetNS(ctx, sb.netns)
			}
		}
		cancel()
	}
}
