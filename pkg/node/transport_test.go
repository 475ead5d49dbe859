package node

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/openflow"
)

// TestTransportChoice: the OpenFlow transport is the default and connects
// to br0's management socket, named by the target or found next to the
// OVSDB socket, with ovs-ofctl to the target as its fallback; ofctl alone
// is the other choice; anything else is an error.
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
		case *fallbackBridge:
			if of := br.OpenFlow(); of == nil || of.Socket != tc.wantSocket {
				t.Errorf("%+v: OpenFlow transport %+v, want socket %q", tc, of, tc.wantSocket)
			}
			if fb, ok := br.fallback.(*ovs.OfctlBridge); !ok || fb.Name != tc.target {
				t.Errorf("%+v: fallback %+v, want ovs-ofctl to %q", tc, br.fallback, tc.target)
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

// unencodable is an OpenFlow transport that refuses every operation as
// the codec refuses a flow it cannot encode.
type unencodable struct {
	ovs.Bridge
	calls, closes int
}

func (u *unencodable) refuse(c ovs.Change) error {
	u.calls++
	return &ovs.ChangeError{Change: c, Err: fmt.Errorf("%w: action has no OpenFlow encoding", openflow.ErrUnsupported), Unsent: true}
}

func (u *unencodable) Bundle(_ context.Context, changes []ovs.Change) error {
	return u.refuse(changes[0])
}
func (u *unencodable) ReplaceAll(_ context.Context, _ []ovs.GroupEntry, flows []ovs.Flow) error {
	return u.refuse(ovs.AddFlow(flows[0]))
}
func (u *unencodable) Close() { u.closes++ }

// TestFallbackBridge: the first change the OpenFlow codec refuses as
// unsupported is applied through ovs-ofctl instead — nothing is dropped —
// and every later operation goes there directly; other errors (OVS
// refusing a flow) are returned as they are, with no fallback.
func TestFallbackBridge(t *testing.T) {
	ctx := context.Background()
	f1 := ovs.NewFlow(ovs.TableLocalPod, 10).MatchIPv4().Action(ovs.Output(3))
	f2 := ovs.NewFlow(ovs.TableLocalPod, 11).MatchIPv4().Action(ovs.Output(4))

	bad := errors.New("OFPBAC_BAD_OUT_PORT")
	failing := ovs.NewFakeBridge()
	failing.FailNext(bad)
	fb := newFallbackBridge(&closer{Bridge: failing}, ovs.NewFakeBridge())
	if err := fb.Bundle(ctx, []ovs.Change{ovs.AddFlow(f1)}); !errors.Is(err, bad) || fb.FellBack() {
		t.Errorf("OVS error: %v (fell back %v), want it returned without a fallback", err, fb.FellBack())
	}

	primary, fallback := &unencodable{}, ovs.NewFakeBridge()
	fb = newFallbackBridge(primary, fallback)
	if err := fb.Bundle(ctx, []ovs.Change{ovs.AddFlow(f1)}); err != nil {
		t.Fatal(err)
	}
	if !fb.FellBack() || primary.closes != 1 {
		t.Errorf("fell back %v, OpenFlow connection closed %d times; want true, 1", fb.FellBack(), primary.closes)
	}
	if err := fb.ReplaceAll(ctx, nil, []ovs.Flow{f1, f2}); err != nil {
		t.Fatal(err)
	}
	got, err := fb.DumpFlows(ctx, ovs.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || primary.calls != 1 {
		t.Errorf("ovs-ofctl side holds %d flows (want 2); OpenFlow side called %d times (want 1)", len(got), primary.calls)
	}
}

// closer adds Close to a bridge.
type closer struct{ ovs.Bridge }

func (closer) Close() {}
