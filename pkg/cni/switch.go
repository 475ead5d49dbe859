package cni

import (
	"context"
	"fmt"
	"sync"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
)

// redialSwitch is the Switch of a server given only an OVSDB endpoint: it
// dials on first use and again after ovsdb-server went away (an
// ovsdb.Client never reconnects by itself).
type redialSwitch struct {
	endpoint string

	mu  sync.Mutex
	cli *ovsdb.Client
}

func (r *redialSwitch) client(ctx context.Context) (*ovsdb.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cli != nil {
		select {
		case <-r.cli.Disconnected():
			r.cli.Close()
			r.cli = nil
		default:
			return r.cli, nil
		}
	}
	c, err := ovsdb.Dial(ctx, r.endpoint)
	if err != nil {
		return nil, fmt.Errorf("connect to OVS database %s: %w", r.endpoint, err)
	}
	r.cli = c
	return c, nil
}

func (r *redialSwitch) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cli != nil {
		r.cli.Close()
		r.cli = nil
	}
}

func (r *redialSwitch) AddPort(ctx context.Context, bridge, name string, ids map[string]string) (int, error) {
	c, err := r.client(ctx)
	if err != nil {
		return 0, err
	}
	return c.AddPort(ctx, bridge, name, ids)
}

func (r *redialSwitch) DeletePort(ctx context.Context, bridge, name string) error {
	c, err := r.client(ctx)
	if err != nil {
		return err
	}
	return c.DeletePort(ctx, bridge, name)
}

func (r *redialSwitch) Ports(ctx context.Context, bridge string) ([]ovsdb.PortInfo, error) {
	c, err := r.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.Ports(ctx, bridge)
}
