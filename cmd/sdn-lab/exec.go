package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
)

// execCmd runs CMD inside the node's netns with the OVS tools pointed at the
// node's OVS (OVS_RUNDIR & co.) and KUBECONFIG set. sdnctl is special: it
// runs in the root netns (it needs the API server, which listens on the root
// namespace's loopback; br0 and OVSDB are unix sockets, reachable from
// anywhere), `sdnctl flows` gets the node's --ofctl-target and --ovsdb and
// `sdnctl trace` every node's OVS (--ovs-rundir-root).
func execCmd(args []string) (int, error) {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	dir := fs.String("state-dir", lab.DefaultStateDir, "state directory of the running lab")
	_ = fs.Parse(args)
	rest := fs.Args()
	if len(rest) >= 2 && rest[1] == "--" {
		rest = append(rest[:1], rest[2:]...)
	}
	if len(rest) < 2 {
		return 0, errors.New("usage: sdn-lab exec NODE -- CMD [ARG...]")
	}
	acc, err := lab.Access(*dir, rest[0])
	if err != nil {
		return 0, err
	}
	argv := rest[1:]
	switch {
	case filepath.Base(argv[0]) == "sdnctl":
		argv = sdnctlArgs(argv, acc)
	case acc.MountNS != "":
		// A real node: its network and mount namespaces, where containerd, crictl's
		// configuration, the node's OVS and CNI files are at their usual paths.
		argv = append([]string{"nsenter", "--net=/run/netns/" + acc.NetNS, "--mount=" + acc.MountNS, "--"}, argv...)
		return runAttached(argv, []string{"PATH=" + acc.ToolsBin + ":" + os.Getenv("PATH")})
	default:
		argv = append([]string{"ip", "netns", "exec", acc.NetNS}, argv...)
	}
	return runAttached(argv, append(acc.Env, "KUBECONFIG="+acc.Kubeconfig))
}

// traceCmd is `sdn-lab trace [--state-dir DIR] SRC DST [sdnctl trace flags]`:
// sdnctl trace against the running lab, with every node's OVS and the lab's
// kubeconfig. It needs no node: the trace runs on the nodes the packet
// crosses.
func traceCmd(args []string) (int, error) {
	dir, rest, err := splitStateDir(args)
	if err != nil {
		return 0, err
	}
	if len(rest) < 2 {
		return 0, errors.New("usage: sdn-lab trace [--state-dir DIR] SRC DST [--port P] [--protocol tcp|udp|sctp]")
	}
	root, _, err := lab.OVSRunDirRoot(dir)
	if err != nil {
		return 0, err
	}
	acc := lab.NodeAccess{OVSRunDirRoot: root, Kubeconfig: lab.KubeconfigPath(dir)}
	argv := sdnctlArgs(append([]string{"sdnctl", "trace"}, rest...), acc)
	return runAttached(argv, []string{"KUBECONFIG=" + acc.Kubeconfig})
}

// splitStateDir takes --state-dir out of args; the rest goes to sdnctl as is
// (its flags are not sdn-lab's).
func splitStateDir(args []string) (dir string, rest []string, err error) {
	dir = lab.DefaultStateDir
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--":
			return dir, append(rest, args[i:]...), nil
		case a == "--state-dir" || a == "-state-dir":
			if i+1 >= len(args) {
				return "", nil, errors.New("--state-dir needs a directory")
			}
			dir = args[i+1]
			i++
		case strings.HasPrefix(a, "--state-dir=") || strings.HasPrefix(a, "-state-dir="):
			dir = a[strings.Index(a, "=")+1:]
		default:
			rest = append(rest, a)
		}
	}
	return dir, rest, nil
}

// runAttached runs argv with the terminal's stdio and extra environment, and
// returns its exit code.
func runAttached(argv, extraEnv []string) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), extraEnv...)
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("exec %v: %w", argv, err)
	}
	return 0, nil
}

// sdnctlArgs resolves sdnctl (a bare "sdnctl" is the one next to sdn-lab,
// built from the same tree, else the one on PATH) and adds the node's OVS
// endpoints to `flows` and every node's OVS run directory to `trace`, unless
// the command names them itself.
func sdnctlArgs(argv []string, acc lab.NodeAccess) []string {
	bin := argv[0]
	if bin == "sdnctl" {
		if self, err := os.Executable(); err == nil {
			if sib := filepath.Join(filepath.Dir(self), "sdnctl"); isExecutable(sib) {
				bin = sib
			}
		}
	}
	out := []string{bin}
	out = append(out, argv[1:]...)
	if len(argv) < 2 {
		return out
	}
	switch argv[1] {
	case "flows":
		if acc.Ofctl != "" && !hasFlag(argv, "--ofctl-target") {
			out = append(out, "--ofctl-target", acc.Ofctl)
		}
		if acc.DBSock != "" && !hasFlag(argv, "--ovsdb") {
			out = append(out, "--ovsdb", acc.DBSock)
		}
	case "trace":
		if acc.OVSRunDirRoot != "" && !hasFlag(argv, "--ovs-rundir-root") {
			out = append(out, "--ovs-rundir-root", acc.OVSRunDirRoot)
		}
	}
	return out
}

// hasFlag reports whether args set flag (as "--flag V" or "--flag=V"),
// before a "--" that ends the flags.
func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
