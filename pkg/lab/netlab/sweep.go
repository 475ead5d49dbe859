package netlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Sweep removes everything a previous Lab with this prefix may have left behind (a crashed
// test, a killed sdn-lab): it SIGKILLs the processes recorded in the lab's pidfiles (checking
// the recorded start time, so a reused pid is left alone) and any process whose command line
// names the lab's state dir, deletes every netns named "<prefix>-*", and removes the state
// dir. It is idempotent and a no-op when nothing is left. It must not be called while a Lab
// with the same prefix is in use.
func Sweep(prefix string, opts ...Option) error {
	if err := ValidPrefix(prefix); err != nil {
		return err
	}
	o := buildOptions(opts)
	stateDir := filepath.Join(o.stateRoot, prefix)
	errs := []error{killLabProcesses(stateDir)}
	errs = append(errs, deleteNetNSByPrefix(prefix+"-")...)
	if err := os.RemoveAll(stateDir); err != nil {
		errs = append(errs, fmt.Errorf("remove state dir: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sweep lab %q: %w", prefix, err)
	}
	return nil
}

// killLabProcesses kills the lab's processes and waits (up to 5 s) until they are gone.
func killLabProcesses(stateDir string) error {
	pids := pidsFromPidfiles(filepath.Join(stateDir, "pids"))
	pids = append(pids, pidsNaming(stateDir+"/")...)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for processAlive(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("process %d survived SIGKILL", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// processAlive is true while pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(string(b[i:]), ") Z")
}

// pidsFromPidfiles returns the live pids recorded in dir/*.pid whose start time matches.
func pidsFromPidfiles(dir string) []int {
	files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var pid int
		var start uint64
		if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil {
			continue
		}
		if st, err := procStartTime(pid); err == nil && st == start {
			pids = append(pids, pid)
		}
	}
	return pids
}

// PidsNaming returns the pids of processes whose command line contains s (used with a state
// dir path: every OVS daemon of a lab names its files there).
func PidsNaming(s string) []int { return pidsNaming(s) }

func pidsNaming(s string) []int {
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) && processAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// NetNSWithPrefix lists the named network namespaces whose name starts with p.
func NetNSWithPrefix(p string) []string {
	entries, _ := os.ReadDir("/run/netns")
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), p) {
			names = append(names, e.Name())
		}
	}
	return names
}

func deleteNetNSByPrefix(p string) []error {
	var errs []error
	for _, name := range NetNSWithPrefix(p) {
		errs = append(errs, deleteNetNS(name))
	}
	return errs
}
