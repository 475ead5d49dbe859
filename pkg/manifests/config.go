// Package manifests renders everything a cluster needs to run ovs-sdn — Namespace, CRDs,
// RBAC, the ClusterNetwork, a ConfigMap, the sdn-node DaemonSet, the sdn-controller
// Deployment and the metrics Services — from one Config, the way a cluster network operator
// renders its bindata. manifests/ in the repository is the rendering of manifests/config.yaml
// (`make manifests`); nobody edits the YAML by hand.
//
// Objects are built as typed k8s.io/api values and marshalled with sigs.k8s.io/yaml, so a
// misspelt field is a compile error rather than a silently ignored key.
package manifests

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
)

// Defaults of Config (reference §12.5: the installer's and CNO's defaults).
const (
	DefaultNamespace      = "ovs-sdn"
	DefaultClusterCIDR    = "10.128.0.0/14"
	DefaultHostPrefix     = 23
	DefaultServiceNetwork = "172.30.0.0/16"
	DefaultMode           = clusternetwork.ModeNetworkPolicy
	DefaultVXLANPort      = 4789
	DefaultMTU            = 1450
	DefaultLogLevel       = 2
	// DefaultImageTag is the tag of the default images. Images are only named, never
	// pulled, by the renderer; an installation sets its own in the config file.
	DefaultImageTag       = "v0.1.0"
	DefaultNodeImage      = "ghcr.io/ovs-sdn/sdn-node:" + DefaultImageTag
	DefaultControllerImg  = "ghcr.io/ovs-sdn/sdn-controller:" + DefaultImageTag
	DefaultPullPolicy     = "IfNotPresent"
	DefaultDatapathType   = "system"
	DefaultCNIBinDir      = "/opt/cni/bin"
	DefaultCNIConfDir     = "/etc/cni/net.d"
	DefaultControllerReps = 2
	DefaultNodeMetrics    = 29101
	DefaultCtrlMetrics    = 29100
	// DefaultProxyMode load-balances Services in br0 (sdn-node --proxy-mode).
	DefaultProxyMode = ProxyModeOVS
	// DefaultServiceNodePortRange is kube-apiserver's default --service-node-port-range.
	DefaultServiceNodePortRange = "30000-32767"
)

// ProxyMode is how Services are load-balanced: sdn-node's --proxy-mode.
type ProxyMode string

// Proxy modes.
const (
	// ProxyModeOVS: sdn-node programs Services in br0; no kube-proxy is needed, and it is
	// the only mode the userspace datapath (netdev) supports.
	ProxyModeOVS ProxyMode = "ovs"
	// ProxyModeKubeProxy: service traffic leaves br0 through tun0 for kube-proxy, as in
	// OpenShift SDN; kernel datapath (system) only.
	ProxyModeKubeProxy ProxyMode = "kube-proxy"
)

// Config is the one file an installation edits; every rendered object follows from it.
// Zero fields take the defaults above (Complete). Field names follow the Network
// operator's (`clusterNetwork[].cidr/hostPrefix`, `serviceNetwork[]`, `mode`, …).
type Config struct {
	// Namespace holds the DaemonSet, Deployment, ServiceAccounts, ConfigMap, Services and
	// the leader-election Lease. Default "ovs-sdn".
	Namespace string `json:"namespace,omitempty"`
	// ClusterNetwork are the pod CIDRs; each node gets a /hostPrefix of one of them.
	// Default [10.128.0.0/14 hostPrefix 23] (ClusterNetwork hostSubnetLength 9).
	ClusterNetwork []ClusterNetworkEntry `json:"clusterNetwork,omitempty"`
	// ServiceNetwork is the service CIDR, exactly one entry. Default [172.30.0.0/16].
	// It must equal the API server's --service-cluster-ip-range.
	ServiceNetwork []string `json:"serviceNetwork,omitempty"`
	// Mode is Subnet, Multitenant or NetworkPolicy (default).
	Mode clusternetwork.Mode `json:"mode,omitempty"`
	// ProxyMode is ovs (default) or kube-proxy: sdn-node's --proxy-mode. kube-proxy needs
	// node.datapathType system.
	ProxyMode ProxyMode `json:"proxyMode,omitempty"`
	// ServiceNodePortRange is "FROM-TO", kube-apiserver's --service-node-port-range
	// (default 30000-32767): sdn-node's --service-node-port-range. In proxy mode ovs every
	// port of the range on a node address is redirected into br0, so the range must not
	// hold a port the daemons listen on.
	ServiceNodePortRange string `json:"serviceNodePortRange,omitempty"`
	// VXLANPort is the UDP port of the overlay (default 4789).
	VXLANPort int `json:"vxlanPort,omitempty"`
	// MTU is the overlay MTU of pod interfaces and tun0: the host MTU minus 50 (default 1450).
	MTU int `json:"mtu,omitempty"`
	// LogLevel is the klog verbosity (--v) of both daemons, 0..10 (default 2).
	LogLevel *int `json:"logLevel,omitempty"`
	// Images name the container images; the renderer never pulls them.
	Images Images `json:"images,omitempty"`
	// Node configures the sdn-node DaemonSet.
	Node NodeConfig `json:"node,omitempty"`
	// Controller configures the sdn-controller Deployment.
	Controller ControllerConfig `json:"controller,omitempty"`
	// APIServer, when Host is set, is where both daemons reach the API server instead of
	// the kubernetes Service (whose ClusterIP needs a working service proxy first).
	APIServer APIServer `json:"apiServer,omitempty"`
	// Multitenant configures what only multitenant mode renders.
	Multitenant MultitenantConfig `json:"multitenant,omitempty"`
}

