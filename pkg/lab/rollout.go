package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
	"github.com/ovs-sdn/ovs-sdn/pkg/controller"
	"github.com/ovs-sdn/ovs-sdn/pkg/manifests"
)

// WaitOVSSDN waits until the configuration applied last has rolled out (containerd labs):
// the sdn-node DaemonSet runs its current template, ready, on every node; the
// sdn-controller Deployment runs its current template with every replica available and one
// of them holds the leader Lease; every node has the agent's CNI configuration and is
// Ready. The error names what was still missing.
func (l *Lab) WaitOVSSDN(ctx context.Context, timeout time.Duration) error {
	if err := waitNothingMissing(ctx, 500*time.Millisecond, timeout, l.rolloutMissing); err != nil {
		return fmt.Errorf("waiting for ovs-sdn to roll out: %w%s", err, l.podStates(l.ManifestsConfig().Namespace))
	}
	return nil
}

// podStates describes every pod of namespace ns — node, phase, and each container's
// waiting or last termination reason and restarts — for an error that says why a rollout
// did not finish. It has its own short deadline (the caller's may be spent).
func (l *Lab) podStates(ns string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := l.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "\n  (pods of " + ns + ": " + err.Error() + ")"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n  pods of namespace %s:", ns)
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "\n    %s on %q: %s", p.Name, p.Spec.NodeName, p.Status.Phase)
		for _, c := range p.Status.Conditions {
			if c.Status != corev1.ConditionTrue && c.Message != "" {
				fmt.Fprintf(&b, "; %s: %s", c.Type, c.Message)
			}
		}
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			fmt.Fprintf(&b, "; %s ready=%v restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
			if w := cs.State.Waiting; w != nil {
				fmt.Fprintf(&b, " waiting %s %s", w.Reason, w.Message)
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				fmt.Fprintf(&b, " last exit %d %s %s", t.ExitCode, t.Reason, strings.TrimSpace(t.Message))
			}
		}
	}
	return b.String()
}

// waitNothingMissing polls missing every interval until it returns "" or timeout passes;
// the error then carries the last thing missing — not the deadline error of a last poll
// that the timeout itself cut short (client-go's rate limiter refuses a request that would
// outlast the deadline before the context expires).
func waitNothingMissing(ctx context.Context, interval, timeout time.Duration, missing func(context.Context) string) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		m := missing(ctx)
		if last == "" || !strings.Contains(m, context.DeadlineExceeded.Error()) {
			last = m
		}
		return m == "", nil
	})
	if err != nil {
		return fmt.Errorf("%w (%s)", err, last)
	}
	return nil
}

// rolloutMissing returns what WaitOVSSDN still waits for, or "".
func (l *Lab) rolloutMissing(ctx context.Context) string {
	ns := l.ManifestsConfig().Namespace
	nodes := int32(len(l.Nodes()))
	ds, err := l.Kube.AppsV1().DaemonSets(ns).Get(ctx, manifests.NodeName, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	st := ds.Status
	if st.ObservedGeneration < ds.Generation || st.DesiredNumberScheduled != nodes || st.UpdatedNumberScheduled != nodes ||
		st.NumberReady != nodes || st.NumberUnavailable != 0 {
		return fmt.Sprintf("DaemonSet %s: %d nodes, %d scheduled, %d updated, %d ready", ds.Name, nodes,
			st.DesiredNumberScheduled, st.UpdatedNumberScheduled, st.NumberReady)
	}
	dep, err := l.Kube.AppsV1().Deployments(ns).Get(ctx, manifests.ControllerName, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	want := *dep.Spec.Replicas
	if ds := dep.Status; ds.ObservedGeneration < dep.Generation || ds.UpdatedReplicas != want ||
		ds.AvailableReplicas != want || ds.Replicas != want {
		return fmt.Sprintf("Deployment %s: %d wanted, %d updated, %d available, %d in all", dep.Name, want,
			ds.UpdatedReplicas, ds.AvailableReplicas, ds.Replicas)
	}
	lease, err := l.Kube.CoordinationV1().Leases(ns).Get(ctx, controller.DefaultLeaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		return "no sdn-controller holds the leader Lease"
	}
	return l.nodesMissing(ctx)
}

// nodesMissing returns the first node without the agent's CNI configuration or not Ready.
func (l *Lab) nodesMissing(ctx context.Context) string {
	for _, n := range l.Nodes() {
		if _, err := os.Stat(filepath.Join(n.Real.Config().CNIConfDir(), cni.ConflistName)); err != nil {
			return fmt.Sprintf("node %s: no %s yet", n.Name, cni.ConflistName)
		}
		node, err := l.Kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if !nodeReady(node) {
			return fmt.Sprintf("node %s not Ready", n.Name)
		}
	}
	return ""
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
