package cni

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni/shim"
	"github.com/ovs-sdn/ovs-sdn/pkg/testutil"
)

func code(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func TestParseNetConf(t *testing.T) {
	cases := []struct {
		name, in string
		want     uint // 0: valid
	}{
		{"minimal", `{"cniVersion":"1.1.0","name":"ovs-sdn","type":"ovs-sdn"}`, 0},
		{"0.3.1 with socket", `{"cniVersion":"0.3.1","name":"n","type":"ovs-sdn","serverSocket":"/run/x.sock"}`, 0},
		{"not json", `{`, types.ErrDecodingFailure},
		{"array", `[]`, types.ErrDecodingFailure},
		{"wrong type", `{"cniVersion":"1.1.0","name":"n","type":"bridge"}`, types.ErrInvalidNetworkConfig},
		{"no name", `{"cniVersion":"1.1.0","type":"ovs-sdn"}`, types.ErrInvalidNetworkConfig},
		{"bad name", `{"cniVersion":"1.1.0","name":"a b","type":"ovs-sdn"}`, types.ErrInvalidNetworkConfig},
		{"0.2.0", `{"cniVersion":"0.2.0","name":"n","type":"ovs-sdn"}`, types.ErrIncompatibleCNIVersion},
		{"no version", `{"name":"n","type":"ovs-sdn"}`, types.ErrIncompatibleCNIVersion},
		{"relative socket", `{"cniVersion":"1.1.0","name":"n","type":"ovs-sdn","serverSocket":"x.sock"}`, types.ErrInvalidNetworkConfig},
		{"long socket", `{"cniVersion":"1.1.0","name":"n","type":"ovs-sdn","serverSocket":"/` + strings.Repeat("a", 120) + `"}`, types.ErrInvalidNetworkConfig},
		{"bad prevResult", `{"cniVersion":"1.1.0","name":"n","type":"ovs-sdn","prevResult":{"ips":"x"}}`, types.ErrDecodingFailure},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf, err := shim.ParseNetConf([]byte(c.in))
			if got := code(err); got != c.want || (err == nil) != (c.want == 0) {
				t.Fatalf("code %d (%v), want %d", got, err, c.want)
			}
			if err == nil && conf.SocketPath() == "" {
				t.Error("empty socket path")
			}
		})
	}
}

func TestParsePodArgs(t *testing.T) {
	p, err := ParsePodArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=x;K8S_POD_UID=u")
	if err != nil || p != (PodArgs{Namespace: "ns", Name: "web-0", UID: "u"}) || p.validPod() != nil {
		t.Fatalf("got %+v, %v", p, err)
	}
	for _, bad := range []string{"K8S_POD_NAME=web", "K8S_POD_NAMESPACE=ns", "K8S_POD_NAMESPACE=NS;K8S_POD_NAME=w", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=W_"} {
		p, err := ParsePodArgs(bad)
		if err == nil {
			err = p.validPod()
		}
		if code(err) != types.ErrInvalidEnvironmentVariables {
			t.Errorf("%q: %v, want code 4", bad, err)
		}
	}
}

