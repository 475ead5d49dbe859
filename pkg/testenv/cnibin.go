package testenv

import (
	"fmt"
	"os/exec"
	"path/filepath"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
)

// PortmapPackage is the standard portmap CNI plugin, a tool of go.mod (pinned there); the
// conflist chains it after sdn-cni as cni.PortmapPluginType.
const PortmapPackage = "github.com/containernetworking/plugins/plugins/meta/portmap"

// BuildCNIBin builds the plugins the agent's conflist names into dir, under the names the
// runtime looks for: cmd/sdn-cni as cni.PluginType and portmap as cni.PortmapPluginType.
// Each is written whole by go build; call it once per test binary (the Go build cache
// makes a second call cheap).
func BuildCNIBin(dir string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	for name, pkg := range map[string]string{
		cni.PluginType:        "./cmd/sdn-cni",
		cni.PortmapPluginType: PortmapPackage,
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}
