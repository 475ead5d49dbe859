package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
)

// testClusterDNS: the lab's cluster DNS (CoreDNS behind kube-system/kube-dns at
// lab.ClusterDNSIP) serves the lab's pods as Kubernetes' e2e tests expect. A pod's
// resolv.conf names it with the cluster.local search path; from the pod (glibc's resolver,
// getent) kubernetes.default.svc.cluster.local is the kubernetes Service's ClusterIP, a
// Service's short name its own ClusterIP, a headless Service's name its pod's address,
// and an unknown name does not resolve; a TCP connection by Service name (Go's resolver,
// agnhost connect) reaches the pod. Host-network pods keep the node's resolver with
// dnsPolicy ClusterFirst and get the cluster DNS, which they reach too, with
// ClusterFirstWithHostNet.
func testClusterDNS(t *testing.T, l *lab.Lab) {
	ctx := context.Background()
	const ns = "e2e-dns"
	nodes := l.Nodes()
	createPod(t, l, agnhostPod(ns, "web", nodes[0].Name, "netexec", "--http-port=8080"))
	createPod(t, l, agnhostPod(ns, "client", nodes[len(nodes)-1].Name, "pause"))
	hostDefault, hostCluster := hostNetworkPod(ns, "host-default", nodes[1].Name, corev1.DNSClusterFirst),
		hostNetworkPod(ns, "host-cluster", nodes[1].Name, corev1.DNSClusterFirstWithHostNet)
	createPod(t, l, hostDefault)
	createPod(t, l, hostCluster)
	web := runningPod(t, l, ns, "web")
	vip, err := l.EnsureService(ctx, ns, "web", map[string]string{"app": "web"}, 8080)
	must(t, err)
	headless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-headless"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt32(8080)}}}}
	_, err = l.Kube.CoreV1().Services(ns).Create(ctx, headless, metav1.CreateOptions{})
	must(t, err)
	kubeSvc, err := l.Kube.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	must(t, err)
	runningPod(t, l, ns, "client")

	resolv := execIn(t, l, ns, "client", "cat", "/etc/resolv.conf")
	for _, want := range []string{"nameserver " + lab.ClusterDNSIP.String(), "search e2e-dns.svc.cluster.local svc.cluster.local cluster.local"} {
		if !strings.Contains(resolv, want) {
			t.Errorf("client's /etc/resolv.conf lacks %q:\n%s", want, resolv)
		}
	}
	for name, want := range map[string]string{"kubernetes.default.svc.cluster.local": kubeSvc.Spec.ClusterIP,
		"web": vip.String(), "web-headless": web.Status.PodIP, "web.e2e-dns.svc": vip.String()} {
		checkResolves(t, l, ns, "client", name, want)
	}
	if out, err := l.Kubectl(ctx, "-n", ns, "exec", "client", "--", "getent", "ahostsv4", "no-such-service"); err == nil {
		t.Errorf("no-such-service resolved: %s", out)
	}
	if out, err := l.Kubectl(ctx, "-n", ns, "exec", "client", "--", "/agnhost", "connect", "--timeout=5s", "web:8080"); err != nil {
		t.Errorf("TCP client → web:8080 by Service name: %v %s", err, out)
	}
	checkHostNetworkDNS(t, l, ns)
}

// checkHostNetworkDNS: a ClusterFirst host-network pod runs without the cluster DNS in its
// resolv.conf; a ClusterFirstWithHostNet one resolves the kubernetes Service through it.
func checkHostNetworkDNS(t *testing.T, l *lab.Lab, ns string) {
	runningPod(t, l, ns, "host-default")
	runningPod(t, l, ns, "host-cluster")
	if resolv := execIn(t, l, ns, "host-default", "cat", "/etc/resolv.conf"); strings.Contains(resolv, lab.ClusterDNSIP.String()) {
		t.Errorf("host-network ClusterFirst pod's resolv.conf names the cluster DNS:\n%s", resolv)
	}
	kubeSvc, err := l.Kube.CoreV1().Services("default").Get(context.Background(), "kubernetes", metav1.GetOptions{})
	must(t, err)
	checkResolves(t, l, ns, "host-cluster", "kubernetes.default.svc.cluster.local", kubeSvc.Spec.ClusterIP)
}

func hostNetworkPod(ns, name, node string, policy corev1.DNSPolicy) *corev1.Pod {
	p := agnhostPod(ns, name, node, "pause")
	p.Spec.HostNetwork = true
	p.Spec.DNSPolicy = policy
	return p
}

// execIn runs argv in the pod's container (kubectl exec) and fails the test on error.
func execIn(t *testing.T, l *lab.Lab, ns, pod string, argv ...string) string {
	t.Helper()
	out, err := l.Kubectl(context.Background(), append([]string{"-n", ns, "exec", pod, "--"}, argv...)...)
	if err != nil {
		t.Fatalf("exec in %s/%s: %v", ns, pod, err)
	}
	return out
}

// checkResolves: within 30 s (a Service created a moment ago may still be negatively
// cached), `getent ahostsv4 name` in the pod answers exactly want.
func checkResolves(t *testing.T, l *lab.Lab, ns, pod, name, want string) {
	t.Helper()
	var got []string
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		out, err := l.Kubectl(ctx, "-n", ns, "exec", pod, "--", "getent", "ahostsv4", name)
		got, last = addresses(out), err
		return err == nil && slices.Equal(got, []string{want}), nil
	})
	if err != nil {
		t.Errorf("in %s/%s, %s resolves to %v (%v), want %s", ns, pod, name, got, last, want)
	}
}

// addresses are the distinct addresses of getent ahosts output, in order.
func addresses(out string) []string {
	var ips []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && !slices.Contains(ips, f[0]) {
			ips = append(ips, f[0])
		}
	}
	return ips
}
