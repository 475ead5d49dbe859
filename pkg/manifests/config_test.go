package manifests

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
)

func TestDefaultConfigRendersTheReferenceClusterNetwork(t *testing.T) {
	cfg, err := Parse(nil)
	if err != nil {
		t.Fatalf("empty config: %v", err)
	}
	cn := cfg.clusterNetworkObject()
	got, err := clusternetwork.Parse(cn)
	if err != nil {
		t.Fatalf("rendered ClusterNetwork does not parse: %v", err)
	}
	want := "mode=NetworkPolicy clusterNetworks=[10.128.0.0/14 hostBits=9] serviceNetwork=172.30.0.0/16 vxlanPort=4789 mtu=1450"
	if got.String() != want {
		t.Errorf("default ClusterNetwork = %s, want %s", got, want)
	}
	if cn.HostSubnetLength != 9 || cn.Network != "10.128.0.0/14" {
		t.Errorf("legacy fields network=%q hostsubnetlength=%d, want 10.128.0.0/14 and 9", cn.Network, cn.HostSubnetLength)
	}
	if *cfg.LogLevel != 2 || *cfg.Controller.Replicas != 2 || cfg.Namespace != "ovs-sdn" {
		t.Errorf("defaults: logLevel=%d replicas=%d namespace=%q", *cfg.LogLevel, *cfg.Controller.Replicas, cfg.Namespace)
	}
}

func TestConfigModesMapToPluginNames(t *testing.T) {
	for mode, plugin := range map[string]string{
		"Subnet":        "redhat/openshift-ovs-subnet",
		"Multitenant":   "redhat/openshift-ovs-multitenant",
		"NetworkPolicy": "redhat/openshift-ovs-networkpolicy",
	} {
		cfg, err := Parse([]byte("mode: " + mode))
		if err != nil {
			t.Fatalf("mode %s: %v", mode, err)
		}
		cn := cfg.clusterNetworkObject()
		if cn.PluginName != plugin {
			t.Errorf("mode %s: pluginName %q, want %q", mode, cn.PluginName, plugin)
		}
		if parsed, err := clusternetwork.Parse(cn); err != nil || string(parsed.Mode) != mode {
			t.Errorf("mode %s: clusternetwork.Parse = %v, %v", mode, parsed, err)
		}
	}
}

