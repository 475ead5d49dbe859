package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ToolsBinEnv names the environment variable that points at the directory holding etcd,
// kube-apiserver and kube-controller-manager (the Makefile exports it).
const ToolsBinEnv = "TOOLS_BIN"

// Names of the control-plane binaries looked up in the tools directory.
const (
	etcdBinary              = "etcd"
	apiserverBinary         = "kube-apiserver"
	controllerManagerBinary = "kube-controller-manager"
	schedulerBinary         = "kube-scheduler"
)

// ErrBinaryMissing is wrapped by Start's error when a control-plane binary does not exist;
// StartT uses it to decide between skipping (under -short) and failing.
var ErrBinaryMissing = errors.New("control-plane binary missing")

// ToolsBin returns the directory holding the control-plane binaries: $TOOLS_BIN when set,
// else <module root>/_output/tools/bin, where the module root is the nearest directory at or
// above the working directory that holds go.mod.
func ToolsBin() (string, error) {
	if dir := os.Getenv(ToolsBinEnv); dir != "" {
		return dir, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("locating tools directory (set %s): %w", ToolsBinEnv, err)
	}
	return filepath.Join(root, "_output", "tools", "bin"), nil
}

// ModuleRoot walks up from the working directory to the first directory containing go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getting working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// binaries holds the absolute paths of the control-plane programs one Env runs.
type binaries struct {
	etcd, apiserver, controllerManager, scheduler string
}

// findBinaries resolves every binary opts needs in dir and reports all missing ones at once,
// wrapping ErrBinaryMissing, with the command that builds them.
func findBinaries(dir string, opts Options) (binaries, error) {
	b := binaries{
		etcd:              filepath.Join(dir, etcdBinary),
		apiserver:         filepath.Join(dir, apiserverBinary),
		controllerManager: filepath.Join(dir, controllerManagerBinary),
		scheduler:         filepath.Join(dir, schedulerBinary),
	}
	need := []string{b.etcd, b.apiserver}
	if opts.ControllerManager {
		need = append(need, b.controllerManager)
	}
	if opts.Scheduler {
		need = append(need, b.scheduler)
	}
	var missing []string
	for _, p := range need {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("%w: %v (build them with `make tools` or hack/tools.sh, or set %s)",
			ErrBinaryMissing, missing, ToolsBinEnv)
	}
	return b, nil
}
