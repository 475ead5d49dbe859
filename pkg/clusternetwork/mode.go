package clusternetwork

import (
	"fmt"
	"strings"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

// Mode is the isolation mode selected by ClusterNetwork.pluginName.
type Mode string

// The three isolation modes (reference §1). The zero value is not a mode;
// Parse always returns one of these.
const (
	// ModeSubnet is the flat network: no NetNamespaces, VNID 0 everywhere.
	ModeSubnet Mode = "Subnet"
	// ModeMultitenant isolates namespaces by VNID and honours join/isolate/global.
	ModeMultitenant Mode = "Multitenant"
	// ModeNetworkPolicy gives every namespace a unique VNID and enforces
	// Kubernetes NetworkPolicy. It is the default.
	ModeNetworkPolicy Mode = "NetworkPolicy"
)

// pluginModes maps the lower-cased plugin names to modes; pluginName is
// matched case-insensitively, as OpenShift SDN did.
var pluginModes = map[string]Mode{
	networkv1.SingleTenantPluginName:  ModeSubnet,
	networkv1.MultiTenantPluginName:   ModeMultitenant,
	networkv1.NetworkPolicyPluginName: ModeNetworkPolicy,
}

// PluginName returns the canonical (lower-case) plugin name of m, or "" for
// an unknown mode.
func (m Mode) PluginName() string {
	for name, mode := range pluginModes {
		if mode == m {
			return name
		}
	}
	return ""
}

// UsesVNIDs reports whether namespaces get NetNamespaces and VNIDs in m
// (multitenant and networkpolicy; not subnet).
func (m Mode) UsesVNIDs() bool { return m == ModeMultitenant || m == ModeNetworkPolicy }

// AllowsRenumbering reports whether NetNamespace netids may be changed with
// the change-network annotation (multitenant only).
func (m Mode) AllowsRenumbering() bool { return m == ModeMultitenant }

// ModeForPlugin returns the mode of a pluginName, matched case-insensitively
// and ignoring surrounding space. An empty name selects ModeNetworkPolicy.
func ModeForPlugin(pluginName string) (Mode, error) {
	name := strings.ToLower(strings.TrimSpace(pluginName))
	if name == "" {
		return ModeNetworkPolicy, nil
	}
	if m, ok := pluginModes[name]; ok {
		return m, nil
	}
	return "", fmt.Errorf("pluginName %q is not one of %s, %s, %s", pluginName,
		networkv1.SingleTenantPluginName, networkv1.MultiTenantPluginName, networkv1.NetworkPolicyPluginName)
}