func TestConfigExplicitValuesKept(t *testing.T) {
	cfg, err := Parse([]byte(`
clusterNetwork: [{cidr: 10.0.0.0/16, hostPrefix: 24}, {cidr: 10.1.0.0/16, hostPrefix: 26}]
serviceNetwork: [10.96.0.0/12]
mtu: 8950
vxlanPort: 8472
logLevel: 0
apiServer: {host: 192.0.2.10}
`))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := clusternetwork.Parse(cfg.clusterNetworkObject())
	if err != nil {
		t.Fatal(err)
	}
	want := "mode=NetworkPolicy clusterNetworks=[10.0.0.0/16 hostBits=8, 10.1.0.0/16 hostBits=6] serviceNetwork=10.96.0.0/12 vxlanPort=8472 mtu=8950"
	if parsed.String() != want {
		t.Errorf("got %s, want %s", parsed, want)
	}
	if *cfg.LogLevel != 0 {
		t.Errorf("logLevel 0 was replaced by %d", *cfg.LogLevel)
	}
	if cfg.APIServer.Port != 6443 {
		t.Errorf("apiServer.port default %d, want 6443", cfg.APIServer.Port)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"clusterNetwork: [{cidr: 10.128.0.0/14, hostPrefix: 33}]", "clusterNetwork[0].hostPrefix: 33 is out of range [14, 30]"},
		{"clusterNetwork: [{cidr: 10.128.0.0/14, hostPrefix: 12}]", "clusterNetwork[0].hostPrefix: 12 is out of range [14, 30]"},
		{"clusterNetwork: [{cidr: banana, hostPrefix: 23}]", `clusterNetwork[0].cidr: "banana" is not an IPv4 CIDR`},
		{"clusterNetwork: [{cidr: 'fd00::/48', hostPrefix: 64}]", `clusterNetwork[0].cidr: "fd00::/48" is not an IPv4 CIDR`},
		{"clusterNetwork: [{cidr: 10.128.0.1/14, hostPrefix: 23}]", `clusterNetwork[0].cidr "10.128.0.1/14" has host bits set`},
		{"clusterNetwork: [{cidr: 10.128.0.0/14, hostPrefix: 23}, {cidr: 10.129.0.0/16, hostPrefix: 23}]", `clusterNetwork[1].cidr "10.129.0.0/16" overlaps clusterNetwork[0].cidr`},
		{"serviceNetwork: [10.128.0.0/16]", `serviceNetwork[0] "10.128.0.0/16" overlaps clusterNetwork[0].cidr "10.128.0.0/14"`},
		{"serviceNetwork: [172.30.0.0/16, 172.31.0.0/16]", "serviceNetwork: must have exactly one entry, has 2"},
		{"mode: OpenFlow", `mode: "OpenFlow" is not one of Subnet, Multitenant, NetworkPolicy`},
		{"vxlanPort: 70000", "vxlanPort: 70000 is out of range [1, 65535]"},
		{"mtu: 100", "mtu: 100 is out of range [576, 65536]"},
		{"logLevel: 11", "logLevel: 11 is out of range [0, 10]"},
		{"namespace: Bad_NS", `namespace: "Bad_NS"`},
		{"images: {pullPolicy: Sometimes}", `images.pullPolicy: "Sometimes" is not one of`},
		{"images: {node: 'a b'}", `images.node: "a b" contains white space`},
		{"node: {datapathType: dpdk}", `node.datapathType: "dpdk" is not one of system, netdev`},
		{"node: {cniBinDir: opt/cni/bin}", `node.cniBinDir: "opt/cni/bin" is not a clean absolute path`},
		{"controller: {metricsPort: 29101}", "controller.metricsPort: 29101 equals node.metricsPort"},
		{"controller: {replicas: 0}", "controller.replicas: 0 is out of range [1, 10]"},
		{"multitenant: {globalNamespaces: [Kube_System]}", `multitenant.globalNamespaces[0]: "Kube_System"`},
		{"apiServer: {host: h, port: 99999}", "apiServer.port: 99999 is out of range"},
		{"proxyMode: iptables", `proxyMode: "iptables" is not one of ovs, kube-proxy`},
		{"proxyMode: kube-proxy\nnode: {datapathType: netdev}", `proxyMode: "kube-proxy" cannot be used with node.datapathType "netdev"`},
		{"serviceNodePortRange: 32767-30000", `serviceNodePortRange: "32767-30000": want FROM-TO with 1 <= FROM <= TO <= 65535`},
		{"serviceNodePortRange: '30000'", `serviceNodePortRange: "30000": want FROM-TO`},
		{"serviceNodePortRange: 0-100", `serviceNodePortRange: "0-100": want FROM-TO`},
		{"serviceNodePortRange: 20000-32767", "serviceNodePortRange: 20000-32767 holds node.metricsPort 29101: with proxyMode ovs every port of the range"},
		{"serviceNodePortRange: 29100-29100", "serviceNodePortRange: 29100-29100 holds controller.metricsPort 29100"},
	} {
		_, err := Parse([]byte(tc.doc))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s) = %v, want an ErrInvalid containing %q", tc.doc, err, tc.want)
		}
	}
}

// TestConfigProxyModes: both proxy modes with their defaults; a node port range holding
// the metrics ports is only a problem when br0 takes the whole range (proxyMode ovs).
func TestConfigProxyModes(t *testing.T) {
	for _, tc := range []struct {
		doc       string
		mode      ProxyMode
		portRange string
	}{
		{"", ProxyModeOVS, "30000-32767"},
		{"node: {datapathType: netdev}", ProxyModeOVS, "30000-32767"},
		{"proxyMode: kube-proxy", ProxyModeKubeProxy, "30000-32767"},
		{"proxyMode: kube-proxy\nserviceNodePortRange: 20000-32767", ProxyModeKubeProxy, "20000-32767"},
		{"serviceNodePortRange: 1-29099", ProxyModeOVS, "1-29099"},
	} {
		cfg, err := Parse([]byte(tc.doc))
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.doc, err)
			continue
		}
		if cfg.ProxyMode != tc.mode || cfg.ServiceNodePortRange != tc.portRange {
			t.Errorf("Parse(%q): proxyMode %q serviceNodePortRange %q, want %q %q", tc.doc, cfg.ProxyMode, cfg.ServiceNodePortRange, tc.mode, tc.portRange)
		}
	}
}

func TestConfigListsEveryProblem(t *testing.T) {
	_, err := Parse([]byte("mtu: 1\nvxlanPort: 0\nlogLevel: -1\nmode: x"))
	var inv *InvalidError
	if !errors.As(err, &inv) || len(inv.Problems) != 3 {
		t.Fatalf("got %v, want three problems (vxlanPort 0 means the default)", err)
	}
}

func TestConfigRejectsUnknownKeys(t *testing.T) {
	_, err := Parse([]byte("clusterNetwork: [{cidr: 10.128.0.0/14, hostprefix: 23}]"))
	if err == nil || !strings.Contains(err.Error(), "hostprefix") {
		t.Errorf("misspelt key: got %v, want an error naming hostprefix", err)
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("mtu: 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+": invalid config: mtu: 1") {
		t.Errorf("Load = %v, want an error starting with the path and the field", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}
