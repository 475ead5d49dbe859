package realnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sweep removes everything the nodes whose directories are below root left behind (a
// crashed test, a killed sdn-lab): for every directory holding a state.json, the
// processes in the node's mount namespace or cgroups, every mount below it, its cgroups
// and the directory. It is idempotent and must not run while those nodes are in use.
func Sweep(root string) error {
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, stateFile)); err == nil {
			errs = append(errs, sweepNode(dir))
		}
	}
	return errors.Join(errs...)
}

// sweepNode kills the node's processes, releases its mounts, removes its cgroups and dir.
func sweepNode(dir string) error {
	st, err := readState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	for round := 0; round < 3; round++ { // a process may fork while we kill
		pids := nodePids(st, dir)
		if len(pids) == 0 {
			break
		}
		errs = append(errs, killAll(pids))
	}
	errs = append(errs, unmountAll(dir))
	if st.CgroupRoot != "" {
		if cg, err := hostCgroups(); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, cg.remove(st.CgroupRoot, 10*time.Second))
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sweeping node %s: %w", dir, err)
	}
	return nil
}

func readState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// nodePids returns the processes in the node's cgroups and, while the node's mount
// namespace is still bound at <dir>/ns/mnt, in that namespace (the inode alone could be
// reused by a later namespace).
func nodePids(st state, dir string) []int {
	seen := map[int]bool{}
	if st.CgroupRoot != "" {
		if cg, err := hostCgroups(); err == nil {
			for _, p := range cg.pids(st.CgroupRoot) {
				seen[p] = true
			}
		}
	}
	if ino, err := nsInode(filepath.Join(dir, "ns", "mnt")); err == nil && ino == st.MountNS {
		for _, p := range pidsInMountNS(ino) {
			seen[p] = true
		}
	}
	delete(seen, os.Getpid())
	out := make([]int, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	return out
}

// pidsInMountNS lists the processes whose mount namespace has inode ino.
func pidsInMountNS(ino uint64) []int {
	want := fmt.Sprintf("mnt:[%d]", ino)
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "mnt")); err == nil && l == want {
			out = append(out, pid)
		}
	}
	return out
}

// alive is true while pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(string(b[i:]), ") Z")
}
