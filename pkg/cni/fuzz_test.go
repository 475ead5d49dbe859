package cni

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/ovs-sdn/ovs-sdn/pkg/cni/shim"
)

// FuzzParseNetConf: no input panics, and every error is a CNI error with a
// code (the shim prints it as it is).
func FuzzParseNetConf(f *testing.F) {
	for _, s := range []string{
		`{"cniVersion":"1.1.0","name":"ovs-sdn","type":"ovs-sdn"}`,
		`{"cniVersion":"0.3.1","name":"n","type":"ovs-sdn","serverSocket":"/run/x.sock"}`,
		`{"cniVersion":"1.1.0","name":"n","type":"ovs-sdn","prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24"}]}}`,
		`{"cniVersion":"1.1.0","name":"n","type":"ovs-sdn","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`,
		`{`, `null`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		conf, err := shim.ParseNetConf(b)
		if err != nil {
			var ce *types.Error
			if !errors.As(err, &ce) || ce.Code == 0 || ce.Msg == "" {
				t.Fatalf("error without a CNI code: %#v", err)
			}
			return
		}
		if conf.Type != PluginType || conf.SocketPath() == "" {
			t.Fatalf("accepted %q as %+v", b, conf)
		}
	})
}

// FuzzDecodeRequest: the server's request parsing never panics and fails
// only with CNI errors; what it accepts is consistent.
func FuzzDecodeRequest(f *testing.F) {
	conf := json.RawMessage(`{"cniVersion":"1.1.0","name":"ovs-sdn","type":"ovs-sdn"}`)
	for _, r := range []shim.Request{
		{Command: shim.CmdAdd, ContainerID: "abc", Netns: "/run/netns/x", IfName: "eth0", Args: "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b", Config: conf},
		{Command: shim.CmdDel, ContainerID: "abc", IfName: "eth0", Config: conf},
		{Command: shim.CmdGC, Config: conf},
		{Command: shim.CmdStatus, Config: conf},
	} {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte(`{"command":"ADD","config":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeRequest(b)
		if err != nil {
			var ce *types.Error
			if !errors.As(err, &ce) || ce.Code == 0 {
				t.Fatalf("error without a CNI code: %#v", err)
			}
			return
		}
		if req.conf == nil {
			t.Fatal("accepted without a netconf")
		}
		if (req.Command == shim.CmdAdd || req.Command == shim.CmdCheck) && (req.pod.Namespace == "" || req.pod.Name == "") {
			t.Fatalf("accepted %s without a pod: %q", req.Command, b)
		}
	})
}
