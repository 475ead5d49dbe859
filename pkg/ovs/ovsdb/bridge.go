package ovsdb

import (
	"context"
	"fmt"
	"slices"

	"github.com/ovn-org/libovsdb/ovsdb"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb/vswitchd"
)

// Datapath types of BridgeConfig.DatapathType.
const (
	// DatapathSystem is the kernel datapath (openvswitch module).
	DatapathSystem = "system"
	// DatapathNetdev is the userspace datapath, for hosts without the
	// kernel module (the lab).
	DatapathNetdev = "netdev"
)

// BridgeConfig is the wanted state of the node's bridge.
type BridgeConfig struct {
	Name string
	// DatapathType is DatapathNetdev or DatapathSystem; "" means
	// DatapathSystem.
	DatapathType string
}

// EnsureBridge creates the bridge, or fixes it in place: fail_mode=secure,
// protocols=[OpenFlow13], datapath_type. A new bridge gets its local port
// (Port and internal Interface named like the bridge), as `ovs-vsctl add-br`
// does. Idempotent: when the bridge already matches, nothing is sent; else
// all changes are one transaction. Returns once ovs-vswitchd has applied it
// (the bridge's OpenFlow management socket exists).
func (c *Client) EnsureBridge(ctx context.Context, cfg BridgeConfig) error {
	dpType := cfg.DatapathType
	if dpType == "" {
		dpType = DatapathSystem
	}
	if dpType != DatapathSystem && dpType != DatapathNetdev {
		return fmt.Errorf("ovsdb: bridge %s: datapath type %q is neither %q nor %q", cfg.Name, dpType, DatapathSystem, DatapathNetdev)
	}
	if cfg.Name == "" {
		return fmt.Errorf("ovsdb: bridge name is empty")
	}
	return c.write(ctx, "ensure bridge "+cfg.Name, func() ([]ovsdb.Operation, error) {
		want := vswitchd.Bridge{
			Name:         cfg.Name,
			FailMode:     ptr(vswitchd.BridgeFailModeSecure),
			Protocols:    []string{vswitchd.BridgeProtocolsOpenflow13},
			DatapathType: dpType,
		}
		br, err := c.bridge(ctx, cfg.Name)
		if err == nil {
			want.UUID = br.UUID
			if bridgeMatches(br, want) {
				return nil, nil
			}
			return c.cli.Where(&want).Update(&want, &want.FailMode, &want.Protocols, &want.DatapathType)
		}
		if !isNotFound(err) {
			return nil, err
		}
		root, err := c.root(ctx)
		if err != nil {
			return nil, err
		}
		iface := vswitchd.Interface{UUID: c.namedUUID("iface"), Name: cfg.Name, Type: "internal"}
		port := vswitchd.Port{UUID: c.namedUUID("port"), Name: cfg.Name, Interfaces: []string{iface.UUID}}
		want.UUID = c.namedUUID("bridge")
		want.Ports = []string{port.UUID}
		ops, err := c.cli.Create(&iface, &port, &want)
		if err != nil {
			return nil, err
		}
		rootRow := vswitchd.OpenvSwitch{UUID: root.UUID}
		mut, err := c.cli.Where(&rootRow).Mutate(&rootRow, mutation(&rootRow.Bridges, ovsdb.MutateOperationInsert, want.UUID))
		if err != nil {
			return nil, err
		}
		return append(ops, mut...), nil
	})
}

// DeleteBridge removes the bridge with all its ports. Idempotent: a missing
// bridge is not an error.
func (c *Client) DeleteBridge(ctx context.Context, name string) error {
	return c.write(ctx, "delete bridge "+name, func() ([]ovsdb.Operation, error) {
		br, err := c.bridge(ctx, name)
		if isNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		root, err := c.root(ctx)
		if err != nil {
			return nil, err
		}
		rootRow := vswitchd.OpenvSwitch{UUID: root.UUID}
		return c.cli.Where(&rootRow).Mutate(&rootRow, mutation(&rootRow.Bridges, ovsdb.MutateOperationDelete, br.UUID))
	})
}

func bridgeMatches(have, want vswitchd.Bridge) bool {
	return have.FailMode != nil && *have.FailMode == *want.FailMode &&
		slices.Equal(have.Protocols, want.Protocols) &&
		have.DatapathType == want.DatapathType
}

// bridge returns the cached bridge named name, or an error wrapping
// ErrNotFound.
func (c *Client) bridge(ctx context.Context, name string) (vswitchd.Bridge, error) {
	br := vswitchd.Bridge{Name: name}
	err := c.byName(ctx, &br, "bridge", name)
	return br, err
}
