package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// neighRefresh is how often the lab rewrites every tunnel-neighbour entry; well below OVS's
// default tnl/neigh aging (15 min), after which an unused entry, static or not, is gone.
// A variable so tests can shorten it.
var neighRefresh = time.Minute

// neighEntry is one `ovs-appctl tnl/neigh/set` to make on node on: peer IP → peer br-phy MAC.
type neighEntry struct {
	on       *Node
	ip, mac  string
	peerName string
}

// physMAC reads the MAC of br-phy's internal port from the kernel device in the node netns:
// the address the node IP answers ARP with and tnl/ports matches VXLAN against.
func (n *Node) physMAC() (string, error) {
	out, err := n.NetNS.Exec(context.Background(), "cat", "/sys/class/net/"+PhysBridge+"/address")
	if err != nil {
		return "", fmt.Errorf("mac of %s on node %s: %w", PhysBridge, n.Name, err)
	}
	mac, err := net.ParseMAC(strings.TrimSpace(out))
	if err != nil {
		return "", fmt.Errorf("mac of %s on node %s: %w", PhysBridge, n.Name, err)
	}
	return mac.String(), nil
}

// primeNeighbors records n's br-phy MAC and writes the tunnel-neighbour entries between n and
// every other node whose MAC is known, both ways: n learns the others, the others learn n.
// Without them the userspace datapath drops the first packet it would encapsulate towards a
// node while it resolves the node's MAC (and once more after every vswitchd restart, which
// empties the cache). Called when a node is added and after its vswitchd restarts.
//
// Two nodes finishing AddNode concurrently each publish their MAC and take the peer list in
// one critical section, so at least one of them sees the other and writes both directions.
func (l *Lab) primeNeighbors(n *Node) error {
	if l.opts.agentNeighbors {
		return nil // WithoutTunnelNeighbors: the agents keep them
	}
	mac, err := n.physMAC()
	if err != nil {
		return err
	}
	l.mu.Lock()
	n.mac = mac
	var entries []neighEntry
	for _, m := range l.nodes {
		if m != n && m.mac != "" {
			entries = append(entries,
				neighEntry{on: n, ip: m.IP.Addr().String(), mac: m.mac, peerName: m.Name},
				neighEntry{on: m, ip: n.IP.Addr().String(), mac: n.mac, peerName: n.Name})
		}
	}
	l.mu.Unlock()
	return setNeighbors(entries)
}

// allNeighbors lists the entries for every ordered pair of nodes with a known MAC.
func (l *Lab) allNeighbors() []neighEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var entries []neighEntry
	for _, a := range l.nodes {
		for _, b := range l.nodes {
			if a != b && a.mac != "" && b.mac != "" {
				entries = append(entries, neighEntry{on: a, ip: b.IP.Addr().String(), mac: b.mac, peerName: b.Name})
			}
		}
	}
	return entries
}

func setNeighbors(entries []neighEntry) error {
	var errs []error
	for _, e := range entries {
		if _, err := e.on.Appctl("tnl/neigh/set", PhysBridge, e.ip, e.mac); err != nil {
			errs = append(errs, fmt.Errorf("tunnel neighbour %s (node %s) on node %s: %w",
				e.ip, e.peerName, e.on.Name, err))
		}
	}
	return errors.Join(errs...)
}

// refreshNeighbors rewrites every entry each neighRefresh until stop is closed, so entries
// of idle node pairs do not age out. Errors are ignored: a node's vswitchd may be restarting
// (Restart primes it again).
func (l *Lab) refreshNeighbors(stop <-chan struct{}) {
	t := time.NewTicker(neighRefresh)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			_ = setNeighbors(l.allNeighbors())
		}
	}
}
