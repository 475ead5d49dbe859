package kubelet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// netnsDir is where `ip netns add` bind-mounts named namespaces.
const netnsDir = "/run/netns"

// sandbox is the network side of one running pod. Fields are written by the pod's worker
// only (the queue serializes a key); readers (Probe, SCTPSeen) take Kubelet.mu.
type sandbox struct {
	key         types.NamespacedName
	uid         types.UID
	id          string // CNI container ID
	netns       string // netns name; "" for hostNetwork pods
	netnsPath   string // where servers and probes run
	hostNetwork bool
	added       bool         // CNI ADD succeeded (DEL is due)
	ips         []netip.Addr // from the CNI result (or the node IP)
	servers     *podServers
}

// sandboxID derives the CNI container ID of a pod: 64 hex digits, like a runtime's, but
// stable across kubelet restarts (see the package doc).
func sandboxID(uid types.UID) string {
	sum := sha256.Sum256([]byte("sdn-lab-sandbox/" + string(uid)))
	return hex.EncodeToString(sum[:])
}

// podNetNSName is the netns of the sandbox with the given ID.
func (k *Kubelet) podNetNSName(id string) string { return k.cfg.PodNetNSPrefix + id[:10] }

// ensureNetNS creates the named netns with loopback up, or reuses an existing one (left by
// an earlier run for the same pod UID). Idempotent.
func ensureNetNS(ctx context.Context, name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err == nil {
		return ipCmd(ctx, "-n", name, "link", "set", "lo", "up")
	}
	if err := ipCmd(ctx, "netns", "add", name); err != nil {
		return err
	}
	return ipCmd(ctx, "-n", name, "link", "set", "lo", "up")
}

// deleteNetNS removes the named netns; a missing one is not an error.
func deleteNetNS(ctx context.Context, name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return ipCmd(ctx, "netns", "del", name)
}

// netnsWithPrefix lists named netns starting with prefix.
func netnsWithPrefix(prefix string) []string {
	entries, _ := os.ReadDir(netnsDir)
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

func ipCmd(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
