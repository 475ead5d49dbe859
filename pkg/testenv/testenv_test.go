package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// skipShort skips integration tests under -short; otherwise StartT fails when the
// binaries are missing.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver; skipped with -short")
	}
}

func TestEnvServesNetworkAPI(t *testing.T) {
	skipShort(t)
	e := StartT(t, Options{})
	ctx := t.Context()
	kube := kubernetes.NewForConfigOrDie(e.Config)
	net := versioned.NewForConfigOrDie(e.Config)

	createNamespace(t, kube, "tenant-a")
	wantNetNS := &networkv1.NetNamespace{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant-a"},
		NetName:    "tenant-a",
		NetID:      4242,
		EgressIPs:  []networkv1.NetNamespaceEgressIP{"192.0.2.10"},
	}
	if _, err := net.NetworkV1().NetNamespaces().Create(ctx, wantNetNS, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating NetNamespace: %v", err)
	}
	gotNetNS, err := net.NetworkV1().NetNamespaces().Get(ctx, "tenant-a", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading NetNamespace back: %v", err)
	}
	if gotNetNS.NetName != "tenant-a" || gotNetNS.NetID != 4242 || len(gotNetNS.EgressIPs) != 1 || gotNetNS.EgressIPs[0] != "192.0.2.10" {
		t.Errorf("NetNamespace read back = %+v", gotNetNS)
	}

	wantHS := &networkv1.HostSubnet{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Host:       "node-1",
		HostIP:     "192.0.2.1",
		Subnet:     "10.128.2.0/23",
	}
	if _, err := net.NetworkV1().HostSubnets().Create(ctx, wantHS, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating HostSubnet: %v", err)
	}
	gotHS, err := net.NetworkV1().HostSubnets().Get(ctx, "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading HostSubnet back: %v", err)
	}
	if gotHS.Host != wantHS.Host || gotHS.HostIP != wantHS.HostIP || gotHS.Subnet != wantHS.Subnet {
		t.Errorf("HostSubnet read back = %+v, want host/hostIP/subnet of %+v", gotHS, wantHS)
	}
	list, err := net.NetworkV1().HostSubnets().List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Errorf("listing HostSubnets: %d items, %v", len(list.Items), err)
	}
}

func TestEnvKubeconfigFile(t *testing.T) {
	skipShort(t)
	e := StartT(t, Options{})
	cfg, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		t.Fatalf("loading %s: %v", e.Kubeconfig, err)
	}
	if cfg.Host != e.URL || !strings.HasPrefix(e.URL, "https://127.0.0.1:") {
		t.Errorf("kubeconfig server %q, Env.URL %q", cfg.Host, e.URL)
	}
	kube := kubernetes.NewForConfigOrDie(cfg)
	if _, err := kube.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
		t.Errorf("admin kubeconfig cannot read namespace default: %v", err)
	}
}

func TestConfigForIsSubjectToRBAC(t *testing.T) {
	skipShort(t)
	e := StartT(t, Options{})
	ctx := t.Context()
	admin := kubernetes.NewForConfigOrDie(e.Config)
	createNamespace(t, admin, "rbac")

	const sa = "system:serviceaccount:rbac:sdn-node"
	asSA := versioned.NewForConfigOrDie(e.ConfigFor(sa, "system:serviceaccounts", "system:serviceaccounts:rbac"))
	if _, err := asSA.NetworkV1().HostSubnets().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing HostSubnets as %s before any binding: err = %v, want Forbidden", sa, err)
	}
	grantHostSubnetReader(t, admin, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "sdn-node", Namespace: "rbac"})
	if err := eventually(ctx, func() error {
		_, err := asSA.NetworkV1().HostSubnets().List(ctx, metav1.ListOptions{})
		return err
	}); err != nil {
		t.Errorf("listing HostSubnets as %s after binding: %v", sa, err)
	}
	if err := asSA.NetworkV1().HostSubnets().Delete(ctx, "x", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("deleting a HostSubnet as a reader: err = %v, want Forbidden", err)
	}

	// Impersonation by the admin reaches the same decision as the minted identity.
	imp := rest.CopyConfig(e.Config)
	imp.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:rbac:other"}
	if _, err := versioned.NewForConfigOrDie(imp).NetworkV1().HostSubnets().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing HostSubnets impersonating an unbound ServiceAccount: err = %v, want Forbidden", err)
	}
}

