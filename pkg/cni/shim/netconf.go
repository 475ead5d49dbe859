package shim

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"
	"github.com/containernetworking/cni/pkg/version"
)

// PluginType is the CNI "type" of the plugin; the runtime execs the binary
// of that name (install cmd/sdn-cni as <CNI bin dir>/ovs-sdn).
const PluginType = "ovs-sdn"

// DefaultSocketPath is where the node agent serves the CNI protocol unless
// the netconf says otherwise ("serverSocket").
const DefaultSocketPath = "/var/run/ovs-sdn/cni-server.sock"

// supportedVersions are the CNI spec versions the plugin accepts; results
// are answered in the version of the request.
var supportedVersions = []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// PluginVersions is the version.PluginInfo of sdn-cni.
func PluginVersions() version.PluginInfo { return version.PluginSupports(supportedVersions...) }

// NetConf is the plugin's network configuration (the runtime's stdin).
type NetConf struct {
	types.PluginConf
	// ServerSocket overrides DefaultSocketPath; it must be absolute.
	ServerSocket string `json:"serverSocket,omitempty"`
}

// SocketPath returns ServerSocket or DefaultSocketPath.
func (c *NetConf) SocketPath() string {
	if c.ServerSocket != "" {
		return c.ServerSocket
	}
	return DefaultSocketPath
}

// ParseNetConf decodes and validates a netconf. Errors are *types.Error
// with the CNI code a runtime expects: 6 undecodable, 7 invalid, 1 an
// unsupported cniVersion.
func ParseNetConf(b []byte) (*NetConf, error) {
	var c NetConf
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "ovs-sdn: network configuration is not valid JSON", err.Error())
	}
	if c.Type != PluginType {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("ovs-sdn: network configuration has type %q, want %q", c.Type, PluginType), "")
	}
	if err := utils.ValidateNetworkName(c.Name); err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "ovs-sdn: invalid network name: "+err.Msg, err.Details)
	}
	if !slices.Contains(supportedVersions, c.CNIVersion) {
		return nil, types.NewError(types.ErrIncompatibleCNIVersion,
			fmt.Sprintf("ovs-sdn: unsupported cniVersion %q", c.CNIVersion),
			"supported: "+strings.Join(supportedVersions, ", "))
	}
	if c.ServerSocket != "" && (!filepath.IsAbs(c.ServerSocket) || len(c.ServerSocket) > 107) {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("ovs-sdn: serverSocket %q must be an absolute path of at most 107 bytes", c.ServerSocket), "")
	}
	if c.RawPrevResult != nil {
		if err := version.ParsePrevResult(&c.PluginConf); err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "ovs-sdn: invalid prevResult", err.Error())
		}
	}
	return &c, nil
}
