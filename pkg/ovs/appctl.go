package ovs

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Appctl runs `ovs-appctl -t target --timeout=… args…` against a daemon's
// control socket (e.g. ovs-vswitchd.<pid>.ctl) and returns its output. It
// gives up after timeout (the daemon may be stuck); a non-zero exit is an
// error carrying the output.
func Appctl(ctx context.Context, timeout time.Duration, target string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	argv := append([]string{"-t", target, fmt.Sprintf("--timeout=%d", int(timeout.Seconds()+0.5))}, args...)
	out, err := exec.CommandContext(ctx, "ovs-appctl", argv...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ovs-appctl %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
