package realnode

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	kubeletconfig "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

func validConfig(t *testing.T) Config {
	t.Helper()
	tools := t.TempDir()
	for _, n := range toolNames {
		must(t, os.WriteFile(filepath.Join(tools, n), []byte("#!/bin/sh\n"), 0o755))
	}
	return Config{Name: "node1", IP: netip.MustParseAddr("198.18.0.11"), NetNS: tools, Dir: "/run/lab/nodes/node1",
		CgroupRoot: "/lab-node1", Kubeconfig: []byte("kc"), ToolsBin: tools}
}

func TestConfigValidation(t *testing.T) {
	good := validConfig(t)
	if err := good.complete(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if good.PauseImage != DefaultPauseImage || good.KubeletVerbosity != 2 {
		t.Errorf("defaults: %+v", good)
	}
	for name, tc := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"name":       {func(c *Config) { c.Name = "Node_1" }, `name "Node_1"`},
		"ip":         {func(c *Config) { c.IP = netip.Addr{} }, "ip: not set"},
		"cgroup":     {func(c *Config) { c.CgroupRoot = "/a/b" }, `cgroupRoot "/a/b"`},
		"under var":  {func(c *Config) { c.Dir = "/var/lib/lab/node1" }, "must not lie under /var"},
		"relative":   {func(c *Config) { c.Dir = "lab/node1" }, "want an absolute path"},
		"tools":      {func(c *Config) { c.ToolsBin = "/nonexistent" }, "tool containerd missing"},
		"kubeconfig": {func(c *Config) { c.Kubeconfig = nil }, "kubeconfig: not set"},
		"netns":      {func(c *Config) { c.NetNS = "/run/netns/none-such" }, "netns:"},
	} {
		c := validConfig(t)
		tc.mutate(&c)
		err := c.complete()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "realnode node1") &&
			name != "name" {
			t.Errorf("%s: error %v, want one naming the node and %q", name, err, tc.want)
		}
	}
}

func TestKubeletConfig(t *testing.T) {
	c := validConfig(t)
	c.ClientCA = []byte("ca")
	c.ClusterDNS = []netip.Addr{netip.MustParseAddr("172.30.0.10")}
	data, err := c.kubeletConfig()
	must(t, err)
	var kc kubeletconfig.KubeletConfiguration
	must(t, yaml.UnmarshalStrict(data, &kc))
	if !slices.Equal(kc.ClusterDNS, []string{"172.30.0.10"}) || kc.ClusterDomain != "cluster.local" {
		t.Errorf("cluster DNS: %s", data)
	}
	if kc.Kind != "KubeletConfiguration" || kc.CgroupDriver != "cgroupfs" || kc.CgroupRoot != "/lab-node1" ||
		kc.FailCgroupV1 == nil || *kc.FailCgroupV1 || kc.OOMScoreAdj == nil || *kc.OOMScoreAdj != 0 {
		t.Errorf("cgroup/OOM settings: %s", data)
	}
	if kc.Address != "198.18.0.11" || kc.Port != KubeletPort || kc.HealthzBindAddress != "127.0.0.1" ||
		kc.ResolverConfig == nil || *kc.ResolverConfig != "" {
		t.Errorf("addresses/DNS: %s", data)
	}
	if kc.Authentication.X509.ClientCAFile != kubeletClientCAPath || kc.Authorization.Mode != "AlwaysAllow" ||
		kc.ContainerRuntimeEndpoint != "unix:///run/containerd/containerd.sock" {
		t.Errorf("auth/runtime: %s", data)
	}
	args := strings.Join(c.kubeletArgs(), " ")
	for _, want := range []string{"--hostname-override=node1", "--node-ip=198.18.0.11", "--config=" + kubeletConfigPath} {
		if !strings.Contains(args, want) {
			t.Errorf("kubelet args %s lack %s", args, want)
		}
	}
}

