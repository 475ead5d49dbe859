package cni_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
)

// lightServer is a CNI server with no OVS behind it (a bogus OVSDB
// endpoint, dialed only when a request gets that far): enough for requests
// that must fail before touching the node.
func lightServer(t *testing.T) (sock string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "cni")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock = filepath.Join(dir, "run", "cni.sock")
	pn := &fakeNet{ready: true, vnids: map[string]uint32{"team-a": 1}, added: map[string]cni.PodPort{},
		cfg: cni.NodeConfig{Subnet: netip.MustParsePrefix("10.128.2.0/24"), MTU: 1450}}
	srv, err := cni.NewServer(cni.ServerConfig{SocketPath: sock, StateDir: filepath.Join(dir, "state"),
		OVSDBEndpoint: "unix:" + filepath.Join(dir, "no-ovsdb.sock"), PodNetwork: pn})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done; _ = srv.Close() })
	return sock
}

// invocation is one exec of the plugin binary.
type invocation struct {
	env   map[string]string
	stdin string
}

func netconf(version, socket string) string {
	b, _ := json.Marshal(map[string]string{"cniVersion": version, "name": "ovs-sdn", "type": "ovs-sdn", "serverSocket": socket})
	return string(b)
}

func (in invocation) run(t *testing.T) (stdout string, err *types.Error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(pluginDir(t), cni.PluginType))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range in.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(in.stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	runErr := cmd.Run()
	if runErr == nil {
		return out.String(), nil
	}
	var e types.Error
	if jerr := json.Unmarshal(out.Bytes(), &e); jerr != nil {
		t.Fatalf("plugin failed (%v) without a CNI error on stdout: %q", runErr, out.String())
	}
	return out.String(), &e
}

// TestBadInput: every kind of bad input gets the CNI error code a runtime
// expects and a message that says what to do.
func TestBadInput(t *testing.T) {
	sock := lightServer(t)
	missing := filepath.Join(t.TempDir(), "nothing-here.sock")
	addEnv := func(over map[string]string) map[string]string {
		env := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/run/netns/does-not-exist",
			"CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web"}
		for k, v := range over {
			if v == "" {
				delete(env, k)
			} else {
				env[k] = v
			}
		}
		return env
	}
	cases := []struct {
		name     string
		in       invocation
		wantCode uint
		wantMsg  string
	}{
		{"malformed netconf", invocation{addEnv(nil), `{"cniVersion": "1.1.0", "name": `}, types.ErrDecodingFailure, "network config"},
		{"wrong type", invocation{addEnv(nil), `{"cniVersion":"1.1.0","name":"x","type":"bridge"}`}, types.ErrInvalidNetworkConfig, `want "ovs-sdn"`},
		{"relative socket", invocation{addEnv(nil), netconf("1.1.0", "run/cni.sock")}, types.ErrInvalidNetworkConfig, "absolute path"},
		{"missing CNI_CONTAINERID", invocation{addEnv(map[string]string{"CNI_CONTAINERID": ""}), netconf("1.1.0", sock)}, types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID"},
		{"missing CNI_IFNAME and CNI_PATH", invocation{addEnv(map[string]string{"CNI_IFNAME": "", "CNI_PATH": ""}), netconf("1.1.0", sock)}, types.ErrInvalidEnvironmentVariables, "CNI_IFNAME,CNI_PATH"},
		{"unknown cniVersion", invocation{addEnv(nil), netconf("9.9.9", sock)}, types.ErrIncompatibleCNIVersion, "incompatible CNI versions"},
		{"too old cniVersion", invocation{addEnv(nil), netconf("0.2.0", sock)}, types.ErrIncompatibleCNIVersion, "incompatible CNI versions"},
		{"agent not running", invocation{addEnv(nil), netconf("1.1.0", missing)}, types.ErrTryAgainLater, "ovs-sdn node agent is not running on this node"},
		{"agent not running, STATUS", invocation{map[string]string{"CNI_COMMAND": "STATUS", "CNI_PATH": "/opt/cni/bin"}, netconf("1.1.0", missing)}, cni.ErrStatusNotAvailable, "ovs-sdn node agent is not running on this node"},
		{"no pod in CNI_ARGS", invocation{addEnv(map[string]string{"CNI_ARGS": "IgnoreUnknown=1"}), netconf("1.1.0", sock)}, types.ErrInvalidEnvironmentVariables, "K8S_POD_NAMESPACE"},
		{"bad CNI_ARGS", invocation{addEnv(map[string]string{"CNI_ARGS": "K8S_POD_NAME"}), netconf("1.1.0", sock)}, types.ErrInvalidEnvironmentVariables, "KEY=VALUE"},
		{"bad namespace", invocation{addEnv(map[string]string{"CNI_ARGS": "K8S_POD_NAMESPACE=Team_A;K8S_POD_NAME=web"}), netconf("1.1.0", sock)}, types.ErrInvalidEnvironmentVariables, "not a namespace name"},
		{"netns missing", invocation{addEnv(nil), netconf("0.3.1", sock)}, types.ErrInvalidNetNS, "network namespace"},
		{"unknown namespace VNID", invocation{addEnv(map[string]string{"CNI_ARGS": "K8S_POD_NAMESPACE=nope;K8S_POD_NAME=web"}), netconf("1.1.0", sock)}, types.ErrTryAgainLater, `no VNID for namespace "nope"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.in.run(t)
			if err == nil {
				t.Fatal("plugin succeeded")
			}
			if err.Code != c.wantCode || !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("got code %d %q, want code %d mentioning %q", err.Code, err.Error(), c.wantCode, c.wantMsg)
			}
		})
	}
}

// TestVersion: VERSION lists the supported spec versions, no agent needed.
func TestVersion(t *testing.T) {
	out, err := invocation{map[string]string{"CNI_COMMAND": "VERSION"}, ""}.run(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		if !strings.Contains(out, `"`+v+`"`) {
			t.Errorf("VERSION output %s lacks %s", out, v)
		}
	}
}

// TestSubnetFull: with every address leased, ADD fails with ErrSubnetFull
// and says what to do; nothing is left behind.
func TestSubnetFull(t *testing.T) {
	e := newEnv(t, withSubnet("10.128.2.0/30")) // .1 gateway, .2 the only pod address
	e.mustAdd(e.newPod("first"))
	p := e.newPod("second")
	_, err := e.add(p)
	if cniCode(err) != cni.ErrSubnetFull || !strings.Contains(err.Error(), "no free IP address left in node subnet 10.128.2.0/30") ||
		!strings.Contains(err.Error(), "delete unused pods") {
		t.Fatalf("ADD into a full subnet: %v (code %d), want code %d with advice", err, cniCode(err), cni.ErrSubnetFull)
	}
	assertGone(t, e, p, "second")
}

// TestSocketPermissions: the socket directory is 0700 (also when it
// existed with a wider mode) and the socket 0600.
func TestSocketPermissions(t *testing.T) {
	dir, err := os.MkdirTemp("", "cni")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(run, "cni-server.sock")
	if err := os.WriteFile(sock, nil, 0o666); err != nil { // a stale file where the socket goes
		t.Fatal(err)
	}
	srv, err := cni.NewServer(cni.ServerConfig{SocketPath: sock, StateDir: filepath.Join(dir, "state"),
		OVSDBEndpoint: "unix:/nonexistent", PodNetwork: &fakeNet{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{run: 0o700, sock: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s has mode %o, want %o", path, got, want)
		}
	}
	if st, _ := os.Stat(sock); st.Mode()&os.ModeSocket == 0 {
		t.Errorf("%s is not a socket", sock)
	}
}
