package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// cmdTimeout bounds every short-lived helper command (ip, ethtool, ovs-*ctl).
const cmdTimeout = 30 * time.Second

// NetNS names a network namespace created by `ip netns add`.
type NetNS struct {
	Name string // e.g. "lab1-a"
	Path string // "/run/netns/<Name>"
}

func netnsFor(name string) NetNS {
	return NetNS{Name: name, Path: filepath.Join("/run/netns", name)}
}

// Exec runs argv inside the namespace (`ip netns exec`) and returns its stdout. The error
// names the command and carries its stderr.
func (n NetNS) Exec(ctx context.Context, argv ...string) (string, error) {
	return run(ctx, nil, append([]string{"ip", "netns", "exec", n.Name}, argv...)...)
}

// ip runs `ip -n <ns> args...`.
func (n NetNS) ip(args ...string) error {
	_, err := runT(nil, append([]string{"ip", "-n", n.Name}, args...)...)
	return err
}

// txOff turns TX checksum offload (and with it TSO) off on dev; see the package doc.
func (n NetNS) txOff(dev string) error {
	_, err := n.Exec(context.Background(), "ethtool", "-K", dev, "tx", "off")
	if err != nil {
		return fmt.Errorf("tx offload off on %s in %s: %w", dev, n.Name, err)
	}
	return nil
}

// arpIgnore makes the kernel answer ARP only for addresses on the interface the request came
// in on (net.ipv4.conf.all.arp_ignore=1, which applies to every device, later ones too). A
// node's OVS ports (eth0, pod veths) are ordinary kernel devices that also see every frame
// the userspace datapath reads from them; with the default 0, the kernel answers a request
// for the node IP that arrives on eth0 with eth0's MAC, the peer's vswitchd may cache that
// MAC as the tunnel neighbour, and VXLAN sent to it bypasses tnl_pop and lands in the kernel
// (UDP port 4789 unreachable). See the package doc.
func (n NetNS) arpIgnore() error {
	_, err := n.Exec(context.Background(), "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1")
	if err != nil {
		return fmt.Errorf("arp_ignore in %s: %w", n.Name, err)
	}
	return nil
}

// createNetNS creates the namespace and brings its loopback up. An existing namespace of the
// same name is an error (it belongs to someone else or to a run that was not swept).
func createNetNS(name string) (NetNS, error) {
	n := netnsFor(name)
	if _, err := runT(nil, "ip", "netns", "add", name); err != nil {
		return n, fmt.Errorf("create netns %s: %w", name, err)
	}
	if err := n.ip("link", "set", "lo", "up"); err != nil {
		return n, fmt.Errorf("loopback up in netns %s: %w", name, err)
	}
	return n, nil
}

// deleteNetNS removes the namespace; a missing one is not an error, so it is idempotent.
func deleteNetNS(name string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := runT(nil, "ip", "netns", "del", name); err != nil {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

// runT is run with the default timeout.
func runT(env []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	return run(ctx, env, argv...)
}

// run executes argv with env added to the environment and returns stdout.
func run(ctx context.Context, env []string, argv ...string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("run: empty command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s",
			strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
