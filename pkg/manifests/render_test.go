package manifests

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
)

// repoManifests is manifests/ at the repository root.
const repoManifests = "../../manifests"

// TestCheckedInManifestsAreRendered: manifests/ must be exactly the rendering of
// manifests/config.yaml — no hand edits, no stale files, no missing files.
func TestCheckedInManifestsAreRendered(t *testing.T) {
	cfg, err := Load(filepath.Join(repoManifests, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := renderFiles(cfg)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := RenderedFiles(repoManifests)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range onDisk {
		if _, ok := want[name]; !ok {
			t.Errorf("manifests/%s is no longer rendered: run make manifests", name)
		}
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(repoManifests, name))
		if err != nil {
			t.Errorf("manifests/%s: %v: run make manifests", name, err)
			continue
		}
		if !bytes.Equal(got, data) {
			t.Errorf("manifests/%s differs from the rendering of manifests/config.yaml: run make manifests\n%s", name, firstDiff(got, data))
		}
	}
}

func renderFiles(cfg *Config) (map[string][]byte, error) {
	files, err := Render(cfg)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, f := range files {
		data, err := f.YAML()
		if err != nil {
			return nil, err
		}
		out[f.Name] = data
	}
	return out, nil
}

func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n  checked in: " + gl + "\n  rendered:   " + wl
		}
	}
	return ""
}

