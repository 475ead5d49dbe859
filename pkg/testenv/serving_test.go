package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

func TestServingCertIsValidForEveryAddress(t *testing.T) {
	chain, _, err := issueServingCert([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(198, 18, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	leaf, pool := parseChain(t, chain)
	for _, host := range []string{"127.0.0.1", "198.18.0.1", "kubernetes.default.svc", "localhost"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("serving certificate for %s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "198.18.0.2"}); err == nil {
		t.Error("serving certificate valid for an address it was not issued for")
	}
}

// parseChain returns the first certificate of a PEM chain and a pool of all of them (how
// clients given the chain as CA data trust it).
func parseChain(t *testing.T, chain []byte) (*x509.Certificate, *x509.CertPool) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(chain) {
		t.Fatal("chain holds no certificate")
	}
	block, _ := pem.Decode(chain)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf, pool
}

// TestServingIPsAndScheduler: with ServingIPs the API server presents a certificate valid
// for them (the admin client still works), and with Scheduler a pod without a node is
// bound to the one schedulable Node.
func TestServingIPsAndScheduler(t *testing.T) {
	skipShort(t)
	relay := netip.MustParseAddr("198.18.0.1")
	e := StartT(t, Options{Scheduler: true, ServingIPs: []netip.Addr{relay}})
	if e.Timings.SchedulerReady == 0 || !strings.Contains(e.Timings.String(), "kube-scheduler ready") {
		t.Errorf("timings %v lack the scheduler", e.Timings)
	}
	_, pool := parseChain(t, e.Config.CAData)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(e.URL, "https://"), &tls.Config{RootCAs: pool, ServerName: relay.String()})
	if err != nil {
		t.Fatalf("TLS to the API server as %s: %v", relay, err)
	}
	conn.Close()
	kube := kubernetes.NewForConfigOrDie(e.Config)
	ctx := t.Context()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	node, err = kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// TaintNodesByCondition admission taints a new Node not-ready; without
	// kube-controller-manager nothing lifts it.
	node.Spec.Taints = nil
	if node, err = kube.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	node.Status.Allocatable = corev1.ResourceList{corev1.ResourcePods: resource.MustParse("10"),
		corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	if _, err := kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
		return err == nil && p.Spec.NodeName == "n1", nil
	})
	if err != nil {
		t.Fatalf("pod not bound to n1 by kube-scheduler: %v", err)
	}
}