func TestDecodeRequest(t *testing.T) {
	conf := json.RawMessage(`{"cniVersion":"1.1.0","name":"ovs-sdn","type":"ovs-sdn"}`)
	ok := shim.Request{Command: shim.CmdAdd, ContainerID: "abc", Netns: "/run/netns/x", IfName: "eth0",
		Args: "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b", Config: conf}
	cases := []struct {
		name string
		mod  func(r *shim.Request)
		want uint
	}{
		{"ok", func(*shim.Request) {}, 0},
		{"DEL without netns", func(r *shim.Request) { r.Command, r.Netns = shim.CmdDel, "" }, 0},
		{"GC bare", func(r *shim.Request) { *r = shim.Request{Command: shim.CmdGC, Config: conf} }, 0},
		{"unknown command", func(r *shim.Request) { r.Command = "UPDATE" }, types.ErrInvalidEnvironmentVariables},
		{"bad container id", func(r *shim.Request) { r.ContainerID = "a/b" }, types.ErrInvalidEnvironmentVariables},
		{"bad ifname", func(r *shim.Request) { r.IfName = "../x" }, types.ErrInvalidEnvironmentVariables},
		{"ADD without netns", func(r *shim.Request) { r.Netns = "" }, types.ErrInvalidEnvironmentVariables},
		{"relative netns", func(r *shim.Request) { r.Netns = "netns" }, types.ErrInvalidNetNS},
		{"no pod", func(r *shim.Request) { r.Args = "" }, types.ErrInvalidEnvironmentVariables},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ok
			c.mod(&r)
			b, _ := json.Marshal(r)
			_, err := decodeRequest(b)
			if got := code(err); got != c.want || (err == nil) != (c.want == 0) {
				t.Fatalf("code %d (%v), want %d", got, err, c.want)
			}
		})
	}
	if _, err := decodeRequest([]byte("{")); code(err) != types.ErrDecodingFailure {
		t.Errorf("truncated body: %v", err)
	}
}

// TestConflist: the file libcni loads points the plugin at the socket; it
// is removed idempotently.
func TestConflist(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net.d")
	if err := WriteConflist(dir, "/run/ovs-sdn/x.sock"); err != nil {
		t.Fatal(err)
	}
	if err := WriteConflist(dir, "/run/ovs-sdn/x.sock"); err != nil { // idempotent
		t.Fatal(err)
	}
	path := filepath.Join(dir, ConflistName)
	list, err := libcni.ConfListFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != NetworkName || list.CNIVersion != "1.1.0" || len(list.Plugins) != 2 {
		t.Fatalf("conflist %+v", list)
	}
	// libcni adds name and cniVersion when it execs the plugin.
	var conf shim.NetConf
	err = json.Unmarshal(list.Plugins[0].Bytes, &conf)
	if err != nil || conf.Type != PluginType || conf.SocketPath() != "/run/ovs-sdn/x.sock" {
		t.Fatalf("plugin conf %s: %v", list.Plugins[0].Bytes, err)
	}
	// portmap comes second (it needs sdn-cni's result as prevResult) and
	// asks the runtime for the pod's hostPorts.
	pm := list.Plugins[1].Network
	if pm.Type != PortmapPluginType || !pm.Capabilities["portMappings"] {
		t.Fatalf("second plugin %s: want type %s with capability portMappings", list.Plugins[1].Bytes, PortmapPluginType)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %o", st.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if err := WriteConflist(dir, DefaultSocketPath); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b), "serverSocket") {
		t.Errorf("default socket written out: %s", b)
	}
	for i := 0; i < 2; i++ {
		if err := RemoveConflist(dir); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("conflist still there: %v", err)
	}
}

func TestHostVethName(t *testing.T) {
	a, b := HostVethName("c1", "eth0"), HostVethName("c1", "eth1")
	if len(a) != 15 || a == b || a != HostVethName("c1", "eth0") || !strings.HasPrefix(a, "veth") {
		t.Errorf("names %q %q", a, b)
	}
}

func TestKeyedMutex(t *testing.T) {
	k := keyedMutex{m: map[string]*keyedEntry{}}
	unlock := k.lock("a")
	if _, ok := k.tryLock("a"); ok {
		t.Fatal("tryLock got a held key")
	}
	u2, ok := k.tryLock("b")
	if !ok {
		t.Fatal("tryLock of a free key failed")
	}
	u2()
	unlock()
	if len(k.m) != 0 {
		t.Errorf("entries leaked: %v", k.m)
	}
}

// TestConflistGolden pins the conflist's content (go test -update rewrites
// testdata/conflist.golden): a change to what the runtime runs for every pod
// is deliberate.
func TestConflistGolden(t *testing.T) {
	got, err := RenderConflist("/run/ovs-sdn/x.sock")
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "conflist.golden")
	if testutil.Update() {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("conflist differs from %s (-want +got):\n%s", golden, diff)
	}
}
