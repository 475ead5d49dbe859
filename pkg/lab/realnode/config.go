package realnode

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Config describes one real node.
type Config struct {
	// Name is the node's name: its Node object and host name.
	Name string
	// IP is the node's address (kubelet --node-ip and serving address); it must be on an
	// interface of NetNS.
	IP netip.Addr
	// NetNS is the path of the node's network namespace (/run/netns/<name>).
	NetNS string
	// Dir holds everything of the node (see the package doc). It is created and, by Stop,
	// removed; it must not lie under /etc, /opt, /usr or /var (they are overlaid) and
	// should be short (unix socket paths live under it).
	Dir string
	// LabDir holds the state of the whole lab, other nodes' directories included (default:
	// the parent of Dir): the node's mount namespace drops its copies of the host's mounts
	// below it and below /run, so that it pins no other node's namespaces.
	LabDir string
	// CgroupRoot is the kubelet's cgroupRoot, e.g. "/sdnlab-node1": created in every cgroup
	// hierarchy before the kubelet starts and removed by Stop. Unique per node.
	CgroupRoot string
	// OVSRunDir, when set, is the run directory of the node's Open vSwitch (db.sock,
	// br0.mgmt, ovs-vswitchd's control socket), which the node sees at /run/openvswitch.
	OVSRunDir string
	// Kubeconfig is the kubelet's kubeconfig (see KubeletKubeconfig): an API server
	// address reachable from NetNS and the node's credentials.
	Kubeconfig []byte
	// ClientCA, when set, is the PEM CA whose client certificates the kubelet's API
	// authenticates (x509); requests without one (the API server's, which has no kubelet
	// client certificate) are anonymous. Either way the kubelet authorizes every request:
	// it listens only inside the lab's namespaces.
	ClientCA []byte
	// Images are docker-archives imported into the node's containerd (namespace k8s.io)
	// before the kubelet starts; one holds the sandbox image PauseImage.
	Images []string
	// PauseImage is containerd's sandbox image (default registry.k8s.io/pause:3.10).
	PauseImage string
	// ToolsBin holds containerd, containerd-shim-runc-v2, runc, ctr, crictl and kubelet.
	ToolsBin string
	// ClusterDNS are the kubelet's clusterDNS: the nameservers of pods with dnsPolicy
	// ClusterFirst (host-network ones keep the node's resolver). Without them such pods get
	// the node's resolver too, which is empty (nothing outside the lab may be asked).
	ClusterDNS []netip.Addr
	// Labels are the Node's labels (kubelet --node-labels).
	Labels map[string]string
	// KubeletVerbosity is kubelet's --v (default 2).
	KubeletVerbosity int
	// Out receives progress lines (nil: discarded).
	Out io.Writer
}

// Binaries a node runs, looked up in Config.ToolsBin.
var toolNames = []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "crictl", "kubelet"}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	cgroupRE = regexp.MustCompile(`^/[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// DefaultPauseImage is the sandbox image of the lab's containerd.
const DefaultPauseImage = "registry.k8s.io/pause:3.10"

func (c *Config) complete() error {
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.PauseImage == "" {
		c.PauseImage = DefaultPauseImage
	}
	if c.LabDir == "" {
		c.LabDir = filepath.Dir(c.Dir)
	}
	if c.KubeletVerbosity == 0 {
		c.KubeletVerbosity = 2
	}
	var errs []error
	if !nameRE.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("name %q: want a DNS label", c.Name))
	}
	if !c.IP.IsValid() {
		errs = append(errs, errors.New("ip: not set"))
	}
	if !cgroupRE.MatchString(c.CgroupRoot) {
		errs = append(errs, fmt.Errorf("cgroupRoot %q: want one path element such as /lab-node1", c.CgroupRoot))
	}
	if len(c.Kubeconfig) == 0 {
		errs = append(errs, errors.New("kubeconfig: not set"))
	}
	errs = append(errs, c.checkPaths()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("realnode %s: %w", c.Name, err)
	}
	return nil
}

func (c *Config) checkPaths() []error {
	var errs []error
	if !filepath.IsAbs(c.Dir) {
		errs = append(errs, fmt.Errorf("dir %q: want an absolute path", c.Dir))
	}
	for _, d := range overlaid {
		if strings.HasPrefix(filepath.Clean(c.Dir)+"/", "/"+d+"/") {
			errs = append(errs, fmt.Errorf("dir %s: must not lie under /%s, which the node overlays", c.Dir, d))
		}
	}
	if _, err := os.Stat(c.NetNS); err != nil {
		errs = append(errs, fmt.Errorf("netns: %w", err))
	}
	for _, t := range toolNames {
		if st, err := os.Stat(filepath.Join(c.ToolsBin, t)); err != nil || st.Mode()&0o111 == 0 {
			errs = append(errs, fmt.Errorf("tool %s missing in %q (run `make tools`)", t, c.ToolsBin))
		}
	}
	if c.OVSRunDir != "" {
		if _, err := os.Stat(c.OVSRunDir); err != nil {
			errs = append(errs, fmt.Errorf("ovsRunDir: %w", err))
		}
	}
	return errs
}

func (c *Config) tool(name string) string { return filepath.Join(c.ToolsBin, name) }

// Directories of the node under Config.Dir (the root namespace's view; see the package
// doc for what the node sees them as).
func (c *Config) path(elem ...string) string {
	return filepath.Join(append([]string{c.Dir}, elem...)...)
}

func (c *Config) nsDir() string      { return c.path("ns") }
func (c *Config) mntNS() string      { return c.path("ns", "mnt") }
func (c *Config) logDir() string     { return c.path("logs") }
func (c *Config) socket() string     { return c.path("run", "containerd", "containerd.sock") }
func (c *Config) kubeletDir() string { return c.path("kubelet") }

// CNIConfDir is the node's /etc/cni/net.d, seen from the root namespace.
func (c Config) CNIConfDir() string { return filepath.Join(c.Dir, "cni", "net.d") }

// CNIBinDir is the node's /opt/cni/bin, seen from the root namespace.
func (c Config) CNIBinDir() string { return filepath.Join(c.Dir, "cni", "bin") }

// LogDir is the node's /var/log (pods/<ns>_<pod>_<uid>/<container>/<n>.log), seen from
// the root namespace.
func (c Config) LogDir() string { return filepath.Join(c.Dir, "log") }