func objectsOf[T runtime.Object](t *testing.T, files []File) []T {
	t.Helper()
	var out []T
	for _, f := range files {
		for _, o := range f.Objects {
			if v, ok := o.(T); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

func mustRender(t *testing.T, doc string) []File {
	t.Helper()
	cfg, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	files, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestNodeDaemonSet(t *testing.T) {
	ds := objectsOf[*appsv1.DaemonSet](t, mustRender(t, "node: {cniBinDir: /usr/libexec/cni, cniConfDir: /etc/kubernetes/cni/net.d}"))
	if len(ds) != 1 || ds[0].Name != "sdn-node" {
		t.Fatalf("DaemonSets %v, want one sdn-node", ds)
	}
	spec := ds[0].Spec.Template.Spec
	c := spec.Containers[0]
	checks := map[string]bool{
		"hostNetwork":                  spec.HostNetwork,
		"hostPID":                      spec.HostPID,
		"privileged":                   c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged,
		"system-node-critical":         spec.PriorityClassName == "system-node-critical",
		"tolerates every taint":        len(spec.Tolerations) == 1 && spec.Tolerations[0].Operator == corev1.TolerationOpExists && spec.Tolerations[0].Key == "",
		"readiness = conflist":         c.ReadinessProbe != nil && slices.Equal(c.ReadinessProbe.Exec.Command, []string{"test", "-f", "/etc/cni/net.d/10-ovs-sdn.conflist"}),
		"preStop removes conflist":     c.Lifecycle != nil && slices.Contains(c.Lifecycle.PreStop.Exec.Command, "/etc/cni/net.d/10-ovs-sdn.conflist"),
		"installs the shim as ovs-sdn": len(spec.InitContainers) == 1 && strings.Contains(spec.InitContainers[0].Command[2], "/host/opt/cni/bin/ovs-sdn\n"),
		"installs portmap next to it":  len(spec.InitContainers) == 1 && strings.Contains(spec.InitContainers[0].Command[2], "mv -f /host/opt/cni/bin/.ovs-sdn-portmap.new /host/opt/cni/bin/ovs-sdn-portmap\n"),
		"OVS socket in --ovsdb":        slices.Contains(c.Args, "--ovsdb=unix:/var/run/openvswitch/db.sock"),
		"node name from the API":       slices.Contains(c.Args, "--node-name=$(K8S_NODE_NAME)"),
		"host CNI bin dir mounted":     hostPath(spec, "cni-bin-dir") == "/usr/libexec/cni",
		"host CNI conf dir mounted":    hostPath(spec, "cni-conf-dir") == "/etc/kubernetes/cni/net.d",
		"netns HostToContainer":        mountPropagation(c, "host-run-netns") == corev1.MountPropagationHostToContainer,
		"OVS run dir mounted":          hostPath(spec, "host-run-openvswitch") == "/var/run/openvswitch",
		"CNI socket dir mounted":       hostPath(spec, "host-run-ovs-sdn") == "/var/run/ovs-sdn",
		"service account":              spec.ServiceAccountName == "sdn-node",
		"proxy mode ovs by default":    slices.Contains(c.Args, "--proxy-mode=ovs"),
		"default node port range":      slices.Contains(c.Args, "--service-node-port-range=30000-32767"),
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("sdn-node DaemonSet: %s does not hold", what)
		}
	}
}

// TestNodeDaemonSetProxyFlags: proxyMode and serviceNodePortRange reach sdn-node's flags.
func TestNodeDaemonSetProxyFlags(t *testing.T) {
	ds := objectsOf[*appsv1.DaemonSet](t, mustRender(t, "proxyMode: kube-proxy\nserviceNodePortRange: 31000-31999"))
	args := ds[0].Spec.Template.Spec.Containers[0].Args
	for _, want := range []string{"--proxy-mode=kube-proxy", "--service-node-port-range=31000-31999", "--datapath-type=system"} {
		if !slices.Contains(args, want) {
			t.Errorf("sdn-node args %v lack %s", args, want)
		}
	}
}

func hostPath(spec corev1.PodSpec, volume string) string {
	for _, v := range spec.Volumes {
		if v.Name == volume && v.HostPath != nil {
			return v.HostPath.Path
		}
	}
	return ""
}

func mountPropagation(c corev1.Container, volume string) corev1.MountPropagationMode {
	for _, m := range c.VolumeMounts {
		if m.Name == volume && m.MountPropagation != nil {
			return *m.MountPropagation
		}
	}
	return ""
}

func TestControllerDeployment(t *testing.T) {
	deps := objectsOf[*appsv1.Deployment](t, mustRender(t, "namespace: netsys"))
	if len(deps) != 1 {
		t.Fatalf("%d Deployments, want 1", len(deps))
	}
	d := deps[0]
	c := d.Spec.Template.Spec.Containers[0]
	sc := c.SecurityContext
	checks := map[string]bool{
		"2 replicas":             *d.Spec.Replicas == 2,
		"Lease in its namespace": slices.Contains(c.Args, "--lease-namespace=$(POD_NAMESPACE)") && d.Namespace == "netsys",
		"identity = pod name":    slices.Contains(c.Args, "--identity=$(POD_NAME)"),
		"host network":           d.Spec.Template.Spec.HostNetwork,
		"non-root":               sc != nil && *sc.RunAsNonRoot && *sc.RunAsUser == 65534 && !*sc.AllowPrivilegeEscalation,
		"readiness /readyz":      c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet.Path == "/readyz",
		"no surge (host ports)":  d.Spec.Strategy.RollingUpdate.MaxSurge.IntValue() == 0,
		"service account":        d.Spec.Template.Spec.ServiceAccountName == "sdn-controller",
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("sdn-controller Deployment: %s does not hold", what)
		}
	}
}

// TestNodeRoleIsReadOnly: the node agent may read, and write nothing but Events.
func TestNodeRoleIsReadOnly(t *testing.T) {
	for _, r := range nodeRules() {
		verbs := readVerbs
		if slices.Equal(r.Resources, []string{"events"}) {
			verbs = eventVerbs
		}
		if !slices.Equal(r.Verbs, verbs) {
			t.Errorf("node rule %v: verbs %v, want %v", r.Resources, r.Verbs, verbs)
		}
		if slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
			t.Errorf("node rule %v has a wildcard", r)
		}
	}
	roles := objectsOf[*rbacv1.ClusterRole](t, mustRender(t, ""))
	if len(roles) != 2 {
		t.Fatalf("%d ClusterRoles, want 2", len(roles))
	}
}

func TestModesRenderTheirObjects(t *testing.T) {
	for _, mode := range []string{"Subnet", "Multitenant", "NetworkPolicy"} {
		files := mustRender(t, "mode: "+mode)
		cns := objectsOf[*networkv1.ClusterNetwork](t, files)
		if len(cns) != 1 {
			t.Fatalf("mode %s: %d ClusterNetworks", mode, len(cns))
		}
		if cfg, err := clusternetwork.Parse(cns[0]); err != nil || string(cfg.Mode) != mode {
			t.Errorf("mode %s: rendered ClusterNetwork parses as %v, %v", mode, cfg, err)
		}
		netns := objectsOf[*networkv1.NetNamespace](t, files)
		if mode == "Multitenant" {
			if len(netns) != 1 || netns[0].Name != "kube-system" || netns[0].NetID != 0 || netns[0].NetName != "kube-system" {
				t.Errorf("multitenant: NetNamespaces %+v, want kube-system with netid 0", netns)
			}
		} else if len(netns) != 0 {
			t.Errorf("mode %s renders NetNamespaces %v", mode, netns)
		}
	}
}

func TestConfigChangeRollsPods(t *testing.T) {
	hash := func(doc string) string {
		ds := objectsOf[*appsv1.DaemonSet](t, mustRender(t, doc))
		return ds[0].Spec.Template.Annotations[ConfigHashAnnotation]
	}
	if a, b := hash("logLevel: 2"), hash("logLevel: 4"); a == "" || a == b {
		t.Errorf("config hash %q for logLevel 2 and %q for 4; want different, non-empty", a, b)
	}
	if a, b := hash(""), hash("mtu: 1450"); a != b {
		t.Errorf("an explicit default changed the hash: %q vs %q", a, b)
	}
}

func TestRenderedYAMLHasNoNoise(t *testing.T) {
	out, err := RenderYAML(Default())
	if err != nil {
		t.Fatal(err)
	}
	for _, noise := range []string{"creationTimestamp", "status:", "storedVersions"} {
		if bytes.Contains(out, []byte(noise)) {
			t.Errorf("rendered YAML contains %q", noise)
		}
	}
	if n := bytes.Count(out, []byte("\n---\n")); n < 15 {
		t.Errorf("stream has %d documents, want every object", n)
	}
}

func TestWriteRemovesStaleRenderedFilesOnly(t *testing.T) {
	dir := t.TempDir()
	mt, err := Parse([]byte("mode: Multitenant"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(mt, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "005-multitenant.yaml")); err != nil {
		t.Fatalf("multitenant file not written: %v", err)
	}
	mine := filepath.Join(dir, "zz-mine.yaml")
	if err := os.WriteFile(mine, []byte("kind: Secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(Default(), dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "005-multitenant.yaml")); !os.IsNotExist(err) {
		t.Errorf("stale 005-multitenant.yaml survived a switch to NetworkPolicy (err %v)", err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("a file the renderer did not write was removed: %v", err)
	}
	names, _ := RenderedFiles(dir)
	if len(names) != 9 {
		t.Errorf("rendered files %v, want 9", names)
	}
}

// TestCNINamesMatchTheAgent: the names the DaemonSet installs and waits for are the ones
// the agent writes and its conflist names (pkg/cni; this package does not import it, to
// stay free of the agent's dependencies, so the twins are held together here).
func TestCNINamesMatchTheAgent(t *testing.T) {
	for _, c := range []struct{ name, manifests, agent string }{
		{"plugin type", CNIPluginType, cni.PluginType},
		{"portmap plugin type", PortmapPluginType, cni.PortmapPluginType},
		{"conflist file", CNIConfFile, cni.ConflistName},
	} {
		if c.manifests != c.agent {
			t.Errorf("%s: manifests %q, agent %q", c.name, c.manifests, c.agent)
		}
	}
}
