package lab

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestWaitNothingMissingKeepsTheReason: when the wait times out, the error names what was
// missing, not the deadline error of the last poll the timeout cut short.
func TestWaitNothingMissingKeepsTheReason(t *testing.T) {
	err := waitNothingMissing(context.Background(), 10*time.Millisecond, 100*time.Millisecond, func(ctx context.Context) string {
		if dl, _ := ctx.Deadline(); time.Until(dl) < 40*time.Millisecond {
			return "client rate limiter Wait returned an error: " + context.DeadlineExceeded.Error()
		}
		return "DaemonSet sdn-node: 3 nodes, 3 scheduled, 3 updated, 2 ready"
	})
	if err == nil || !strings.Contains(err.Error(), "2 ready") || strings.Contains(err.Error(), "rate limiter") {
		t.Fatalf("error %v, want the DaemonSet's state", err)
	}
	calls := 0
	if err := waitNothingMissing(context.Background(), time.Millisecond, time.Second, func(context.Context) string {
		if calls++; calls < 3 {
			return "not yet"
		}
		return ""
	}); err != nil || calls != 3 {
		t.Fatalf("err %v after %d polls, want nil after 3", err, calls)
	}
}

// TestPodStates: a rollout error describes each pod's node, phase, and its containers'
// waiting and last-exit reasons.
func TestPodStates(t *testing.T) {
	l := &Lab{Kube: fake.NewClientset(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sdn-node-x1", Namespace: "ovs-sdn"},
		Spec:       corev1.PodSpec{NodeName: "node2"},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Message: "containers with unready status: [sdn-node]"}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "sdn-node", RestartCount: 4,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: "ovsdb: connection refused\n"}},
			}},
		},
	})}
	got := l.podStates("ovs-sdn")
	for _, want := range []string{`sdn-node-x1 on "node2": Running`, "containers with unready status", "restarts=4",
		"waiting CrashLoopBackOff back-off 40s", "last exit 1 Error ovsdb: connection refused"} {
		if !strings.Contains(got, want) {
			t.Errorf("pod states lack %q:\n%s", want, got)
		}
	}
}
