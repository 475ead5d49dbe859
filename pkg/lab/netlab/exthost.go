package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// Addresses and ports of the external host (see ExternalConfig). The underlay address sits
// above the node range (198.18.0.11 … .210, pkg/lab); 203.0.113.0/24 is TEST-NET-3 (RFC
// 5737), which never appears outside documentation, and exists only inside the lab.
var (
	DefaultExternalUnderlayIP = netip.MustParsePrefix("198.18.0.254/24")
	DefaultExternalNetwork    = netip.MustParsePrefix("203.0.113.0/24")
	// DefaultExternalDNSAddr is configured on the host without echo servers: the address
	// for the lab's DNS server (pkg/lab/dnsserver, port 53).
	DefaultExternalDNSAddr  = netip.MustParseAddr("203.0.113.53")
	DefaultExternalTCPPorts = []uint16{80, 443}
	DefaultExternalUDPPorts = []uint16{53, 5353}
)

// externalDevice holds the host's service addresses: the loopback device (this machine's
// kernel has no dummy device type), where /32 addresses are local like on any device.
const externalDevice = "lo"

// DefaultExternalAddrs are 203.0.113.1 … 203.0.113.16: enough for first-match tests such as
// allow 203.0.113.0/24, deny 203.0.113.8/29, allow 203.0.113.9/32.
func DefaultExternalAddrs() []netip.Addr {
	var out []netip.Addr
	for i := 1; i <= 16; i++ {
		out = append(out, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
	}
	return out
}

// ExternalConfig configures AddExternalHost; zero fields take the defaults above.
type ExternalConfig struct {
	// UnderlayIP is the host's address on the underlay (eth0).
	UnderlayIP netip.Prefix
	// Network is routed from every node to UnderlayIP (`ip route replace Network via
	// UnderlayIP dev br-phy` in the node netns, also after a vswitchd restart).
	Network netip.Prefix
	// Addrs get echo servers on every TCP and UDP port; they must lie in Network.
	Addrs []netip.Addr
	// ExtraAddrs are configured without servers (default: DefaultExternalDNSAddr); they must
	// lie in Network.
	ExtraAddrs []netip.Addr
	// TCPPorts and UDPPorts are served on every address of Addrs.
	TCPPorts, UDPPorts []uint16
}

func (c *ExternalConfig) complete() error {
	if !c.UnderlayIP.IsValid() {
		c.UnderlayIP = DefaultExternalUnderlayIP
	}
	if !c.Network.IsValid() {
		c.Network = DefaultExternalNetwork
	}
	if c.Addrs == nil {
		c.Addrs = DefaultExternalAddrs()
	}
	if c.ExtraAddrs == nil {
		c.ExtraAddrs = []netip.Addr{DefaultExternalDNSAddr}
	}
	if c.TCPPorts == nil {
		c.TCPPorts = slices.Clone(DefaultExternalTCPPorts)
	}
	if c.UDPPorts == nil {
		c.UDPPorts = slices.Clone(DefaultExternalUDPPorts)
	}
	for _, a := range append(slices.Clone(c.Addrs), c.ExtraAddrs...) {
		if !a.Is4() || !c.Network.Contains(a) {
			return fmt.Errorf("address %s: want an IPv4 address in %s", a, c.Network)
		}
	}
	if !c.UnderlayIP.Addr().Is4() || c.Network.Contains(c.UnderlayIP.Addr()) {
		return fmt.Errorf("underlay address %s: want an IPv4 address outside %s", c.UnderlayIP, c.Network)
	}
	return nil
}

// ExternalHost is the lab's outside world: a netns "<prefix>-<name>" on the underlay that
// is not a node. Its service addresses (Addrs, ExtraAddrs, each a /32 on its loopback
// device) are reachable from every node through a route via its underlay address, so pods get
// there through their node's normal egress (tun0, the node's SNAT, br-phy, the underlay).
// It has no default route and does not forward: it can reach nothing but the underlay.
//
// Every address of Addrs runs a TCP and a UDP echo server on each port (TCPPorts,
// UDPPorts). A TCP server sends the line "<client ip>:<port>\n" — the source it sees, so a
// test learns the SNAT or egress-IP source — and then echoes what it receives; a UDP server
// answers each datagram with "<client ip>:<port>\n" followed by the datagram. Contacts
// records every accepted connection and datagram; Packets records every IPv4 packet that
// arrives on eth0 (also those no server accepts: a SYN whose handshake never completes, a
// datagram to a closed port), for "not one packet with a wrong source" assertions.
//
// Probes from the host's netns (h.NetNS.DialTCP, TCPHello, UDPExchange, UDPHello, Ping)
// play the client outside the cluster, e.g. for NodePort; DialTCP can pick one of the
// service addresses as the source (the nodes route the replies back through the host). Lab.Close removes the host (its sockets, then its netns); as
// everything runs in the calling process and the netns carries the lab's prefix, Sweep
// removes what a killed run left.
type ExternalHost struct {
	Name       string
	NetNS      NetNS
	IP         netip.Prefix // on eth0
	Network    netip.Prefix
	Addrs      []netip.Addr
	ExtraAddrs []netip.Addr
	TCPPorts   []uint16
	UDPPorts   []uint16

	// Contacts are the connections and datagrams the echo servers accepted.
	Contacts *Log[Contact]
	// Packets are the IPv4 packets that arrived on eth0 (at most packetLogLimit are kept).
	Packets *Log[Packet]

	lab       *Lab
	capture   *packetCapture
	servers   []closer
	closeOnce sync.Once
}

type closer interface{ Close() error }

// AddExternalHost creates the external host name (see ExternalHost) and routes cfg.Network
// to it from every node, present and future. Call it while no AddNode runs. Not idempotent;
// on failure the partial host is removed by Lab.Close.
func (l *Lab) AddExternalHost(name string, cfg ExternalConfig) (*ExternalHost, error) {
	if err := validNodeName(name); err != nil {
		return nil, err
	}
	if err := cfg.complete(); err != nil {
		return nil, fmt.Errorf("external host %s: %w", name, err)
	}
	h := &ExternalHost{Name: name, IP: cfg.UnderlayIP, Network: cfg.Network, Addrs: cfg.Addrs,
		ExtraAddrs: cfg.ExtraAddrs, TCPPorts: cfg.TCPPorts, UDPPorts: cfg.UDPPorts, lab: l,
		Contacts: newLog[Contact](contactLogLimit), Packets: newLog[Packet](packetLogLimit)}
	if err := l.registerExternal(h); err != nil {
		return nil, err
	}
	l.addCloser(h)
	if err := h.setup(); err != nil {
		return h, fmt.Errorf("external host %s: %w", name, err)
	}
	for _, n := range l.nodeList() {
		if err := h.routeFrom(n); err != nil {
			return h, fmt.Errorf("external host %s: %w", name, err)
		}
	}
	return h, nil
}

func (l *Lab) registerExternal(h *ExternalHost) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("external host %s: lab %q is closed", h.Name, l.Prefix)
	}
	for _, o := range l.externals {
		if o.Name == h.Name || o.Network.Overlaps(h.Network) || o.IP.Addr() == h.IP.Addr() {
			return fmt.Errorf("external host %s: name, network or address taken by %s", h.Name, o.Name)
		}
	}
	for _, n := range l.nodes {
		if n.IP.Addr() == h.IP.Addr() {
			return fmt.Errorf("external host %s: underlay address %s is node %s's", h.Name, h.IP.Addr(), n.Name)
		}
	}
	l.externals = append(l.externals, h)
	return nil
}

