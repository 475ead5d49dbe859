package dnsresolver

import (
	"context"
	"net"

	"github.com/containernetworking/plugins/pkg/ns"
)

var defaultDial DialFunc = (&net.Dialer{}).DialContext

// DialInNetNS returns a DialFunc whose sockets are created in the network namespace at
// nsPath (e.g. /run/netns/sdnlab-node1): the lab's agents run in the root namespace but
// reach DNS only from their node's. The socket keeps its namespace after the dial returns.
func DialInNetNS(nsPath string) DialFunc {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		var conn net.Conn
		err := ns.WithNetNSPath(nsPath, func(ns.NetNS) error {
			var err error
			conn, err = defaultDial(ctx, network, address)
			return err
		})
		return conn, err
	}
}
