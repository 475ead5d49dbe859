package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// containerdConfig is the node's /etc/containerd/config.toml. Paths are containerd's
// defaults, which the node's mount namespace makes its own (/var/lib/containerd,
// /run/containerd, /etc/cni/net.d, /opt/cni/bin). Differences from the defaults:
//   - restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, so runc cannot apply the
//     -998 containerd asks for every sandbox; with the option it keeps the parent's score.
//   - the sandbox image is the lab's pause, pinned so nothing ever tries to pull it;
//   - registries resolve through certs.d, where _default sends every registry to a closed
//     port on the node's loopback: an image that was not imported fails to pull at once
//     and nothing leaves the lab;
//   - runc is the pinned build (BinaryName), the CNI loopback is set up by containerd
//     itself (no loopback plugin needed in /opt/cni/bin).
func containerdConfig(runc, pauseImage string) string {
	return fmt.Sprintf(`version = 3

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '%s'
[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = '/etc/containerd/certs.d'

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = '%s'
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['/opt/cni/bin']
  conf_dir = '/etc/cni/net.d'
  use_internal_loopback = true
`, pauseImage, runc)
}

// registryHosts is certs.d/_default/hosts.toml: every registry is a closed loopback port.
const registryHosts = `# sdn-lab: images are imported, never pulled; no registry is reachable from the lab.
server = "https://127.0.0.1:1"
`

// writeContainerdConfig writes the configuration into the node's /etc overlay.
func (c *Config) writeContainerdConfig() error {
	etc := c.path("ov", "etc.upper", "containerd")
	files := map[string]string{
		filepath.Join(etc, "config.toml"):                       containerdConfig(c.tool("runc"), c.PauseImage),
		filepath.Join(etc, "certs.d", "_default", "hosts.toml"): registryHosts,
		// crictl run inside the node needs no flags.
		c.path("ov", "etc.upper", "crictl.yaml"): crictlConfig,
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

const crictlConfig = `runtime-endpoint: unix:///run/containerd/containerd.sock
image-endpoint: unix:///run/containerd/containerd.sock
timeout: 30
`

// daemonEnv is the environment of the node's daemons: the pinned tools first on PATH
// (containerd finds its shim there).
func (c *Config) daemonEnv() []string {
	return []string{"PATH=" + c.ToolsBin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root"}
}

// startContainerd starts containerd in the node's namespaces and waits until it answers.
func (n *Node) startContainerd(ctx context.Context) error {
	argv := append(n.cfg.nsenter(), n.cfg.tool("containerd"), "--config", "/etc/containerd/config.toml")
	p, err := n.spawner.startProcess("containerd", argv, n.cfg.daemonEnv(),
		filepath.Join(n.cfg.logDir(), "containerd.log"))
	if err != nil {
		return err
	}
	n.containerd = p
	return n.waitFor(ctx, p, 30*time.Second, "containerd", func() error {
		_, err := n.ctr(ctx, "version")
		return err
	})
}

// ctr runs ctr against the node's containerd (namespace k8s.io) from the root namespace,
// through the socket's path in <Dir>/run.
func (n *Node) ctr(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{n.cfg.tool("ctr"), "--address", n.cfg.socket(), "--namespace", "k8s.io"}, args...)
	return run(ctx, nil, argv...)
}

// importImages loads every archive of the configuration into the node's containerd.
func (n *Node) importImages(ctx context.Context) error {
	for _, a := range n.cfg.Images {
		begin := time.Now()
		if _, err := n.ctr(ctx, "images", "import", "--snapshotter", "overlayfs", a); err != nil {
			return fmt.Errorf("importing %s: %w", a, err)
		}
		n.progress("imported %s in %v", filepath.Base(a), time.Since(begin).Round(time.Millisecond))
	}
	return nil
}

// Images lists the image references the node's containerd holds.
func (n *Node) Images(ctx context.Context) ([]string, error) {
	out, err := n.ctr(ctx, "images", "list", "--quiet")
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, l := range strings.Fields(out) {
		if !strings.HasPrefix(l, "sha256:") {
			refs = append(refs, l)
		}
	}
	return refs, nil
}