func (l *Lab) nodeList() []*Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Node, 0, len(l.nodes))
	for _, n := range l.nodes {
		out = append(out, n)
	}
	return out
}

// routeToExternalHosts routes every external host's network from node n; called whenever
// n's br-phy (and with it every route through it) is (re)created.
func (l *Lab) routeToExternalHosts(n *Node) error {
	l.mu.Lock()
	hosts := slices.Clone(l.externals)
	l.mu.Unlock()
	var errs []error
	for _, h := range hosts {
		errs = append(errs, h.routeFrom(n))
	}
	return errors.Join(errs...)
}

// routeFrom makes the node route the host's network via the host's underlay address.
func (h *ExternalHost) routeFrom(n *Node) error {
	err := n.NetNS.ip("route", "replace", h.Network.String(), "via", h.IP.Addr().String(), "dev", PhysBridge)
	if err != nil {
		return fmt.Errorf("route %s via %s on node %s: %w", h.Network, h.IP.Addr(), n.Name, err)
	}
	return nil
}

func (h *ExternalHost) setup() error {
	ns, err := h.lab.newNetNS(h.lab.Prefix + "-" + h.Name)
	h.NetNS = ns
	if err != nil {
		return err
	}
	if err := h.lab.attachUplink(ns, h.Name); err != nil {
		return err
	}
	if err := ns.ip("addr", "add", h.IP.String(), "dev", uplinkName); err != nil {
		return fmt.Errorf("underlay address: %w", err)
	}
	if err := h.addServiceAddrs(); err != nil {
		return err
	}
	if h.capture, err = startCapture(ns, uplinkName, h.Packets); err != nil {
		return err
	}
	return h.startServers()
}

func (h *ExternalHost) addServiceAddrs() error {
	for _, a := range append(slices.Clone(h.Addrs), h.ExtraAddrs...) {
		if err := h.NetNS.ip("addr", "add", netip.PrefixFrom(a, 32).String(), "dev", externalDevice); err != nil {
			return fmt.Errorf("address %s on %s: %w", a, externalDevice, err)
		}
	}
	return nil
}

// Close stops the servers and the capture. Idempotent; Lab.Close calls it.
func (h *ExternalHost) Close() error {
	var errs []error
	h.closeOnce.Do(func() {
		for _, s := range h.servers {
			errs = append(errs, s.Close())
		}
		if h.capture != nil {
			errs = append(errs, h.capture.Close())
		}
	})
	return errors.Join(errs...)
}
