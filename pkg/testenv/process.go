package testenv

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// process is one control-plane program started by an Env. Its stdout and stderr go to a
// log file in the Env directory, so a failure can quote the end of it.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // valid after done is closed
}

// exited reports whether the process has terminated.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop terminates the process group: SIGTERM, then SIGKILL after grace. It waits until the
// process is reaped and is a no-op for a process that already exited.
func (p *process) stop(grace time.Duration) error {
	defer p.logFile.Close()
	if p.exited() {
		return nil
	}
	if err := signalGroup(p.cmd.Process, termSignal); err != nil && !p.exited() {
		return fmt.Errorf("signalling %s (pid %d): %w", p.name, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	if err := signalGroup(p.cmd.Process, killSignal); err != nil && !p.exited() {
		return fmt.Errorf("killing %s (pid %d): %w", p.name, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// logTail returns the last lines of the process's log, for error messages.
func (p *process) logTail() string {
	return tailFile(p.logPath, 40, 8<<10)
}

// describeExit explains why a process that should be running is not.
func (p *process) describeExit() string {
	if !p.exited() {
		return ""
	}
	return fmt.Sprintf("%s exited: %v", p.name, p.waitErr)
}

// tailFile returns at most maxLines lines from the last maxBytes bytes of path, or a note
// when the file cannot be read.
func tailFile(path string, maxLines int, maxBytes int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(log %s unreadable: %v)", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxBytes {
		if _, err := f.Seek(-maxBytes, io.SeekEnd); err != nil {
			return fmt.Sprintf("(log %s unreadable: %v)", path, err)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(log %s unreadable: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.Join(lines, "\n")
}

// spawner starts processes from one goroutine locked to its OS thread for the lifetime of
// the Env. Pdeathsig fires when the *thread* that forked the child exits, not the process;
// a Go thread exits whenever a goroutine that locked it (for instance network-namespace
// code) returns without unlocking. Forking from a thread nobody else can run on means the
// children die exactly when the test binary dies or the Env is stopped — never earlier.
type spawner struct {
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	errc chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq)}
	go s.loop()
	return s
}

func (s *spawner) loop() {
	// Deliberately never unlocked: when close() ends this goroutine the thread is
	// discarded, and by then every child has been stopped.
	runtime.LockOSThread()
	for r := range s.reqs {
		r.errc <- r.cmd.Start()
	}
}

// start runs cmd.Start on the spawner's thread.
func (s *spawner) start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, errc: errc}
	return <-errc
}

// close ends the spawner goroutine; call it only after every child has exited.
func (s *spawner) close() { close(s.reqs) }

// startProcess starts bin with args, logging to logPath, in its own process group with
// SIGKILL as parent-death signal (on Linux).
func (s *spawner) startProcess(name, bin string, args []string, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating log file for %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Stdin = bytes.NewReader(nil)
	cmd.SysProcAttr = childSysProcAttr()
	if err := s.start(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, logFile: logFile, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}