func TestEnvWithControllerManagerDeletesNamespaces(t *testing.T) {
	skipShort(t)
	e := StartT(t, Options{ControllerManager: true})
	ctx := t.Context()
	kube := kubernetes.NewForConfigOrDie(e.Config)
	createNamespace(t, kube, "doomed")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "content", Namespace: "doomed"}}
	if _, err := kube.CoreV1().ConfigMaps("doomed").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ConfigMap: %v", err)
	}
	begin := time.Now()
	if err := kube.CoreV1().Namespaces().Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting namespace: %v", err)
	}
	err := eventually(ctx, func() error {
		ns, err := kube.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("namespace still present, phase %s", ns.Status.Phase)
	})
	if err != nil {
		t.Fatalf("namespace deletion did not complete (namespace controller not running?): %v", err)
	}
	t.Logf("namespace deleted in %v", time.Since(begin))

	// The endpointslice and serviceaccount controllers run too.
	createNamespace(t, kube, "live")
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "live"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80}},
		},
	}
	if _, err := kube.CoreV1().Services("live").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Service: %v", err)
	}
	err = eventually(ctx, func() error {
		l, err := kube.DiscoveryV1().EndpointSlices("live").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=web"})
		if err == nil && len(l.Items) == 0 {
			err = errors.New("no EndpointSlice for service live/web")
		}
		return err
	})
	if err != nil {
		t.Errorf("endpointslice controller: %v", err)
	}
	err = eventually(ctx, func() error {
		_, err := kube.CoreV1().ServiceAccounts("live").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		t.Errorf("serviceaccount controller: %v", err)
	}
}

func TestStopKillsEverythingAndIsIdempotent(t *testing.T) {
	skipShort(t)
	e, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	procs := append([]*process(nil), e.procs...)
	if len(procs) != 2 {
		t.Errorf("running processes: %d, want 2 (etcd, kube-apiserver)", len(procs))
	}
	begin := time.Now()
	if err := e.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	t.Logf("stop took %v", time.Since(begin))
	for _, p := range procs {
		if !p.exited() {
			t.Errorf("%s (pid %d) still running after Stop", p.name, p.cmd.Process.Pid)
		}
	}
	if _, err := os.Stat(e.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s still exists after Stop: %v", e.Dir, err)
	}
	if err := e.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStartKeepsCallerDir(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	e := StartT(t, Options{Dir: dir})
	if e.Dir != dir {
		t.Errorf("Env.Dir = %q, want %q", e.Dir, dir)
	}
	if err := e.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, f := range []string{"etcd.log", "kube-apiserver.log", adminKubeconfig} {
		if _, err := os.Stat(dir + "/" + f); err != nil {
			t.Errorf("%s missing after Stop of a caller-owned Dir: %v", f, err)
		}
	}
}

func createNamespace(t *testing.T, kube kubernetes.Interface, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := kube.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	if _, err := kube.CoreV1().Namespaces().Get(t.Context(), name, metav1.GetOptions{}); err != nil {
		t.Fatalf("reading namespace %s back: %v", name, err)
	}
}

func grantHostSubnetReader(t *testing.T, kube kubernetes.Interface, subject rbacv1.Subject) {
	t.Helper()
	ctx := t.Context()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "hostsubnet-reader"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{networkv1.GroupName},
			Resources: []string{"hostsubnets"},
			Verbs:     []string{"get", "list", "watch"},
		}},
	}
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ClusterRole: %v", err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "hostsubnet-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{subject},
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ClusterRoleBinding: %v", err)
	}
}

// eventually retries f every 100ms for up to 60s and returns its last error.
func eventually(ctx context.Context, f func() error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		last = f()
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last: %v)", err, last)
	}
	return nil
}

func TestStartFailureQuotesLogAndCleansUp(t *testing.T) {
	skipShort(t)
	_, err := Start(t.Context(), Options{ExtraAPIServerArgs: []string{"--no-such-flag"}})
	if err == nil {
		t.Fatal("Start with a bad kube-apiserver flag succeeded")
	}
	msg := err.Error()
	t.Logf("start error, as expected:\n%s", msg)
	for _, want := range []string{"kube-apiserver", "exited", "unknown flag: --no-such-flag", "kube-apiserver.log"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
	_, after, ok := strings.Cut(msg, "--- last lines of ")
	if !ok {
		t.Fatalf("error quotes no log:\n%s", msg)
	}
	dir := filepath.Dir(strings.Fields(after)[0])
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary directory %s left behind: %v", dir, err)
	}
	if pids := processesMentioning(t, dir); len(pids) > 0 {
		t.Errorf("processes still running with %s on their command line: %v", dir, pids)
	}
}

// processesMentioning lists live (non-zombie) pids whose command line contains s.
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var pids []string
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) && alive(pid) {
			pids = append(pids, ent.Name())
		}
	}
	return pids
}

func TestRestartOnSameDirKeepsObjects(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	first := StartT(t, Options{Dir: dir})
	createNamespace(t, kubernetes.NewForConfigOrDie(first.Config), "persistent")
	if err := first.Stop(); err != nil {
		t.Fatalf("stopping the first Env: %v", err)
	}
	second := StartT(t, Options{Dir: dir})
	if second.URL == first.URL {
		t.Logf("same port reused: %s", second.URL)
	}
	kube := kubernetes.NewForConfigOrDie(second.Config)
	if _, err := kube.CoreV1().Namespaces().Get(t.Context(), "persistent", metav1.GetOptions{}); err != nil {
		t.Errorf("namespace created before the restart: %v", err)
	}
}
