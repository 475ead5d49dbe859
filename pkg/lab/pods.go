package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/images"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
)

// PodSpec describes a lab pod. Node binds the pod (spec.nodeName), as a
// scheduler would; a containerd lab schedules a pod without Node with
// kube-scheduler. The servers of Ports are the lab's (the stand-in's, or a
// tap's in the pod's network namespace on a real node, whose container runs
// agnhost pause).
type PodSpec struct {
	Namespace, Name, Node string
	Labels                map[string]string
	Ports                 []corev1.ContainerPort // the kubelet serves each of them
}

// CreatePod creates the pod, retrying while the namespace's default
// ServiceAccount does not exist yet (kube-controller-manager creates it
// shortly after the namespace).
func (l *Lab) CreatePod(ctx context.Context, s PodSpec) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, Labels: s.Labels},
		Spec: corev1.PodSpec{
			NodeName:                      s.Node,
			AutomountServiceAccountToken:  ptr(false),
			TerminationGracePeriodSeconds: ptr(int64(0)),
			Containers:                    []corev1.Container{{Name: "app", Image: "sdn-lab.invalid/none", Ports: s.Ports}},
		},
	}
	if l.realRuntime() {
		pod.Spec.Containers[0].Image = images.AgnhostImage
		pod.Spec.Containers[0].Args = []string{"pause"}
		pod.Annotations = map[string]string{kubelet.TapAnnotation: "true"} // the tap serves its ports
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, last = l.Kube.CoreV1().Pods(s.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		switch {
		case last == nil || apierrors.IsAlreadyExists(last):
			return true, nil
		case strings.Contains(last.Error(), "serviceaccount"):
			return false, nil
		}
		return false, last
	})
	if err != nil {
		return fmt.Errorf("creating pod %s/%s: %w (last: %v)", s.Namespace, s.Name, err, last)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// WaitPodsRunning waits until every pod is Running with an IP and returns
// the IPs.
func (l *Lab) WaitPodsRunning(ctx context.Context, timeout time.Duration, pods ...types.NamespacedName) (map[types.NamespacedName]netip.Addr, error) {
	ips := map[types.NamespacedName]netip.Addr{}
	var pending types.NamespacedName
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for _, key := range pods {
			if _, ok := ips[key]; ok {
				continue
			}
			p, err := l.Kube.CoreV1().Pods(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				pending = key
				return false, nil
			}
			ip, err := netip.ParseAddr(p.Status.PodIP)
			if err != nil {
				return false, fmt.Errorf("pod %s: status.podIP %q: %w", key, p.Status.PodIP, err)
			}
			if !l.Kubelets.Serves(key, ip) {
				pending = key
				return false, nil
			}
			ips[key] = ip
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for pod %s to run: %w%s", pending, err, l.podProblem(pending))
	}
	return ips, nil
}

// podProblem quotes the condition a pending pod's kubelet reported.
func (l *Lab) podProblem(key types.NamespacedName) string {
	p, err := l.Kube.CoreV1().Pods(key.Namespace).Get(context.Background(), key.Name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	for _, c := range p.Status.Conditions {
		if c.Status == corev1.ConditionFalse && c.Message != "" {
			return fmt.Sprintf(" (%s: %s)", c.Type, c.Message)
		}
	}
	return ""
}

// Probe connects from pod `from` to to:port with protocol and reports the
// outcome (see kubelet.Probe).
func (l *Lab) Probe(ctx context.Context, from types.NamespacedName, to netip.Addr, port uint16, proto corev1.Protocol, timeout time.Duration) (kubelet.Outcome, error) {
	res, err := l.Kubelets.Probe(ctx, from, netip.AddrPortFrom(to, port), proto, timeout)
	if err != nil {
		return 0, err
	}
	return res.Outcome, nil
}

// PodNetNS returns the network namespace path of a running pod of the node ("" if none):
// the stand-in's pod namespace, or on a real node the pod sandbox's.
func (n *Node) PodNetNS(key types.NamespacedName) string {
	if n.Tap != nil {
		return n.Tap.PodNetNS(key)
	}
	if n.Kubelet != nil {
		return n.Kubelet.PodNetNS(key)
	}
	return ""
}
