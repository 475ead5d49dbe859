package clusternetwork

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/subnet"
)

func u32(v uint32) *uint32 { return &v }

// base returns a valid default ClusterNetwork; tests mutate a copy.
func base() *networkv1.ClusterNetwork {
	return &networkv1.ClusterNetwork{
		ObjectMeta:      metav1.ObjectMeta{Name: "default"},
		ClusterNetworks: []networkv1.ClusterNetworkEntry{{CIDR: "10.128.0.0/14", HostSubnetLength: 9}},
		ServiceNetwork:  "172.30.0.0/16",
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*networkv1.ClusterNetwork)
		want   Config
	}{{
		name:   "defaults",
		mutate: func(*networkv1.ClusterNetwork) {},
		want: Config{
			ClusterNetworks: []subnet.ClusterNetwork{{CIDR: netip.MustParsePrefix("10.128.0.0/14"), HostBits: 9}},
			ServiceNetwork:  netip.MustParsePrefix("172.30.0.0/16"),
			Mode:            ModeNetworkPolicy, PluginName: networkv1.NetworkPolicyPluginName,
			VXLANPort: 4789, MTU: 1450,
		},
	}, {
		name: "multitenant upper case, explicit port and mtu, two networks, legacy fields",
		mutate: func(cn *networkv1.ClusterNetwork) {
			cn.PluginName = "RedHat/OpenShift-OVS-Multitenant"
			cn.VXLANPort, cn.MTU = u32(4790), u32(9000)
			cn.Network, cn.HostSubnetLength = "10.128.0.0/14", 9
			cn.ClusterNetworks = append(cn.ClusterNetworks, networkv1.ClusterNetworkEntry{CIDR: "10.0.0.0/16", HostSubnetLength: 8})
		},
		want: Config{
			ClusterNetworks: []subnet.ClusterNetwork{
				{CIDR: netip.MustParsePrefix("10.128.0.0/14"), HostBits: 9},
				{CIDR: netip.MustParsePrefix("10.0.0.0/16"), HostBits: 8},
			},
			ServiceNetwork: netip.MustParsePrefix("172.30.0.0/16"),
			Mode:           ModeMultitenant, PluginName: networkv1.MultiTenantPluginName,
			VXLANPort: 4790, MTU: 9000,
		},
	}, {
		name: "subnet mode from legacy fields only",
		mutate: func(cn *networkv1.ClusterNetwork) {
			cn.ClusterNetworks = nil
			cn.Network, cn.HostSubnetLength = "10.1.0.0/16", 8
			cn.PluginName = networkv1.SingleTenantPluginName
		},
		want: Config{
			ClusterNetworks: []subnet.ClusterNetwork{{CIDR: netip.MustParsePrefix("10.1.0.0/16"), HostBits: 8}},
			ServiceNetwork:  netip.MustParsePrefix("172.30.0.0/16"),
			Mode:            ModeSubnet, PluginName: networkv1.SingleTenantPluginName,
			VXLANPort: 4789, MTU: 1450,
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cn := base()
			tc.mutate(cn)
			got, err := Parse(cn)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", *got, tc.want)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*networkv1.ClusterNetwork)
		want   []string // substrings of the error, in order of appearance
	}{{
		name: "overlapping cluster networks",
		mutate: func(cn *networkv1.ClusterNetwork) {
			cn.ClusterNetworks = append(cn.ClusterNetworks, networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/15", HostSubnetLength: 9})
		},
		want: []string{`clusternetwork "default": clusterNetworks[1].CIDR "10.128.0.0/15" overlaps clusterNetworks[0].CIDR "10.128.0.0/14"`},
	}, {
		name:   "no cluster networks",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.ClusterNetworks = nil },
		want:   []string{"clusterNetworks must have at least one entry"},
	}, {
		name:   "hostSubnetLength too small",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.ClusterNetworks[0].HostSubnetLength = 1 },
		want:   []string{"clusterNetworks[0].hostSubnetLength 1 is out of range [2, 30]"},
	}, {
		name:   "hostSubnetLength too large",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.ClusterNetworks[0].HostSubnetLength = 31 },
		want:   []string{"clusterNetworks[0].hostSubnetLength 31 is out of range [2, 30]"},
	}, {
		name: "hostSubnetLength exceeds host bits",
		mutate: func(cn *networkv1.ClusterNetwork) {
			cn.ClusterNetworks[0] = networkv1.ClusterNetworkEntry{CIDR: "10.128.0.0/24", HostSubnetLength: 9}
		},
		want: []string{`clusterNetworks[0].hostSubnetLength 9 exceeds the 8 host bits of CIDR "10.128.0.0/24"`},
	}, {
		name:   "bad CIDR",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.ClusterNetworks[0].CIDR = "10.128.0.0" },
		want:   []string{`clusterNetworks[0].CIDR "10.128.0.0" is not a CIDR`},
	}, {
		name:   "IPv6 CIDR",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.ClusterNetworks[0].CIDR = "fd00::/48" },
		want:   []string{`clusterNetworks[0].CIDR "fd00::/48" is not IPv4`},
	}, {
		name:   "host bits set",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.ClusterNetworks[0].CIDR = "10.128.0.1/14" },
		want:   []string{`clusterNetworks[0].CIDR "10.128.0.1/14" has host bits set (want "10.128.0.0/14")`},
	}, {
		name:   "service network overlap",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.ServiceNetwork = "10.130.0.0/16" },
		want:   []string{`serviceNetwork "10.130.0.0/16" overlaps clusterNetworks[0].CIDR "10.128.0.0/14"`},
	}, {
		name:   "service network missing",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.ServiceNetwork = "" },
		want:   []string{"serviceNetwork is required"},
	}, {
		name:   "legacy network differs",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.Network = "10.0.0.0/14" },
		want:   []string{`network "10.0.0.0/14" must equal clusterNetworks[0].CIDR "10.128.0.0/14"`},
	}, {
		name:   "legacy hostsubnetlength differs",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.HostSubnetLength = 8 },
		want:   []string{"hostsubnetlength 8 must equal clusterNetworks[0].hostSubnetLength 9"},
	}, {
		name:   "unknown plugin",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.PluginName = "cilium" },
		want:   []string{`pluginName "cilium" is not one of`},
	}, {
		name:   "vxlan port zero",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.VXLANPort = u32(0) },
		want:   []string{"vxlanPort 0 is out of range [1, 65535]"},
	}, {
		name:   "mtu too small",
		mutate: func(cn *networkv1.ClusterNetwork) { cn.MTU = u32(500) },
		want:   []string{"mtu 500 is out of range [576, 65536]"},
	}, {
		name: "several problems reported together",
		mutate: func(cn *networkv1.ClusterNetwork) {
			cn.ClusterNetworks[0].HostSubnetLength = 40
			cn.ServiceNetwork = "10.128.0.0/16"
		},
		want: []string{"clusterNetworks[0].hostSubnetLength 40", `serviceNetwork "10.128.0.0/16" overlaps`},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cn := base()
			tc.mutate(cn)
			before := cn.DeepCopy()
			cfg, err := Parse(cn)
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want error containing %q", cfg, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("error %q does not contain %q", msg, w)
				}
				msg = msg[i+len(w):]
			}
			if !reflect.DeepEqual(cn, before) {
				t.Errorf("Parse modified its input")
			}
		})
	}
}

