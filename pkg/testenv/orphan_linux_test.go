package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperDirEnv tells TestOrphanHelperProcess, run in a child test binary, where to start
// its Env and write the pids of its processes.
const helperDirEnv = "OVS_SDN_TESTENV_ORPHAN_HELPER_DIR"

// TestOrphanHelperProcess is not a test on its own: TestKilledTestLeavesNoOrphans runs it
// in a child process, which it then SIGKILLs.
func TestOrphanHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper for TestKilledTestLeavesNoOrphans")
	}
	e, err := Start(t.Context(), Options{Dir: filepath.Join(dir, "env")})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	var pids []string
	for _, p := range e.procs {
		pids = append(pids, strconv.Itoa(p.cmd.Process.Pid))
	}
	if err := os.WriteFile(filepath.Join(dir, "pids.tmp"), []byte(strings.Join(pids, " ")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "pids.tmp"), filepath.Join(dir, "pids")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Hour) // until the parent kills us
}

func TestKilledTestLeavesNoOrphans(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^TestOrphanHelperProcess$", "-test.v")
	child.Env = append(os.Environ(), helperDirEnv+"="+dir)
	logPath := filepath.Join(dir, "child.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	child.Stdout, child.Stderr = logFile, logFile
	if err := child.Start(); err != nil {
		t.Fatalf("starting helper test binary: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = child.Wait(); close(exited) }()
	t.Cleanup(func() { _ = child.Process.Kill(); <-exited })

	pids := waitForPids(t, filepath.Join(dir, "pids"), exited, logPath)
	if len(pids) != 2 {
		t.Fatalf("helper reported pids %v, want etcd and kube-apiserver", pids)
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d not running before the helper was killed", pid)
		}
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("killing helper: %v", err)
	}
	<-exited
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("pid %d survived the kill -9 of its test binary", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// waitForPids waits up to 90s for the helper to write its pid file, failing early when the
// helper exits.
func waitForPids(t *testing.T, path string, exited <-chan struct{}, logPath string) []int {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			var pids []int
			for _, f := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("bad pid file %q: %v", b, err)
				}
				pids = append(pids, pid)
			}
			return pids
		}
		select {
		case <-exited:
			deadline = time.Time{}
		case <-time.After(100 * time.Millisecond):
		}
	}
	log, _ := os.ReadFile(logPath)
	t.Fatalf("helper exited or wrote no pids within 90s; its output:\n%s", log)
	return nil
}

// alive reports whether pid exists and is not a zombie (an exited process nobody reaped
// yet counts as dead).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may contain spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
