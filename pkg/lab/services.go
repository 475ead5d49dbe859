package lab

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
)

// EnsureService creates (if missing) ClusterIP Service ns/name selecting
// selector on TCP port (target the same port), and waits until its
// EndpointSlices hold a ready endpoint (kube-controller-manager writes them
// from the pods the lab kubelet reports Ready). It returns the ClusterIP.
// The agents program br0 from the slices shortly after; callers that
// probe should allow for that (ProbeUntil).
func (l *Lab) EnsureService(ctx context.Context, ns, name string, selector map[string]string, port int32) (netip.Addr, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{{
			Name: "tcp", Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(port)}}},
	}
	got, err := l.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = l.Kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("service %s/%s: %w", ns, name, err)
	}
	vip, err := netip.ParseAddr(got.Spec.ClusterIP)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("service %s/%s: clusterIP %q: %w", ns, name, got.Spec.ClusterIP, err)
	}
	sel := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		slices, err := l.Kube.DiscoveryV1().EndpointSlices(ns).List(ctx, sel)
		if err != nil {
			return false, nil
		}
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready == nil || *e.Conditions.Ready {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		return vip, fmt.Errorf("service %s/%s: no ready endpoint within a minute: %w", ns, name, err)
	}
	return vip, nil
}