func TestModeForPlugin(t *testing.T) {
	for name, want := range map[string]Mode{
		"":                                   ModeNetworkPolicy,
		"redhat/openshift-ovs-subnet":        ModeSubnet,
		" REDHAT/OPENSHIFT-OVS-SUBNET ":      ModeSubnet,
		"redhat/openshift-ovs-multitenant":   ModeMultitenant,
		"redhat/openshift-ovs-networkpolicy": ModeNetworkPolicy,
	} {
		got, err := ModeForPlugin(name)
		if err != nil || got != want {
			t.Errorf("ModeForPlugin(%q) = %q, %v; want %q", name, got, err, want)
		}
		if got.PluginName() == "" {
			t.Errorf("%q has no canonical plugin name", got)
		}
	}
	if !ModeMultitenant.AllowsRenumbering() || ModeNetworkPolicy.AllowsRenumbering() {
		t.Error("only multitenant allows renumbering")
	}
	if ModeSubnet.UsesVNIDs() || !ModeNetworkPolicy.UsesVNIDs() || !ModeMultitenant.UsesVNIDs() {
		t.Error("subnet mode must not use VNIDs, the others must")
	}
}

func TestContainsNodeSubnet(t *testing.T) {
	cfg, err := Parse(base())
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{
		"10.128.0.0/23": true, "10.131.254.0/23": true,
		"10.128.1.0/23": false, "10.128.0.0/24": false, "10.132.0.0/23": false, "172.30.0.0/23": false,
	} {
		if got := cfg.ContainsNodeSubnet(netip.MustParsePrefix(s)); got != want {
			t.Errorf("ContainsNodeSubnet(%s) = %v, want %v", s, got, want)
		}
	}
	if cfg.ContainsNodeSubnet(netip.Prefix{}) {
		t.Error("the zero Prefix is no node subnet")
	}
}
