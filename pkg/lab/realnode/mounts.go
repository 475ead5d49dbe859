package realnode

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// overlaid are the host directories a node sees through an overlay of its own
// (<Dir>/ov/<d>.upper): it may create and change files there, as on a machine of its own,
// without touching the host's.
var overlaid = []string{"etc", "opt", "usr", "var"}

// bind is a state directory of the node, <Dir>/<Dir> seen by the node at Target.
type bind struct{ Dir, Target string }

// binds are real directories rather than overlay files: containerd's overlayfs snapshots
// cannot live on overlayfs, and the lab reads and writes the others from outside.
var binds = []bind{
	{"containerd", "/var/lib/containerd"},
	{"kubelet", "/var/lib/kubelet"},
	{"cni/lib", "/var/lib/cni"},
	{"log", "/var/log"},
	{"cni/net.d", "/etc/cni/net.d"},
	{"cni/bin", "/opt/cni/bin"},
}

// mountpoints are created in the node's overlays: paths DaemonSets mount from every Linux
// host (hostPath type Directory) that this machine may lack.
var mountpoints = []string{"/usr/lib/modules"}

// setupScript runs inside the node's fresh mount namespace and network namespace, as
// `sh -c setupScript sh <Dir> <OVS run dir or ""> <lab root>`. Every mount it makes
// belongs to the node's mount namespace only (the namespace is private), so the host sees
// none of them and they all vanish with the namespace.
func setupScript() string {
	var b strings.Builder
	b.WriteString(`set -eu
D=$1 OVS=$2 ROOT=$3
# Copies of the host's mounts below /run and the lab's state dir (network namespaces, other
# nodes' mount namespaces): this node must not pin them, and gets a /run of its own below.
awk -v root="$ROOT/" '{ if (index($5, "/run/") == 1 || index($5"/", root) == 1) print $5 }' /proc/self/mountinfo |
  sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
`)
	for _, d := range overlaid {
		fmt.Fprintf(&b, "mount -t overlay node-%[1]s -o lowerdir=/%[1]s,upperdir=$D/ov/%[1]s.upper,workdir=$D/ov/%[1]s.work /%[1]s\n", d)
	}
	for _, m := range binds {
		fmt.Fprintf(&b, "mkdir -p %[2]s && mount --bind $D/%[1]s %[2]s\n", m.Dir, m.Target)
	}
	for _, m := range mountpoints {
		fmt.Fprintf(&b, "mkdir -p %s\n", m)
	}
	b.WriteString(`# /run: the node's own, with its Open vSwitch at /run/openvswitch.
if [ -n "$OVS" ]; then mount --bind "$OVS" "$D/run/openvswitch"; fi
mount --rbind "$D/run" /run
# /sys of the node's network namespace (/sys/class/net lists the node's devices), keeping
# the host's cgroup hierarchies: what ip netns exec does, minus losing the cgroups.
mkdir -p /run/.cgroup
mount --rbind /sys/fs/cgroup /run/.cgroup
umount -l /sys
mount -t sysfs sysfs /sys
mount --rbind /run/.cgroup /sys/fs/cgroup
umount -l /run/.cgroup
rmdir /run/.cgroup
# Shared propagation, as on a host booted by systemd: mounts the runtime makes below
# /run/netns or /var/lib/kubelet reach containers that mount them with propagation.
mount --make-rshared /
`)
	return b.String()
}

// makeDirs creates the node's directory tree.
func (c *Config) makeDirs() error {
	dirs := []string{c.nsDir(), c.logDir(), c.path("run", "openvswitch"), c.path("run", "netns")}
	for _, d := range overlaid {
		dirs = append(dirs, c.path("ov", d+".upper"), c.path("ov", d+".work"))
	}
	for _, m := range binds {
		dirs = append(dirs, c.path(m.Dir))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// createMountNS makes the node's persistent mount namespace, bound at <Dir>/ns/mnt like
// `ip netns` binds network namespaces, and returns its inode. The bind lives in a private
// bind mount of <Dir>/ns: a namespace file may not be bound where mounts propagate.
func (c *Config) createMountNS(ctx context.Context) (uint64, error) {
	if err := unix.Mount(c.nsDir(), c.nsDir(), "", unix.MS_BIND, ""); err != nil {
		return 0, fmt.Errorf("bind %s: %w", c.nsDir(), err)
	}
	if err := unix.Mount("", c.nsDir(), "", unix.MS_PRIVATE, ""); err != nil {
		return 0, fmt.Errorf("make %s private: %w", c.nsDir(), err)
	}
	if err := os.WriteFile(c.mntNS(), nil, 0o600); err != nil {
		return 0, err
	}
	if _, err := run(ctx, nil, "unshare", "--mount="+c.mntNS(), "--propagation", "private", "true"); err != nil {
		return 0, err
	}
	return nsInode(c.mntNS())
}

// setupMountNS runs setupScript in the node's namespaces.
func (c *Config) setupMountNS(ctx context.Context) error {
	argv := append(c.nsenter(), "/bin/sh", "-c", setupScript(), "sh", c.Dir, c.OVSRunDir, c.LabDir)
	if _, err := run(ctx, nil, argv...); err != nil {
		return fmt.Errorf("setting up the mount namespace: %w", err)
	}
	return nil
}

// nsenter is the command prefix that enters the node's network and mount namespaces.
func (c *Config) nsenter() []string {
	return []string{"nsenter", "--net=" + c.NetNS, "--mount=" + c.mntNS(), "--"}
}

// nsInode returns the inode of the namespace bound at path, which identifies it in
// /proc/<pid>/ns/*.
func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return 0, err
	}
	if fs.Type != unix.NSFS_MAGIC {
		return 0, fmt.Errorf("%s is not a namespace", path)
	}
	return st.Ino, nil
}

// mountsUnder lists the mount points at or below dir in this process's mount namespace,
// deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for space, …) of /proc/*/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll detaches every mount at or below dir (lazily, deepest first), so the node's
// mount namespace loses its last reference from the host.
func unmountAll(dir string) error {
	var errs []error
	for attempt := 0; attempt < 3; attempt++ {
		mps, err := mountsUnder(dir)
		if err != nil || len(mps) == 0 {
			return err
		}
		errs = errs[:0]
		for _, mp := range mps {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if mps, _ := mountsUnder(dir); len(mps) > 0 {
		errs = append(errs, fmt.Errorf("mounts left under %s: %v", dir, mps))
	}
	return errors.Join(errs...)
}

// run executes argv with env added and returns stdout; the error carries stderr.
func run(ctx context.Context, env []string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", shortCmd(argv), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// shortCmd names a command for errors without its (possibly long) script argument.
func shortCmd(argv []string) string {
	var parts []string
	for _, a := range argv {
		if len(a) > 80 {
			a = a[:77] + "..."
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
