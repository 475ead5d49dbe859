package node

import (
	"context"
	"errors"
	"sync/atomic"

	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/openflow"
)

// fallbackBridge is br0 through the OpenFlow transport until that
// transport meets a flow or group its codec cannot encode
// (openflow.ErrUnsupported); from then on, for the rest of the agent's
// life, br0 is driven through ovs-ofctl. The refused operation is retried
// through ovs-ofctl at once, so nothing is dropped or altered: a change
// either goes through the codec, which encodes it exactly as ovs-ofctl
// does (pkg/ovs TestTransportConformance), or through ovs-ofctl itself.
// The switch is logged with the error naming the flow.
//
// The codec encodes a whole operation before it sends anything, so a
// refused operation has changed nothing on br0. Safe for concurrent use.
type fallbackBridge struct {
	primary  closingBridge
	fallback ovs.Bridge
	// fellBack is set once the primary refused a change.
	fellBack atomic.Bool
}

// closingBridge is an ovs.Bridge holding a connection (*openflow.Bridge).
type closingBridge interface {
	ovs.Bridge
	Close()
}

// NewOpenFlowBridge returns the agent's default transport to a bridge: the
// OpenFlow connection to its management socket, falling back to ovs-ofctl
// to ofctlTarget for what the codec cannot encode. The result has
// OpenFlow() *openflow.Bridge, FellBack() bool and Close().
func NewOpenFlowBridge(socket, ofctlTarget string) ovs.Bridge {
	return newFallbackBridge(openflow.New(socket), &ovs.OfctlBridge{Name: ofctlTarget})
}

func newFallbackBridge(primary closingBridge, fallback ovs.Bridge) *fallbackBridge {
	return &fallbackBridge{primary: primary, fallback: fallback}
}

// OpenFlow returns the OpenFlow transport (used until a fallback), or nil.
func (b *fallbackBridge) OpenFlow() *openflow.Bridge {
	of, _ := b.primary.(*openflow.Bridge)
	return of
}

// FellBack reports whether br0 is driven through ovs-ofctl now.
func (b *fallbackBridge) FellBack() bool { return b.fellBack.Load() }

// Close closes the OpenFlow connection.
func (b *fallbackBridge) Close() { b.primary.Close() }

// run runs op on the current transport; if the OpenFlow transport refuses
// it as unsupported, it switches to ovs-ofctl for good and runs op there.
func (b *fallbackBridge) run(op func(ovs.Bridge) error) error {
	if b.fellBack.Load() {
		return op(b.fallback)
	}
	err := op(b.primary)
	if err == nil || !errors.Is(err, openflow.ErrUnsupported) {
		return err
	}
	if b.fellBack.CompareAndSwap(false, true) {
		klog.ErrorS(err, "OpenFlow transport cannot encode a change; br0 is driven through ovs-ofctl from now on")
		b.primary.Close()
	}
	return op(b.fallback)
}

func (b *fallbackBridge) Bundle(ctx context.Context, changes []ovs.Change) error {
	return b.run(func(br ovs.Bridge) error { return br.Bundle(ctx, changes) })
}

func (b *fallbackBridge) ReplaceFlows(ctx context.Context, flows []ovs.Flow) error {
	return b.run(func(br ovs.Bridge) error { return br.ReplaceFlows(ctx, flows) })
}

func (b *fallbackBridge) ReplaceAll(ctx context.Context, groups []ovs.GroupEntry, flows []ovs.Flow) error {
	return b.run(func(br ovs.Bridge) error { return br.ReplaceAll(ctx, groups, flows) })
}

func (b *fallbackBridge) DumpFlows(ctx context.Context, filter ovs.Filter) ([]ovs.DumpedFlow, error) {
	var out []ovs.DumpedFlow
	err := b.run(func(br ovs.Bridge) error {
		var err error
		out, err = br.DumpFlows(ctx, filter)
		return err
	})
	return out, err
}

func (b *fallbackBridge) DumpGroups(ctx context.Context) ([]ovs.GroupEntry, error) {
	var out []ovs.GroupEntry
	err := b.run(func(br ovs.Bridge) error {
		var err error
		out, err = br.DumpGroups(ctx)
		return err
	})
	return out, err
}
