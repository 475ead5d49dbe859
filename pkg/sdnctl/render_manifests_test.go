package sdnctl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runRender(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), append([]string{"render-manifests"}, args...), Options{Out: &out, ErrOut: &errOut})
	return out.String(), errOut.String(), code
}

func TestRenderManifestsCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("mode: Multitenant\nmtu: 8950\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if stdout, stderr, code := runRender(t, "--config", cfg, "--output-dir", out); code != ExitOK || stdout != "" || stderr != "" {
		t.Fatalf("render-manifests: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	cn, err := os.ReadFile(filepath.Join(out, "004-clusternetwork.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(cn, []byte("pluginName: redhat/openshift-ovs-multitenant")) || !bytes.Contains(cn, []byte("mtu: 8950")) {
		t.Errorf("ClusterNetwork does not follow the config:\n%s", cn)
	}
	if _, err := os.Stat(filepath.Join(out, "005-multitenant.yaml")); err != nil {
		t.Errorf("multitenant NetNamespaces not rendered: %v", err)
	}
}

func TestRenderManifestsToStdoutWithDefaults(t *testing.T) {
	stdout, stderr, code := runRender(t)
	if code != ExitOK || stderr != "" {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"kind: DaemonSet", "kind: Deployment", "pluginName: redhat/openshift-ovs-networkpolicy", "hostSubnetLength: 9"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
}

func TestRenderManifestsRefusesBadConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("clusterNetwork: [{cidr: 10.128.0.0/14, hostPrefix: 31}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runRender(t, "--config", cfg)
	if code != ExitFailure || stdout != "" || !strings.Contains(stderr, "clusterNetwork[0].hostPrefix: 31 is out of range") {
		t.Errorf("code %d, stdout %q, stderr %q; want exit 1 naming the field", code, stdout, stderr)
	}
	// kube-proxy cannot serve a userspace datapath: refused at render time, naming both fields.
	if err := os.WriteFile(cfg, []byte("proxyMode: kube-proxy\nnode:\n  datapathType: netdev\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = runRender(t, "--config", cfg)
	if code != ExitFailure || stdout != "" || !strings.Contains(stderr, `proxyMode: "kube-proxy" cannot be used with node.datapathType "netdev"`) {
		t.Errorf("kube-proxy on netdev: code %d, stdout %q, stderr %q; want exit 1 naming proxyMode and node.datapathType", code, stdout, stderr)
	}
	if _, stderr, code := runRender(t, "extra"); code != ExitFailure || stderr == "" {
		t.Errorf("an argument was accepted: code %d stderr %q", code, stderr)
	}
}
