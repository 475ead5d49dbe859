package realnode

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// cgroupMounts returns the mount points of every cgroup hierarchy (v1 and v2) of this
// process's mount namespace, e.g. /sys/fs/cgroup/cpu, …, /sys/fs/cgroup/systemd,
// /sys/fs/cgroup/unified.
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mount-point ... - fstype source options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, typ := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(typ) > 0 && (typ[0] == "cgroup" || typ[0] == "cgroup2") {
			out = append(out, unescapeMountinfo(fields[4]))
		}
	}
	sort.Strings(out)
	return out, sc.Err()
}

// cgroupHierarchies is where createCgroupRoot and its inverse work; a field so tests can
// point them at a fake tree.
type cgroupTree struct {
	mounts []string // hierarchy mount points
}

func hostCgroups() (cgroupTree, error) {
	m, err := cgroupMounts()
	if err != nil {
		return cgroupTree{}, err
	}
	if len(m) == 0 {
		return cgroupTree{}, errors.New("no cgroup hierarchy is mounted")
	}
	return cgroupTree{mounts: m}, nil
}

// create makes root (e.g. /sdnlab-node1) in every hierarchy, as the kubelet's cgroupRoot
// must exist beforehand; in cpuset hierarchies it copies cpuset.cpus and cpuset.mems from
// the parent (a v1 cpuset cgroup admits no task before both are set). Idempotent.
func (t cgroupTree) create(root string) error {
	for _, m := range t.mounts {
		dir := filepath.Join(m, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			b, err := os.ReadFile(filepath.Join(m, f))
			if err != nil {
				continue // not a v1 cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				return fmt.Errorf("cgroup %s: %s: %w", dir, f, err)
			}
		}
	}
	return nil
}

// pids returns every process in root or below, in any hierarchy.
func (t cgroupTree) pids(root string) []int {
	seen := map[int]bool{}
	for _, m := range t.mounts {
		_ = filepath.WalkDir(filepath.Join(m, root), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	out := make([]int, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

// remove deletes root and every cgroup below it in every hierarchy, deepest first,
// retrying for up to timeout while cgroups are still busy (processes just killed). A
// missing root is not an error.
func (t cgroupTree) remove(root string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		left := t.removeOnce(root)
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups left: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (t cgroupTree) removeOnce(root string) []string {
	var left []string
	for _, m := range t.mounts {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(m, root), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- { // children before parents
			if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
				left = append(left, dirs[i])
			}
		}
	}
	return left
}
