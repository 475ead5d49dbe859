package node

import (
	"context"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
)

// DialOVSDB is the production DialFunc, backed by pkg/ovs/ovsdb.
func DialOVSDB(ctx context.Context, endpoint string) (SwitchDB, error) {
	c, err := ovsdb.Dial(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	return ovsdbSwitch{c}, nil
}

// ovsdbSwitch adapts *ovsdb.Client to SwitchDB.
type ovsdbSwitch struct{ *ovsdb.Client }

func (s ovsdbSwitch) EnsureBridge(ctx context.Context, name, datapathType string) error {
	return s.Client.EnsureBridge(ctx, ovsdb.BridgeConfig{Name: name, DatapathType: datapathType})
}

func (s ovsdbSwitch) Ports(ctx context.Context, bridge string) ([]SwitchPort, error) {
	ports, err := s.Client.Ports(ctx, bridge)
	if err != nil {
		return nil, err
	}
	out := make([]SwitchPort, 0, len(ports))
	for _, p := range ports {
		out = append(out, SwitchPort{Name: p.Name, OFPort: p.OFPort, ExternalIDs: p.ExternalIDs})
	}
	return out, nil
}