// ClusterNetworkEntry is one pod CIDR and the prefix length of its node subnets.
type ClusterNetworkEntry struct {
	CIDR       string `json:"cidr"`
	HostPrefix int    `json:"hostPrefix"`
}

// Images of the two workloads.
type Images struct {
	Node       string `json:"node,omitempty"`
	Controller string `json:"controller,omitempty"`
	// PullPolicy is Always, IfNotPresent (default) or Never.
	PullPolicy string `json:"pullPolicy,omitempty"`
}

// NodeConfig are the sdn-node knobs that differ between distributions.
type NodeConfig struct {
	// DatapathType of br0: system (kernel module, default) or netdev (userspace).
	DatapathType string `json:"datapathType,omitempty"`
	// CNIBinDir and CNIConfDir are the container runtime's CNI directories on the host.
	CNIBinDir  string `json:"cniBinDir,omitempty"`
	CNIConfDir string `json:"cniConfDir,omitempty"`
	// MetricsPort serves /metrics and /healthz on the node IP (default 29101).
	MetricsPort int `json:"metricsPort,omitempty"`
}

// ControllerConfig are the sdn-controller knobs.
type ControllerConfig struct {
	// Replicas of the leader-elected controller (default 2); at most one leads.
	Replicas *int32 `json:"replicas,omitempty"`
	// MetricsPort serves /metrics, /healthz and /readyz on the host IP (default 29100).
	MetricsPort int `json:"metricsPort,omitempty"`
}

// APIServer overrides KUBERNETES_SERVICE_HOST/PORT in both daemons.
type APIServer struct {
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
}

// MultitenantConfig lists namespaces whose NetNamespace is pre-created global (netid 0), so
// cluster services such as DNS in kube-system stay reachable from every project.
type MultitenantConfig struct {
	// GlobalNamespaces default to [kube-system]; `default` is always global.
	GlobalNamespaces []string `json:"globalNamespaces,omitempty"`
}

// Load reads, defaults and validates a config file. Unknown keys are errors.
func Load(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return cfg, nil
}

// Parse decodes a config document strictly, fills in the defaults and validates it. An
// empty document is the default config.
func Parse(data []byte) (*Config, error) {
	cfg := &Config{}
	if err := decodeStrict(data, cfg); err != nil {
		return nil, err
	}
	cfg.Complete()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decodeStrict decodes YAML case-sensitively (encoding/json would accept "hostprefix" for
// hostPrefix) and rejects unknown and duplicate keys.
func decodeStrict(data []byte, cfg *Config) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("decoding config: %w", err)
	}
	if string(js) == "null" {
		return nil // an empty document
	}
	strict, err := kjson.UnmarshalStrict(js, cfg)
	if err != nil {
		return fmt.Errorf("decoding config: %w", err)
	}
	if err := errors.Join(strict...); err != nil {
		return fmt.Errorf("decoding config: %w", err)
	}
	return nil
}

// Default returns the default config, completed.
func Default() *Config {
	cfg := &Config{}
	cfg.Complete()
	return cfg
}

