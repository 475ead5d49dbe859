package kubelet

import (
	"context"
	"fmt"
	"runtime"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// LeaseNamespace holds the node Leases.
const LeaseNamespace = corev1.NamespaceNodeLease

// leaseDurationSeconds is the kubelet's default (--node-lease-duration-seconds).
const leaseDurationSeconds = 40

// KubeletVersion is what the stand-in reports in status.nodeInfo.
const KubeletVersion = "v1.34.4-sdn-lab"

// registerNode creates the Node, or adopts an existing one (sdn-lab may have created it
// before the node joined), and posts its status.
func (k *Kubelet) registerNode(ctx context.Context) error {
	nodes := k.cfg.Kube.CoreV1().Nodes()
	_, err := nodes.Create(ctx, k.newNode(), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubelet: register node %s: %w", k.cfg.NodeName, err)
	}
	if err := k.updateNodeStatus(ctx); err != nil {
		return fmt.Errorf("kubelet: register node %s: %w", k.cfg.NodeName, err)
	}
	if err := k.renewLease(ctx); err != nil {
		return fmt.Errorf("kubelet: register node %s: %w", k.cfg.NodeName, err)
	}
	return nil
}

func (k *Kubelet) newNode() *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: map[string]string{
		corev1.LabelHostname:   k.cfg.NodeName,
		corev1.LabelOSStable:   runtime.GOOS,
		corev1.LabelArchStable: runtime.GOARCH,
	}}}
}

// heartbeat renews the Lease and re-posts the Ready condition every NodeStatusPeriod until
// ctx is done. Failures are logged and retried on the next tick.
func (k *Kubelet) heartbeat(ctx context.Context) {
	logger := klog.FromContext(ctx)
	t := time.NewTicker(k.cfg.NodeStatusPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := k.renewLease(ctx); err != nil && ctx.Err() == nil {
			logger.Error(err, "Renewing node lease")
		}
		if err := k.updateNodeStatus(ctx); err != nil && ctx.Err() == nil {
			logger.Error(err, "Updating node status")
		}
	}
}

// updateNodeStatus sets addresses, capacity, node info and the conditions (Ready=True and
// the pressure conditions False), keeping each condition's lastTransitionTime when its
// status is unchanged.
func (k *Kubelet) updateNodeStatus(ctx context.Context) error {
	nodes := k.cfg.Kube.CoreV1().Nodes()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		k.fillNodeStatus(&n.Status, metav1.Now())
		_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

func (k *Kubelet) fillNodeStatus(st *corev1.NodeStatus, now metav1.Time) {
	st.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: k.cfg.NodeIP.String()},
		{Type: corev1.NodeHostName, Address: k.cfg.NodeName},
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	st.Capacity, st.Allocatable = res, res.DeepCopy()
	st.NodeInfo.KubeletVersion = KubeletVersion
	st.NodeInfo.OperatingSystem, st.NodeInfo.Architecture = runtime.GOOS, runtime.GOARCH
	st.NodeInfo.ContainerRuntimeVersion = "sdn-lab://0"
	st.Phase = ""
	want := []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet stand-in is posting ready status"},
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID"},
	}
	for _, c := range want {
		setNodeCondition(st, c, now)
	}
}

func setNodeCondition(st *corev1.NodeStatus, c corev1.NodeCondition, now metav1.Time) {
	c.LastHeartbeatTime, c.LastTransitionTime = now, now
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

// renewLease creates or renews kube-node-lease/<node>, owned by the Node (as the kubelet
// does, so that deleting the Node garbage-collects it).
func (k *Kubelet) renewLease(ctx context.Context) error {
	leases := k.cfg.Kube.CoordinationV1().Leases(LeaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := leases.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l, err = k.newLease(ctx)
			if err != nil {
				return err
			}
			l.Spec.RenewTime = &now
			_, err = leases.Create(ctx, l, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		l.Spec.HolderIdentity = ptr.To(k.cfg.NodeName)
		l.Spec.LeaseDurationSeconds = ptr.To[int32](leaseDurationSeconds)
		l.Spec.RenewTime = &now
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
}

func (k *Kubelet) newLease(ctx context.Context) (*coordinationv1.Lease, error) {
	n, err := k.cfg.Kube.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("lease owner: %w", err)
	}
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Namespace: LeaseNamespace,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(k.cfg.NodeName),
			LeaseDurationSeconds: ptr.To[int32](leaseDurationSeconds)},
	}, nil
}
