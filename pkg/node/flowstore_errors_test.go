package node

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// rejectingBridge refuses, like OVS, any bundle holding a change to a flow
// in table 40 (an *ovs.ChangeError naming it); the rest of such a bundle
// is not applied.
type rejectingBridge struct{ *ovs.FakeBridge }

func (b rejectingBridge) Bundle(ctx context.Context, changes []ovs.Change) error {
	for i, c := range changes {
		if (c.Op == ovs.OpAdd || c.Op == ovs.OpDeleteStrict) && c.Flow.Table == ovs.TableARPLocal {
			return &ovs.ChangeError{Index: i, Change: c, Err: errors.New("OFPBAC_BAD_OUT_PORT")}
		}
	}
	return b.FakeBridge.Bundle(ctx, changes)
}

// TestSyncErrorNamesOwner: when OVS rejects a flow, the sync error names
// the flow (text, cookie: the bridge's ChangeError) and the owner whose
// flow it is; the change stays pending and nothing is applied.
func TestSyncErrorNamesOwner(t *testing.T) {
	s := NewFlowStore()
	br := rejectingBridge{ovs.NewFakeBridge()}
	bad := testPod{"ns1", "bad", "10.128.0.6", 4, 11}
	mustSet(t, s, bad.owner(), bad.flows())
	err := s.Sync(context.Background(), br)
	var ce *ovs.ChangeError
	switch {
	case !errors.As(err, &ce):
		t.Fatalf("sync error %v is not a ChangeError", err)
	case !strings.Contains(err.Error(), "owner pod/ns1/bad") || !strings.Contains(err.Error(), ce.Change.Flow.String()):
		t.Errorf("sync error %q does not name owner pod/ns1/bad and the flow", err)
	}
	if s.Pending() != 1 || len(br.Flows()) != 0 {
		t.Errorf("after the rejected sync: %d owners pending (want 1), %d flows on the bridge (want 0)", s.Pending(), len(br.Flows()))
	}
}
