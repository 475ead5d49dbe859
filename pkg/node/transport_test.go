package node

import (
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/openflow"
)

// TestTransportChoice: the OpenFlow transport is the default and connects
// to br0's management socket, named by the target or found next to the
// OVSDB socket; ofctl is the fallback; anything else is an error.
func TestTransportChoice(t *testing.T) {
	for _, tc := range []struct {
		transport, target, endpoint string
		wantSocket, wantOfctl       string
	}{
		{"", "br0", "unix:/var/run/openvswitch/db.sock", "/var/run/openvswitch/br0.mgmt", ""},
		{"openflow", "unix:/run/lab/n1/br0.mgmt", "unix:/run/lab/n1/db.sock", "/run/lab/n1/br0.mgmt", ""},
		{"ofctl", "br0", "unix:/var/run/openvswitch/db.sock", "", "br0"},
	} {
		br, err := newBridge(tc.transport, tc.target, tc.endpoint)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		switch br := br.(type) {
		case *openflow.Bridge:
			if br.Socket != tc.wantSocket {
				t.Errorf("%+v: socket %q, want %q", tc, br.Socket, tc.wantSocket)
			}
		case *ovs.OfctlBridge:
			if br.Name != tc.wantOfctl {
				t.Errorf("%+v: ovs-ofctl target %q, want %q", tc, br.Name, tc.wantOfctl)
			}
		default:
			t.Errorf("%+v: bridge %T", tc, br)
		}
	}
	if _, err := newBridge("grpc", "br0", DefaultOVSDBEndpoint); err == nil {
		t.Error("unknown transport accepted")
	}
}
