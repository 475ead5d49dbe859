package netlab

import (
	"fmt"
	"net/netip"
)

// AddUnderlayAddress puts ip on the underlay bridge, inside the underlay namespace: an
// address of the lab itself on which every node can reach a service the lab runs there
// (sdn-lab's relay to its API server). Nothing outside the lab's namespaces sees it. Not
// idempotent: adding the same address twice fails.
func (l *Lab) AddUnderlayAddress(ip netip.Prefix) error {
	if err := l.Underlay.ip("addr", "add", ip.String(), "dev", underlayBridge); err != nil {
		return fmt.Errorf("underlay address %s: %w", ip, err)
	}
	return nil
}
