package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
)

// execCmd runs CMD inside the node's netns with the OVS tools pointed at the
// node's OVS (OVS_RUNDIR & co.) and KUBECONFIG set. sdnctl is special: it
// runs in the root netns (it needs the API server, which listens on the root
// namespace's loopback; br0 and OVSDB are unix sockets, reachable from
// anywhere) and `sdnctl flows` gets the node's --ofctl-target and --ovsdb.
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
	env := append(os.Environ(), acc.Env...)
	env = append(env, "KUBECONFIG="+acc.Kubeconfig)
	if filepath.Base(argv[0]) == "sdnctl" {
		argv = sdnctlArgs(argv, acc)
	} else {
		argv = append([]string{"ip", "netns", "exec", acc.NetNS}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.Env = os.Stdin, os.Stdout, os.Stderr, env
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("exec %v: %w", argv, err)
	}
	return 0, nil
}

// sdnctlArgs resolves sdnctl (next to sdn-lab when not on PATH) and adds
// the node's OVS endpoints to `flows`.
func sdnctlArgs(argv []string, acc lab.NodeAccess) []string {
	bin := argv[0]
	if _, err := exec.LookPath(bin); err != nil {
		if self, err := os.Executable(); err == nil {
			bin = filepath.Join(filepath.Dir(self), "sdnctl")
		}
	}
	out := []string{bin}
	out = append(out, argv[1:]...)
	if len(argv) > 1 && argv[1] == "flows" {
		out = append(out, "--ofctl-target", acc.Ofctl, "--ovsdb", acc.DBSock)
	}
	return out
}
