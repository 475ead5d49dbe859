package kubelet

import (
	"encoding/binary"
	"hash/crc32"
	"net"
	"net/netip"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{})
	for _, want := range []string{"NodeName", "NodeIP", "Kube", "CNIConfDir", "PodNetNSPrefix"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(Config{}) = %v, want an error naming %s", err, want)
		}
	}
	k, err := New(Config{NodeName: "n", NodeIP: netip.MustParseAddr("192.0.2.1"), Kube: fake.NewClientset(),
		CNIConfDir: "/c", CNIBinDir: "/b", PodNetNSPrefix: "lab-n-"})
	if err != nil {
		t.Fatal(err)
	}
	if k.cfg.NodeStatusPeriod != DefaultNodeStatusPeriod || k.cfg.Workers != 4 {
		t.Errorf("defaults not applied: %+v", k.cfg)
	}
	if got := k.podNetNSName(sandboxID("uid-1")); !strings.HasPrefix(got, "lab-n-") || len(got) != len("lab-n-")+10 {
		t.Errorf("podNetNSName = %q", got)
	}
}

func TestSandboxIDStablePerUID(t *testing.T) {
	a, b := sandboxID("u1"), sandboxID("u2")
	if a != sandboxID("u1") || a == b || len(a) != 64 {
		t.Errorf("sandboxID: %q %q", a, b)
	}
}

func TestCRC32cVector(t *testing.T) {
	// RFC 3720 B.4 / the common check value of CRC-32C.
	if got := crc32.Checksum([]byte("123456789"), castagnoli); got != 0xe3069283 {
		t.Fatalf("crc32c = %#x", got)
	}
}

func TestSCTPInitRoundTrip(t *testing.T) {
	pkt := sctpInit(40000, 9000)
	if len(pkt) != 32 || pkt[12] != sctpChunkInit || binary.BigEndian.Uint32(pkt[4:]) != 0 {
		t.Fatalf("bad INIT packet % x", pkt)
	}
	if binary.BigEndian.Uint32(pkt[16:]) == 0 {
		t.Error("initiate tag is 0")
	}
	port, ok := parseSCTPInit(pkt)
	if !ok || port != 9000 {
		t.Fatalf("parse = %d %v, want 9000 true", port, ok)
	}
	bad := append([]byte(nil), pkt...)
	bad[20] ^= 1
	if _, ok := parseSCTPInit(bad); ok {
		t.Error("corrupted packet accepted")
	}
	notInit := append([]byte(nil), pkt...)
	notInit[12] = 6 // ABORT
	binary.LittleEndian.PutUint32(notInit[8:], 0)
	binary.LittleEndian.PutUint32(notInit[8:], crc32.Checksum(notInit, castagnoli))
	if _, ok := parseSCTPInit(notInit); ok {
		t.Error("non-INIT chunk accepted")
	}
}

func TestResultIPsOnlyFromSandbox(t *testing.T) {
	mk := func(s string) net.IPNet { ip, n, _ := net.ParseCIDR(s); n.IP = ip; return *n }
	res := &current.Result{CNIVersion: "1.0.0",
		Interfaces: []*current.Interface{{Name: "veth1"}, {Name: "eth0", Sandbox: "/run/netns/p"}},
		IPs: []*current.IPConfig{
			{Address: mk("10.0.0.1/24"), Interface: current.Int(0)},
			{Address: mk("10.128.0.5/23"), Interface: current.Int(1)},
		}}
	ips, err := resultIPs(res, "/run/netns/p")
	if err != nil || len(ips) != 1 || ips[0] != netip.MustParseAddr("10.128.0.5") {
		t.Fatalf("resultIPs = %v, %v", ips, err)
	}
	if _, err := resultIPs(res, "/run/netns/other"); err == nil {
		t.Error("no error when nothing is in the sandbox")
	}
}

func TestRunningStatusKeepsTransitionTimes(t *testing.T) {
	k := &Kubelet{cfg: Config{NodeIP: netip.MustParseAddr("192.0.2.1")}}
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "x"}}}}
	sb := &sandbox{id: sandboxID("u"), ips: []netip.Addr{netip.MustParseAddr("10.128.0.5")}}
	t0 := metav1.Unix(1000, 0)
	k.runningStatus(&pod.Status, pod, sb, t0)
	before := pod.Status.DeepCopy()
	k.runningStatus(&pod.Status, pod, sb, metav1.Unix(2000, 0))
	if pod.Status.Conditions[0].LastTransitionTime != t0 || !pod.Status.ContainerStatuses[0].State.Running.StartedAt.Equal(&t0) {
		t.Errorf("times moved: %+v", pod.Status)
	}
	if pod.Status.PodIP != "10.128.0.5" || len(pod.Status.PodIPs) != 1 || pod.Status.Phase != corev1.PodRunning {
		t.Errorf("status = %+v", pod.Status)
	}
	if len(pod.Status.Conditions) != len(before.Conditions) {
		t.Errorf("conditions duplicated: %d → %d", len(before.Conditions), len(pod.Status.Conditions))
	}
}

// TestTapAttachesOnlyToMarkedPods: the tap serves the lab's own pods and never a pod that
// serves its ports itself (an e2e test's agnhost, CoreDNS), whose ports its sockets would
// take.
func TestTapAttachesOnlyToMarkedPods(t *testing.T) {
	running := func(annotations map[string]string, hostNetwork bool) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: annotations},
			Spec:   corev1.PodSpec{HostNetwork: hostNetwork},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.128.0.5"}}
	}
	marked := map[string]string{TapAnnotation: "true"}
	for _, c := range []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"lab pod", running(marked, false), true},
		{"unmarked pod", running(nil, false), false},
		{"marked false", running(map[string]string{TapAnnotation: "false"}, false), false},
		{"host network", running(marked, true), false},
		{"pending", func() *corev1.Pod { p := running(marked, false); p.Status.Phase = corev1.PodPending; return p }(), false},
	} {
		if got := attachable(c.pod); got != c.want {
			t.Errorf("%s: attachable = %v, want %v", c.name, got, c.want)
		}
	}
}
