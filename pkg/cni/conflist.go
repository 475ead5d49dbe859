package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ConflistName is the file the agent writes into the CNI config directory.
// The "10-" prefix sorts it before the runtimes' defaults.
const ConflistName = "10-ovs-sdn.conflist"

// PortmapPluginType is the CNI "type" of the hostPort plugin chained after
// ours: the standard portmap plugin (github.com/containernetworking/plugins
// plugins/meta/portmap, pinned in go.mod), installed next to sdn-cni under
// this name of our own so that it never replaces a portmap other software
// put into the host's CNI bin dir.
const PortmapPluginType = "ovs-sdn-portmap"

// conflist is the on-disk CNI network configuration list.
type conflist struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

type sdnPlugin struct {
	Type         string `json:"type"`
	ServerSocket string `json:"serverSocket,omitempty"`
}

// portmapPlugin is portmap's configuration: the runtime hands it the pod's
// hostPorts (capability portMappings) and it DNATs them in the node's
// iptables (chains CNI-HOSTPORT-*); snat masquerades hairpin and 127.0.0.1
// sources (it sets route_localnet on tun0 itself), so a hostPort with hostIP
// 127.0.0.1 is reachable from the node.
type portmapPlugin struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
	SNAT         bool            `json:"snat"`
	Backend      string          `json:"backend"`
}

// RenderConflist returns the content of the conflist: sdn-cni (type
// ovs-sdn) pointed at socketPath ("" or DefaultSocketPath: the key is
// omitted), then portmap for hostPorts. Pure.
func RenderConflist(socketPath string) ([]byte, error) {
	if socketPath == DefaultSocketPath {
		socketPath = ""
	}
	b, err := json.MarshalIndent(conflist{CNIVersion: "1.1.0", Name: NetworkName, Plugins: []any{
		sdnPlugin{Type: PluginType, ServerSocket: socketPath},
		portmapPlugin{Type: PortmapPluginType, Capabilities: map[string]bool{"portMappings": true},
			SNAT: true, Backend: "iptables"},
	}}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteConflist writes RenderConflist(socketPath) to
// <dir>/10-ovs-sdn.conflist (0644), atomically (temporary file + rename).
// The agent calls it once it is ready: the file's presence is the node's
// network-ready signal to the container runtime. Idempotent.
func WriteConflist(dir, socketPath string) error {
	b, err := RenderConflist(socketPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("CNI config dir: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".ovs-sdn-*.tmp")
	if err != nil {
		return fmt.Errorf("write CNI conflist: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write CNI conflist: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write CNI conflist: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write CNI conflist: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, ConflistName)); err != nil {
		return fmt.Errorf("write CNI conflist: %w", err)
	}
	return nil
}

// RemoveConflist removes <dir>/10-ovs-sdn.conflist (the agent calls it on
// shutdown, so the runtime stops scheduling pod networking here).
// Idempotent.
func RemoveConflist(dir string) error {
	err := os.Remove(filepath.Join(dir, ConflistName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove CNI conflist: %w", err)
	}
	return nil
}