func TestContainerdConfig(t *testing.T) {
	got := containerdConfig("/tools/runc", "registry.k8s.io/pause:3.10")
	for _, want := range []string{"restrict_oom_score_adj = true", "sandbox = 'registry.k8s.io/pause:3.10'",
		"BinaryName = '/tools/runc'", "config_path = '/etc/containerd/certs.d'", "use_internal_loopback = true"} {
		if !strings.Contains(got, want) {
			t.Errorf("containerd config lacks %q:\n%s", want, got)
		}
	}
	if !strings.Contains(registryHosts, `server = "https://127.0.0.1:1"`) {
		t.Errorf("registries do not resolve to loopback: %s", registryHosts)
	}
}

// TestSetupScript: the script is valid sh and makes every mount the package doc promises.
func TestSetupScript(t *testing.T) {
	s := setupScript()
	if out, err := exec.Command("sh", "-n", "-c", s).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s", err, out)
	}
	want := []string{"lowerdir=/etc,upperdir=$D/ov/etc.upper", "lowerdir=/var,", "lowerdir=/usr,", "lowerdir=/opt,",
		"mount --bind $D/containerd /var/lib/containerd", "mount --bind $D/cni/net.d /etc/cni/net.d",
		"mount --bind $D/cni/bin /opt/cni/bin", "mount --bind $D/kubelet /var/lib/kubelet", "mkdir -p /usr/lib/modules",
		`mount --bind "$OVS" "$D/run/openvswitch"`, `mount --rbind "$D/run" /run`, "mount -t sysfs sysfs /sys",
		"mount --make-rshared /"}
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("setup script lacks %q", w)
		}
	}
	// /run is bound last: the sources of the earlier binds may live below the host's /run.
	if strings.Index(s, `mount --rbind "$D/run" /run`) < strings.Index(s, "/etc/cni/net.d") {
		t.Error("/run is replaced before the other binds")
	}
}

// TestCgroupTree runs create, pids and remove on a fake hierarchy.
func TestCgroupTree(t *testing.T) {
	cpuset, mem := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(cpuset, "cpuset.cpus"), []byte("0-1\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(cpuset, "cpuset.mems"), []byte("0\n"), 0o644))
	tree := cgroupTree{mounts: []string{cpuset, mem}}
	must(t, tree.create("/lab-n1"))
	if b, _ := os.ReadFile(filepath.Join(cpuset, "lab-n1", "cpuset.cpus")); string(b) != "0-1\n" {
		t.Errorf("cpuset.cpus not copied: %q", b)
	}
	if _, err := os.Stat(filepath.Join(mem, "lab-n1", "cpuset.cpus")); err == nil {
		t.Error("cpuset files written into a non-cpuset hierarchy")
	}
	must(t, os.MkdirAll(filepath.Join(mem, "lab-n1", "kubepods", "pod1"), 0o755))
	must(t, os.WriteFile(filepath.Join(mem, "lab-n1", "kubepods", "pod1", "cgroup.procs"), []byte("42\n7\n"), 0o644))
	if got := tree.pids("/lab-n1"); !slices.Equal(got, []int{7, 42}) {
		t.Errorf("pids = %v, want [7 42]", got)
	}
	// Real cgroup directories vanish with their control files; the fake's do not.
	must(t, os.Remove(filepath.Join(mem, "lab-n1", "kubepods", "pod1", "cgroup.procs")))
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		must(t, os.Remove(filepath.Join(cpuset, "lab-n1", f)))
	}
	must(t, tree.remove("/lab-n1", time.Second))
	for _, m := range tree.mounts {
		if _, err := os.Stat(filepath.Join(m, "lab-n1")); !os.IsNotExist(err) {
			t.Errorf("%s/lab-n1 left: %v", m, err)
		}
	}
	if err := tree.remove("/lab-n1", time.Second); err != nil {
		t.Errorf("removing a missing root: %v", err)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/run/a\040b\011c`); got != "/run/a b\tc" {
		t.Errorf("unescape = %q", got)
	}
}
