package netlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var errLabClosed = errors.New("lab is closed")

// spawner forks every long-lived child from one goroutine locked to its own OS thread, so
// that Pdeathsig means "dies with this process" rather than "dies with some thread"; see the
// package doc. stop() lets the goroutine return while still locked, which retires the thread
// (and so SIGKILLs any child started with Pdeathsig that is somehow still alive).
type spawner struct {
	reqs chan spawnReq
	quit chan struct{}
}

type spawnReq struct {
	cmd  *exec.Cmd
	errc chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq), quit: make(chan struct{})}
	go s.loop()
	return s
}

func (s *spawner) loop() {
	runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
	for {
		select {
		case r := <-s.reqs:
			r.errc <- r.cmd.Start()
		case <-s.quit:
			return
		}
	}
}

// start runs cmd.Start on the spawner thread.
func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnReq{cmd: cmd, errc: make(chan error, 1)}
	select {
	case s.reqs <- r:
		return <-r.errc
	case <-s.quit:
		return errLabClosed
	}
}

func (s *spawner) stop() { close(s.quit) }

// Process is a long-lived child started by the lab inside a namespace.
type Process struct {
	Name    string // unique within the lab, e.g. "a/ovs-vswitchd"
	LogPath string // stdout and stderr
	cmd     *exec.Cmd
	pidfile string
	done    chan struct{} // closed when the process has been reaped
	waitErr error
}

// startProcess starts argv inside ns (the caller's own namespace when ns is the zero
// NetNS) with env, logging to logPath and recording a pidfile in the lab's pids dir.
// detached selects a new session without Pdeathsig (sdn-lab); otherwise the child gets its
// own process group and Pdeathsig=SIGKILL.
func (l *Lab) startProcess(name string, ns NetNS, env []string, logPath string, argv ...string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer logf.Close()
	if ns.Name != "" {
		argv = append([]string{"ip", "netns", "exec", ns.Name}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if l.opts.detached {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := l.spawner.start(cmd); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, strings.Join(argv, " "), err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	p.pidfile = filepath.Join(l.pidDir(), strings.ReplaceAll(name, "/", "_")+".pid")
	if err := writePidfile(p.pidfile, cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
	}
	go p.reap()
	return p, err
}

// StartHost starts a long-lived process in the caller's own network namespace (the root
// namespace of sdn-lab and the tests), e.g. a node agent that reaches the API server on
// loopback and its node through --host-netns. It logs to logPath; Close stops it, Sweep
// kills it after a crash.
func (l *Lab) StartHost(name string, env []string, logPath string, argv ...string) (*Process, error) {
	return l.startTracked(name, NetNS{}, env, logPath, argv...)
}

func (p *Process) reap() {
	p.waitErr = p.cmd.Wait()
	close(p.done)
}

// Pid is the process id (the `ip netns exec` wrapper execs the command, keeping the pid).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited (and been reaped).
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to grace, then SIGKILLs and waits for the exit. Stopping an
// exited process is a no-op, so Stop is idempotent. It removes the pidfile.
func (p *Process) Stop(grace time.Duration) {
	if grace > 0 && !p.Exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	_ = os.Remove(p.pidfile)
}

// writePidfile records "pid starttime" so Sweep can tell our process from a reused pid.
func writePidfile(path string, pid int) error {
	st, err := procStartTime(pid)
	if err != nil {
		return fmt.Errorf("pidfile %s: %w", path, err)
	}
	data := fmt.Sprintf("%d %d\n", pid, st)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		return fmt.Errorf("pidfile %s: %w", path, err)
	}
	return nil
}

// procStartTime is field 22 of /proc/<pid>/stat (start time in clock ticks since boot).
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // comm may contain spaces
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64) // field 22 overall; fields[0] is field 3
}
