package kubelet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
)

// Reasons of the pod Events and conditions the kubelet stand-in writes (the kubelet's own).
const (
	ReasonFailedCreatePodSandBox = "FailedCreatePodSandBox"
	ReasonNetworkNotReady        = "NetworkNotReady"
)

// podReadyToStart is PodReadyToStartContainers (the condition's name since Kubernetes 1.29).
const podReadyToStart corev1.PodConditionType = "PodReadyToStartContainers"

// reportRunning posts phase Running, the IPs and the ready conditions, unless the cached pod
// already shows them.
func (k *Kubelet) reportRunning(ctx context.Context, cached *corev1.Pod, sb *sandbox) error {
	now := metav1.Now()
	want := func(p *corev1.Pod) { k.runningStatus(&p.Status, p, sb, now) }
	desired := cached.DeepCopy()
	want(desired)
	if apiequality.Semantic.DeepEqual(statusSansTimes(desired.Status), statusSansTimes(cached.Status)) {
		return nil
	}
	return k.updatePodStatus(ctx, cached, want)
}

func (k *Kubelet) runningStatus(st *corev1.PodStatus, pod *corev1.Pod, sb *sandbox, now metav1.Time) {
	st.Phase = corev1.PodRunning
	st.HostIP = k.cfg.NodeIP.String()
	st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	st.PodIP, st.PodIPs = "", nil
	for i, ip := range sb.ips {
		if i == 0 {
			st.PodIP = ip.String()
		}
		st.PodIPs = append(st.PodIPs, corev1.PodIP{IP: ip.String()})
	}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	for _, t := range []corev1.PodConditionType{podReadyToStart, corev1.PodInitialized,
		corev1.ContainersReady, corev1.PodReady} {
		setPodCondition(st, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue}, now)
	}
	st.ContainerStatuses = runningContainers(pod, sb, st.ContainerStatuses, now)
}

// runningContainers reports every container running since its first report.
func runningContainers(pod *corev1.Pod, sb *sandbox, old []corev1.ContainerStatus, now metav1.Time) []corev1.ContainerStatus {
	started := map[string]metav1.Time{}
	for _, c := range old {
		if c.State.Running != nil {
			started[c.Name] = c.State.Running.StartedAt
		}
	}
	var out []corev1.ContainerStatus
	for _, c := range pod.Spec.Containers {
		at, ok := started[c.Name]
		if !ok {
			at = now
		}
		out = append(out, corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image,
			ContainerID: "sdn-lab://" + sb.id[:12] + "-" + c.Name, Ready: true, Started: ptrBool(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}}})
	}
	return out
}

func ptrBool(b bool) *bool { return &b }

// reportSandboxFailure leaves the pod Pending with PodReadyToStartContainers=False carrying
// the error, and emits a Warning Event (the Event recorder aggregates repeats).
func (k *Kubelet) reportSandboxFailure(ctx context.Context, pod *corev1.Pod, cause error) {
	reason, msg := ReasonFailedCreatePodSandBox, fmt.Sprintf("Failed to create pod sandbox: %v", cause)
	if isNetworkNotReady(cause) {
		reason, msg = ReasonNetworkNotReady, fmt.Sprintf("network is not ready: %v", cause)
	}
	k.recorder.Event(pod, corev1.EventTypeWarning, reason, msg)
	err := k.updatePodStatus(ctx, pod, func(p *corev1.Pod) {
		if p.Status.Phase == "" {
			p.Status.Phase = corev1.PodPending
		}
		p.Status.HostIP = k.cfg.NodeIP.String()
		p.Status.HostIPs = []corev1.HostIP{{IP: p.Status.HostIP}}
		setPodCondition(&p.Status, corev1.PodCondition{Type: podReadyToStart, Status: corev1.ConditionFalse,
			Reason: reason, Message: msg}, metav1.Now())
	})
	if err != nil && ctx.Err() == nil {
		klog.FromContext(ctx).Error(err, "Reporting sandbox failure", "pod", klog.KObj(pod))
	}
}

// updatePodStatus applies mutate to the latest pod and writes the status, retrying on
// conflict. A pod that is gone or was replaced (other UID) is left alone.
func (k *Kubelet) updatePodStatus(ctx context.Context, pod *corev1.Pod, mutate func(*corev1.Pod)) error {
	pods := k.cfg.Kube.CoreV1().Pods(pod.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || cur.UID != pod.UID {
			return ignoreNotFound(err)
		}
		mutate(cur)
		_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return ignoreNotFound(err)
	})
}

func setPodCondition(st *corev1.PodStatus, c corev1.PodCondition, now metav1.Time) {
	c.LastTransitionTime = now
	for i := range st.Conditions {
		if st.Conditions[i].Type != c.Type {
			continue
		}
		if st.Conditions[i].Status == c.Status {
			c.LastTransitionTime = st.Conditions[i].LastTransitionTime
		}
		st.Conditions[i] = c
		return
	}
	st.Conditions = append(st.Conditions, c)
}

// statusSansTimes drops what changes on every computation, for comparing statuses.
func statusSansTimes(st corev1.PodStatus) corev1.PodStatus {
	st = *st.DeepCopy()
	st.StartTime = nil
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = metav1.Time{}
		st.Conditions[i].LastProbeTime = metav1.Time{}
	}
	for i := range st.ContainerStatuses {
		st.ContainerStatuses[i].State = corev1.ContainerState{}
	}
	return st
}

// podIPs returns the sandbox addresses (under Kubelet.mu).
func (sb *sandbox) podIPs() []netip.Addr { return append([]netip.Addr(nil), sb.ips...) }

func isNetworkNotReady(err error) bool { return errors.Is(err, ErrNetworkNotReady) }

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
