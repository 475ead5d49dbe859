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

// conflist is the on-disk CNI network configuration list.
type conflist struct {
	CNIVersion string           `json:"cniVersion"`
	Name       string           `json:"name"`
	Plugins    []conflistPlugin `json:"plugins"`
}

type conflistPlugin struct {
	Type         string `json:"type"`
	ServerSocket string `json:"serverSocket,omitempty"`
}

// WriteConflist writes <dir>/10-ovs-sdn.conflist (0644), atomically
// (temporary file + rename), pointing the plugin at socketPath ("" or
// DefaultSocketPath: the key is omitted). The agent calls it once it is
// ready: the file's presence is the node's network-ready signal to the
// container runtime. Idempotent.
func WriteConflist(dir, socketPath string) error {
	if socketPath == DefaultSocketPath {
		socketPath = ""
	}
	b, err := json.MarshalIndent(conflist{CNIVersion: "1.1.0", Name: NetworkName,
		Plugins: []conflistPlugin{{Type: PluginType, ServerSocket: socketPath}}}, "", "  ")
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
	if _, err := tmp.Write(append(b, '\n')); err != nil {
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
