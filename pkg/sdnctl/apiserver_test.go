package sdnctl

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ovs-sdn/ovs-sdn/pkg/testenv"
)

// runResult is what one CLI run left behind.
type runResult struct {
	stdout, stderr string
	code           int
}

// runSdnctl runs the sdnctl command tree in-process, as the binary would.
func runSdnctl(t *testing.T, opts Options, args ...string) runResult {
	t.Helper()
	var out, errOut bytes.Buffer
	opts.Out, opts.ErrOut = &out, &errOut
	code := Main(context.Background(), args, opts)
	return runResult{stdout: out.String(), stderr: errOut.String(), code: code}
}

// runKubectl runs the real kubectl, when installed, with the same kubeconfig.
func runKubectl(t *testing.T, kubeconfig string, args ...string) runResult {
	t.Helper()
	path, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed; the cross-check needs it")
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(path, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running kubectl: %v", err)
	}
	return runResult{stdout: out.String(), stderr: errOut.String(), code: code}
}

// createFixtures creates the namespaces and every fixture object through the dynamic client,
// so the explicitly empty lists of hs/node3 reach the server as they are.
func createFixtures(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	kube := kubernetes.NewForConfigOrDie(env.Config)
	for _, ns := range fixtureNamespaces {
		_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating namespace %s: %v", ns, err)
		}
	}
	dyn := dynamic.NewForConfigOrDie(env.Config)
	reg, err := loadResources()
	if err != nil {
		t.Fatal(err)
	}
	for resource, objs := range fixtures() {
		res, err := reg.lookup(resource)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range objs {
			u := toUnstructured(t, obj)
			if _, err := resourceClient(dyn, res, u.GetNamespace(), false).Create(ctx, &u, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating %s %s: %v", resource, u.GetName(), err)
			}
		}
	}
}

// TestGetAgainstAPIServer runs `sdnctl get` against a real kube-apiserver serving our CRDs:
// the output must equal the pure goldens (so the printer's view of the objects is the
// server's), errors must read and exit like kubectl's, and — when kubectl is installed —
// stdout, stderr and exit code must equal kubectl's for the same arguments.
func TestGetAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kube-apiserver")
	}
	env := testenv.StartT(t, testenv.Options{})
	createFixtures(t, env)
	// The objects are seconds old: 30 minutes on top prints "30m", like the goldens.
	opts := Options{Now: func() time.Time { return time.Now().Add(fixtureAge) }}

	t.Run("goldens", func(t *testing.T) {
		for _, c := range goldenCases {
			t.Run(c.golden, func(t *testing.T) {
				r := runSdnctl(t, opts, append([]string{"get", "--kubeconfig", env.Kubeconfig}, c.args...)...)
				if r.code != ExitOK || r.stderr != "" {
					t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
				}
				assertGolden(t, filepath.Join("get", c.golden), r.stdout)
			})
		}
	})

	t.Run("not found", func(t *testing.T) {
		r := runSdnctl(t, opts, "get", "--kubeconfig", env.Kubeconfig, "hostsubnet", "nope")
		want := runResult{stderr: `Error from server (NotFound): hostsubnets.network.openshift.io "nope" not found` + "\n", code: ExitFailure}
		if diff := cmp.Diff(want, r, cmp.AllowUnexported(runResult{})); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("kubeconfig from KUBECONFIG", func(t *testing.T) {
		t.Setenv("KUBECONFIG", env.Kubeconfig)
		r := runSdnctl(t, opts, "get", "cn", "-o", "name")
		if r.code != ExitOK || r.stdout != "clusternetwork.network.openshift.io/default\n" {
			t.Errorf("got %+v", r)
		}
	})

	t.Run("--context", func(t *testing.T) {
		path, good := kubeconfigWithBrokenCurrentContext(t, env.Kubeconfig)
		want := "The connection to the server 127.0.0.1:1 was refused - did you specify the right host or port?\n"
		if r := runSdnctl(t, opts, "--kubeconfig", path, "get", "cn", "-o", "name"); r.code != ExitFailure || r.stderr != want {
			t.Errorf("current context with a dead server: got %+v, want exit 1 and %q", r, want)
		}
		r := runSdnctl(t, opts, "--kubeconfig", path, "--context", good, "get", "cn", "-o", "name")
		if r.code != ExitOK || r.stdout != "clusternetwork.network.openshift.io/default\n" {
			t.Errorf("--context %s: got %+v", good, r)
		}
	})

	t.Run("same as kubectl", func(t *testing.T) {
		for _, args := range kubectlCrossChecks {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				want := runKubectl(t, env.Kubeconfig, args...)
				got := runSdnctl(t, Options{}, append([]string{"--kubeconfig", env.Kubeconfig}, args...)...)
				if diff := cmp.Diff(want, got, cmp.AllowUnexported(runResult{})); diff != "" {
					t.Errorf("sdnctl differs from kubectl (-kubectl +sdnctl):\n%s", diff)
				}
			})
		}
	})
}

// kubectlCrossChecks are compared byte for byte with kubectl. Tables with an AGE column are
// left out (the age could tick between the two runs); the goldens cover them.
var kubectlCrossChecks = [][]string{
	{"get", "clusternetworks"},
	{"get", "hostsubnets"},
	{"get", "hs", "-o", "wide"},
	{"get", "netnamespaces"},
	{"get", "netns", "proj-b", "default"},
	{"get", "hs", "-l", "zone=b"},
	{"get", "enp", "-A", "-o", "name"},
	{"get", "hs", "node1", "-o", "yaml"},
	{"get", "netns", "proj-c", "-o", "json"},
	{"get", "hs", "-l", "zone=b", "-o", "json"},
	{"get", "enp", "-n", "proj-b", "-o", "yaml"},
	{"get", "cn", "-o", "yaml"},
	{"get", "hs", "nope"},
	{"get", "hs", "node1", "nope", "node2"},
	{"get", "hs", "node1", "nope", "-o", "yaml"},
	{"get", "hs", "nope", "-o", "yaml"},
	{"get", "netns", "-l", "x=y"},
	{"get", "netns", "-l", "x=y", "-o", "yaml"},
	{"get", "enp"},
	{"get", "enp", "-n", "nope"},
	{"get", "enp", "-A", "-l", "x=y"},
	{"get", "bogus"},
}

// kubeconfigWithBrokenCurrentContext copies kubeconfig, adding a current context "broken"
// whose server refuses connections; it returns the new file and the working context.
func kubeconfigWithBrokenCurrentContext(t *testing.T, kubeconfig string) (path, good string) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	good = cfg.CurrentContext
	ctx := cfg.Contexts[good].DeepCopy()
	ctx.Cluster = "broken"
	cluster := cfg.Clusters[cfg.Contexts[good].Cluster].DeepCopy()
	cluster.Server = "https://127.0.0.1:1"
	cfg.Clusters["broken"] = cluster
	cfg.Contexts["broken"] = ctx
	cfg.CurrentContext = "broken"
	path = filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path, good
}
