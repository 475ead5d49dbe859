package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubefake "k8s.io/client-go/kubernetes/fake"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	networkfake "github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned/fake"
)

func TestParseChangeNetwork(t *testing.T) {
	for _, tc := range []struct {
		in     string
		action changeAction
		target string
		ok     bool
	}{
		{"global", actionGlobal, "", true},
		{" isolate ", actionIsolate, "", true},
		{"join:web", actionJoin, "web", true},
		{"join:", "", "", false},
		{"join", "", "", false},
		{"Global", "", "", false},
		{"", "", "", false},
	} {
		a, target, err := parseChangeNetwork(tc.in)
		if (err == nil) != tc.ok || a != tc.action || target != tc.target {
			t.Errorf("parseChangeNetwork(%q) = %q, %q, %v; want %q, %q, ok=%v", tc.in, a, target, err, tc.action, tc.target, tc.ok)
		}
	}
}

func TestWriteRejected(t *testing.T) {
	gr := schema.GroupResource{Group: "network.openshift.io", Resource: "hostsubnets"}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{apierrors.NewForbidden(gr, "x", errors.New("no")), true},
		{apierrors.NewInvalid(schema.GroupKind{Kind: "HostSubnet"}, "x", nil), true},
		{apierrors.NewTimeoutError("slow", 1), false},
		{apierrors.NewServerTimeout(gr, "create", 1), false},
		{apierrors.NewInternalError(errors.New("etcd")), false},
		{apierrors.NewGenericServerResponse(http.StatusServiceUnavailable, "create", gr, "x", "", 1, false), false},
		{context.DeadlineExceeded, false},
		{fmt.Errorf("wrapped: %w", apierrors.NewBadRequest("bad")), true},
	} {
		if got := writeRejected(tc.err); got != tc.want {
			t.Errorf("writeRejected(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestOptionsComplete(t *testing.T) {
	if _, err := (Options{}).complete(); err == nil {
		t.Error("empty Options accepted")
	}
	base := Options{Kube: kubefake.NewClientset(), Network: networkfake.NewSimpleClientset(), Identity: "a"}
	o, err := base.complete()
	if err != nil {
		t.Fatal(err)
	}
	if o.LeaseDuration != 137*time.Second || o.RenewDeadline != 107*time.Second || o.RetryPeriod != 26*time.Second ||
		o.LeaseNamespace != "ovs-sdn" || o.LeaseName != "sdn-controller" || o.VNIDRange != (VNIDRange{10, 1<<24 - 1}) || o.Status == nil {
		t.Errorf("defaults not applied: %+v", o)
	}
	bad := base
	bad.LeaseDuration, bad.RenewDeadline = 3*time.Second, 4*time.Second
	if _, err := bad.complete(); err == nil {
		t.Error("RenewDeadline >= LeaseDuration accepted")
	}
	bad = base
	bad.VNIDRange = VNIDRange{Min: 5, Max: 20}
	if _, err := bad.complete(); err == nil {
		t.Error("VNIDRange reaching below 10 accepted")
	}
}

func TestStatus(t *testing.T) {
	s := &Status{}
	if s.Ready() == nil {
		t.Error("ready before the ClusterNetwork was read")
	}
	s.setConfigured()
	if err := s.Ready(); err != nil {
		t.Errorf("standby not ready: %v", err)
	}
	s.setLeading(true)
	if s.Ready() == nil || s.Healthy() != nil {
		t.Error("a leader is not ready before its caches sync, but healthy")
	}
	s.leadingFrom = time.Now().Add(-informerSyncGrace - time.Second)
	if s.Healthy() == nil {
		t.Error("a leader whose caches never synced is healthy")
	}
	s.setSynced()
	if s.Ready() != nil || s.Healthy() != nil || !s.Leading() {
		t.Error("synced leader not ready and healthy")
	}
}

// TestRunFake drives Run through client-go fakes (a narrow seam; the
// acceptance tests use a real API server): it leads, creates one
// HostSubnet per Node in OpenShift's order and a NetNamespace per
// Namespace, and reports exhaustion with an Event instead of stopping.
func TestRunFake(t *testing.T) {
	kube := kubefake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}},
	)
	for i := range 3 {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", i), UID: "uid"}}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("192.168.0.%d", i+1)}}
		if _, err := kube.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	network := networkfake.NewSimpleClientset(&networkv1.ClusterNetwork{
		ObjectMeta:      metav1.ObjectMeta{Name: "default"},
		ClusterNetworks: []networkv1.ClusterNetworkEntry{{CIDR: "10.128.0.0/29", HostSubnetLength: 2}},
		ServiceNetwork:  "172.30.0.0/16",
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	status := &Status{}
	go func() {
		done <- Run(ctx, Options{Kube: kube, Network: network, Identity: "unit", Status: status,
			LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hss, _ := network.NetworkV1().HostSubnets().List(ctx, metav1.ListOptions{})
		nss, _ := network.NetworkV1().NetNamespaces().List(ctx, metav1.ListOptions{})
		events, _ := kube.CoreV1().Events("").List(ctx, metav1.ListOptions{})
		exhausted := false
		for _, e := range events.Items {
			exhausted = exhausted || (e.Reason == reasonSubnetAllocationFail && e.Type == corev1.EventTypeWarning)
		}
		if len(hss.Items) == 2 && len(nss.Items) == 2 && exhausted {
			got := map[string]bool{hss.Items[0].Subnet: true, hss.Items[1].Subnet: true}
			if !got["10.128.0.0/30"] || !got["10.128.0.4/30"] {
				t.Errorf("subnets %v, want 10.128.0.0/30 and 10.128.0.4/30", got)
			}
			for _, ns := range nss.Items {
				if (ns.Name == "default") != (ns.NetID == 0) || (ns.Name != "default" && ns.NetID < 10) {
					t.Errorf("NetNamespace %s netid %d", ns.Name, ns.NetID)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged: %d HostSubnets, %d NetNamespaces, exhaustion event %v, status %v", len(hss.Items), len(nss.Items), exhausted, status.Ready())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