// Complete fills every zero field with its default. It is idempotent.
func (c *Config) Complete() {
	setDefault(&c.Namespace, DefaultNamespace)
	if len(c.ClusterNetwork) == 0 {
		c.ClusterNetwork = []ClusterNetworkEntry{{CIDR: DefaultClusterCIDR, HostPrefix: DefaultHostPrefix}}
	}
	if len(c.ServiceNetwork) == 0 {
		c.ServiceNetwork = []string{DefaultServiceNetwork}
	}
	setDefault(&c.Mode, DefaultMode)
	setDefault(&c.ProxyMode, DefaultProxyMode)
	setDefault(&c.ServiceNodePortRange, DefaultServiceNodePortRange)
	setDefault(&c.VXLANPort, DefaultVXLANPort)
	setDefault(&c.MTU, DefaultMTU)
	if c.LogLevel == nil {
		level := DefaultLogLevel
		c.LogLevel = &level
	}
	setDefault(&c.Images.Node, DefaultNodeImage)
	setDefault(&c.Images.Controller, DefaultControllerImg)
	setDefault(&c.Images.PullPolicy, DefaultPullPolicy)
	setDefault(&c.Node.DatapathType, DefaultDatapathType)
	setDefault(&c.Node.CNIBinDir, DefaultCNIBinDir)
	setDefault(&c.Node.CNIConfDir, DefaultCNIConfDir)
	setDefault(&c.Node.MetricsPort, DefaultNodeMetrics)
	setDefault(&c.Controller.MetricsPort, DefaultCtrlMetrics)
	if c.Controller.Replicas == nil {
		replicas := int32(DefaultControllerReps)
		c.Controller.Replicas = &replicas
	}
	if c.APIServer.Host != "" {
		setDefault(&c.APIServer.Port, 6443)
	}
	if c.Multitenant.GlobalNamespaces == nil {
		c.Multitenant.GlobalNamespaces = []string{"kube-system"}
	}
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid config")

// InvalidError lists every problem of a config, each naming its field, e.g.
// `clusterNetwork[0].hostPrefix: 33 is out of range [2, 30]`.
type InvalidError struct{ Problems []string }

func (e *InvalidError) Error() string {
	return "invalid config: " + strings.Join(e.Problems, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Validate checks a completed config; the error is an *InvalidError naming every bad field.
// The network fields are finally checked by clusternetwork.Parse on the ClusterNetwork the
// config renders, so the manifests can never carry a ClusterNetwork the daemons refuse.
func (c *Config) Validate() error {
	v := &validator{}
	c.validateNetwork(v)
	c.validateWorkloads(v)
	c.validateServices(v)
	if len(v.problems) == 0 {
		if _, err := clusternetwork.Parse(c.clusterNetworkObject()); err != nil {
			var inv *clusternetwork.InvalidError
			if !errors.As(err, &inv) {
				return fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			for _, p := range inv.Problems {
				v.addf("%s", configFieldNames.Replace(p))
			}
		}
	}
	if len(v.problems) > 0 {
		return &InvalidError{Problems: v.problems}
	}
	return nil
}

// configFieldNames maps ClusterNetwork field names in clusternetwork.Parse problems to the
// config's field names.
var configFieldNames = strings.NewReplacer("clusterNetworks[", "clusterNetwork[", "].CIDR", "].cidr",
	"serviceNetwork ", "serviceNetwork[0] ")

type validator struct{ problems []string }

func (v *validator) addf(format string, args ...any) {
	v.problems = append(v.problems, fmt.Sprintf(format, args...))
}

func (v *validator) rangeCheck(field string, value, lo, hi int) {
	if value < lo || value > hi {
		v.addf("%s: %d is out of range [%d, %d]", field, value, lo, hi)
	}
}

func (c *Config) validateNetwork(v *validator) {
	for i, e := range c.ClusterNetwork {
		field := fmt.Sprintf("clusterNetwork[%d]", i)
		p, err := netip.ParsePrefix(e.CIDR)
		if err != nil || !p.Addr().Is4() {
			v.addf("%s.cidr: %q is not an IPv4 CIDR", field, e.CIDR)
			continue
		}
		v.rangeCheck(field+".hostPrefix", e.HostPrefix, max(p.Bits(), 2), 30)
	}
	if len(c.ServiceNetwork) != 1 {
		v.addf("serviceNetwork: must have exactly one entry, has %d", len(c.ServiceNetwork))
	}
	if c.Mode.PluginName() == "" {
		v.addf("mode: %q is not one of %s, %s, %s", c.Mode,
			clusternetwork.ModeSubnet, clusternetwork.ModeMultitenant, clusternetwork.ModeNetworkPolicy)
	}
	v.rangeCheck("vxlanPort", c.VXLANPort, 1, 65535)
	v.rangeCheck("mtu", c.MTU, clusternetwork.MinMTU, clusternetwork.MaxMTU)
	for i, ns := range c.Multitenant.GlobalNamespaces {
		for _, msg := range validation.IsDNS1123Label(ns) {
			v.addf("multitenant.globalNamespaces[%d]: %q %s", i, ns, msg)
		}
	}
}

func (c *Config) validateWorkloads(v *validator) {
	for _, msg := range validation.IsDNS1123Label(c.Namespace) {
		v.addf("namespace: %q %s", c.Namespace, msg)
	}
	v.rangeCheck("logLevel", *c.LogLevel, 0, 10)
	for _, f := range []struct{ field, image string }{{"images.node", c.Images.Node}, {"images.controller", c.Images.Controller}} {
		if strings.ContainsAny(f.image, " \t\n") {
			v.addf("%s: %q contains white space", f.field, f.image)
		}
	}
	switch c.Images.PullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		v.addf("images.pullPolicy: %q is not one of Always, IfNotPresent, Never", c.Images.PullPolicy)
	}
	if c.Node.DatapathType != "system" && c.Node.DatapathType != "netdev" {
		v.addf("node.datapathType: %q is not one of system, netdev", c.Node.DatapathType)
	}
	for _, f := range []struct{ field, dir string }{{"node.cniBinDir", c.Node.CNIBinDir}, {"node.cniConfDir", c.Node.CNIConfDir}} {
		if !path.IsAbs(f.dir) || path.Clean(f.dir) != f.dir {
			v.addf("%s: %q is not a clean absolute path", f.field, f.dir)
		}
	}
	v.rangeCheck("node.metricsPort", c.Node.MetricsPort, 1, 65535)
	v.rangeCheck("controller.metricsPort", c.Controller.MetricsPort, 1, 65535)
	if c.Node.MetricsPort == c.Controller.MetricsPort {
		v.addf("controller.metricsPort: %d equals node.metricsPort; both daemons use the host network", c.Node.MetricsPort)
	}
	v.rangeCheck("controller.replicas", int(*c.Controller.Replicas), 1, 10)
	if c.APIServer.Host != "" {
		v.rangeCheck("apiServer.port", c.APIServer.Port, 1, 65535)
	}
}

// validateServices checks the proxy mode against the datapath and the node port range
// against the ports the host-network daemons listen on.
func (c *Config) validateServices(v *validator) {
	switch c.ProxyMode {
	case ProxyModeOVS:
	case ProxyModeKubeProxy:
		if c.Node.DatapathType == "netdev" {
			v.addf("proxyMode: %q cannot be used with node.datapathType %q: kube-proxy cannot un-NAT replies "+
				"tracked by the userspace datapath's own conntrack; use proxyMode %q", c.ProxyMode, c.Node.DatapathType, ProxyModeOVS)
		}
	default:
		v.addf("proxyMode: %q is not one of %s, %s", c.ProxyMode, ProxyModeOVS, ProxyModeKubeProxy)
	}
	from, to, err := parsePortRange(c.ServiceNodePortRange)
	if err != nil {
		v.addf("serviceNodePortRange: %q: %v", c.ServiceNodePortRange, err)
		return
	}
	if c.ProxyMode != ProxyModeOVS {
		return // kube-proxy redirects only the node ports Services hold
	}
	for _, p := range []struct {
		field string
		port  int
	}{{"node.metricsPort", c.Node.MetricsPort}, {"controller.metricsPort", c.Controller.MetricsPort}} {
		if p.port >= int(from) && p.port <= int(to) {
			v.addf("serviceNodePortRange: %s holds %s %d: with proxyMode ovs every port of the range on a node address is redirected into br0",
				c.ServiceNodePortRange, p.field, p.port)
		}
	}
}

// parsePortRange parses "FROM-TO" with 1 <= FROM <= TO <= 65535, the syntax of
// kube-apiserver's and sdn-node's --service-node-port-range.
func parsePortRange(s string) (from, to uint16, err error) {
	a, b, ok := strings.Cut(s, "-")
	x, errA := strconv.ParseUint(a, 10, 16)
	y, errB := strconv.ParseUint(b, 10, 16)
	if !ok || errA != nil || errB != nil || x == 0 || x > y {
		return 0, 0, errors.New("want FROM-TO with 1 <= FROM <= TO <= 65535")
	}
	return uint16(x), uint16(y), nil
}
