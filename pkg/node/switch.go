package node

import (
	"context"
	"fmt"

	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// SwitchDB is the part of the OVSDB client the agent uses: the seam between
// the agent and pkg/ovs/ovsdb (see ovsdb.go for the adapter), faked in
// tests.
type SwitchDB interface {
	// EnsureBridge creates or fixes br0 (fail_mode=secure, OpenFlow13, the
	// datapath type). Idempotent.
	EnsureBridge(ctx context.Context, name, datapathType string) error
	// EnsureVXLANPort creates or fixes the VXLAN port (remote_ip=flow,
	// key=flow, dst_port) at the requested ofport. Idempotent.
	EnsureVXLANPort(ctx context.Context, bridge, name string, dstPort uint16, ofport int) error
	// EnsureInternalPort creates or fixes an internal port with the
	// requested ofport and MTU. Idempotent.
	EnsureInternalPort(ctx context.Context, bridge, name string, ofport, mtu int) error
	// Ports lists the ports of bridge with their ofport and Interface
	// external_ids.
	Ports(ctx context.Context, bridge string) ([]SwitchPort, error)
	// OnPortChange registers fn, called (without blocking the caller's
	// view of the database) after any port or interface changes.
	OnPortChange(fn func())
	// Disconnected is closed when the connection to ovsdb-server is lost.
	Disconnected() <-chan struct{}
	// Close releases the connection.
	Close()
}

// DialFunc connects to the OVSDB endpoint ("unix:/path/db.sock").
type DialFunc func(ctx context.Context, endpoint string) (SwitchDB, error)

// setupBridge makes br0, vxlan0 and tun0 exist with the configuration the
// pipeline expects. It does not touch pod ports or flows, so running it on
// a working node changes nothing.
func setupBridge(ctx context.Context, db SwitchDB, datapathType string, vxlanPort uint16, mtu int) error {
	if err := db.EnsureBridge(ctx, pipeline.BridgeName, datapathType); err != nil {
		return fmt.Errorf("ensure bridge %s: %w", pipeline.BridgeName, err)
	}
	if err := db.EnsureVXLANPort(ctx, pipeline.BridgeName, pipeline.VXLANPort, vxlanPort, int(pipeline.OFPortVXLAN)); err != nil {
		return fmt.Errorf("ensure port %s: %w", pipeline.VXLANPort, err)
	}
	if err := db.EnsureInternalPort(ctx, pipeline.BridgeName, pipeline.Tun0, int(pipeline.OFPortTun0), mtu); err != nil {
		return fmt.Errorf("ensure port %s: %w", pipeline.Tun0, err)
	}
	return nil
}
