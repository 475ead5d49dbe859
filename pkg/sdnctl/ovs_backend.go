package sdnctl

import (
	"context"
	"errors"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
)

// OVSBackend is how sdnctl reaches a node's Open vSwitch: the flows of a
// bridge and the ports of a bridge. The default runs ovs-ofctl and dials
// OVSDB; tests pass another through Options.OVS. A backend that can also
// read the bridge's OpenFlow groups implements GroupDumper.
type OVSBackend interface {
	// DumpFlows returns the flows of the bridge at target (an ovs-ofctl
	// target) selected by filter. A failure to reach the bridge is an
	// *unreachableError.
	DumpFlows(ctx context.Context, target string, filter ovs.Filter) ([]ovs.DumpedFlow, error)
	// Ports lists the ports of bridge from the OVSDB at endpoint.
	Ports(ctx context.Context, endpoint, bridge string) ([]ovsdb.PortInfo, error)
}

// GroupDumper is an OVSBackend that also reads OpenFlow groups: `sdnctl
// flows` prints the groups the flows use (a Service's select groups), and
// `sdnctl trace` to a Service follows them. The default backend implements
// it; with a backend that does not, flows are shown without their groups
// and a Service cannot be traced. (It is a separate interface so that
// backends written before groups existed keep working.)
type GroupDumper interface {
	// DumpGroups returns every OpenFlow group of the bridge at target. A
	// failure to reach the bridge is an *unreachableError.
	DumpGroups(ctx context.Context, target string) ([]ovs.GroupEntry, error)
}

// dumpGroups reads the groups of target through b, or says why it cannot.
func dumpGroups(ctx context.Context, b OVSBackend, target string) ([]ovs.GroupEntry, error) {
	gd, ok := b.(GroupDumper)
	if !ok {
		return nil, errors.New("this OVS backend cannot dump OpenFlow groups")
	}
	return gd.DumpGroups(ctx, target)
}

// execBackend is the default OVSBackend: ovs-ofctl and OVSDB.
type execBackend struct{}

// DumpFlows runs `ovs-ofctl -O OpenFlow13 dump-flows target filter`, once: an
// interactive command should fail fast rather than retry.
func (execBackend) DumpFlows(ctx context.Context, target string, filter ovs.Filter) ([]ovs.DumpedFlow, error) {
	br := &ovs.OfctlBridge{Name: target, Runner: markingRunner{}, Retry: ovs.Retry{Attempts: 1}}
	return br.DumpFlows(ctx, filter)
}

// DumpGroups runs `ovs-ofctl -O OpenFlow13 dump-groups target`, once.
func (execBackend) DumpGroups(ctx context.Context, target string) ([]ovs.GroupEntry, error) {
	br := &ovs.OfctlBridge{Name: target, Runner: markingRunner{}, Retry: ovs.Retry{Attempts: 1}}
	return br.DumpGroups(ctx)
}

// Ports reads the ports of bridge from the OVSDB at endpoint.
func (execBackend) Ports(ctx context.Context, endpoint, bridge string) ([]ovsdb.PortInfo, error) {
	client, err := ovsdb.Dial(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	return client.Ports(ctx, bridge)
}

// unreachableError marks an ovs-ofctl failure (as opposed to a dump we cannot parse).
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// markingRunner runs ovs-ofctl and marks its failures as unreachableError.
type markingRunner struct{ ovs.ExecRunner }

func (r markingRunner) RunOfctl(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	out, err := r.ExecRunner.RunOfctl(ctx, stdin, args...)
	if err != nil {
		return nil, &unreachableError{err}
	}
	return out, nil
}

// ovsBackend returns the invocation's backend.
func (c *cli) ovsBackend() OVSBackend {
	if c.opts.OVS != nil {
		return c.opts.OVS
	}
	return execBackend{}
}
