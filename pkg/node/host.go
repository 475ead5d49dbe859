package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ovs-sdn/ovs-sdn/pkg/iptables"
)

// Host is the node's kernel configuration the agent owns besides OVS: the
// gateway address and routes on tun0, ip_forward, and iptables. Every
// method is idempotent; the agent calls them at start and after an OVS
// restart (which recreates tun0 without its address).
type Host interface {
	// EnsureGateway brings dev up with the MAC address mac and exactly the
	// IPv4 address gw (other IPv4 addresses are removed), accepts packets
	// with a local source on it (accept_local: a Service without endpoints
	// bounces the host's own packets back through tun0 to be rejected),
	// and makes each of routes a link-scope route through dev with the
	// given MTU (0: the device's).
	EnsureGateway(dev string, gw netip.Prefix, mac net.HardwareAddr, routes []netip.Prefix, mtu int) error
	// EnsureServiceRoutes makes via a permanent neighbour with address mac
	// on dev and each of dsts a route through dev via it (onlink), with
	// the given MTU: the host reaches Services through br0 (proxy mode
	// ovs) with a destination MAC br0 recognizes.
	EnsureServiceRoutes(dev string, via netip.Addr, mac net.HardwareAddr, dsts []netip.Prefix, mtu int) error
	// EnsureEgressIPs makes the node hold exactly the egress IPs ips
	// (host_egressip.go) and returns those it newly claimed.
	EnsureEgressIPs(nodeIP netip.Addr, ips []netip.Addr) ([]netip.Addr, error)
	// EnsureIPForward sets net.ipv4.ip_forward=1.
	EnsureIPForward() error
	// IPTables returns the iptables of the node.
	IPTables() (iptables.Interface, error)
}

// NewHost returns the Host of the network namespace at nsPath (e.g.
// /run/netns/node1), or of the agent's own namespace if nsPath is "". The
// lab runs one agent per node namespace in one process this way.
func NewHost(nsPath string) Host { return netlinkHost{nsPath: nsPath} }

type netlinkHost struct{ nsPath string }

// do runs fn in the host namespace (on a locked thread, as ns.Do does).
func (h netlinkHost) do(fn func() error) error {
	if h.nsPath == "" {
		return fn()
	}
	return ns.WithNetNSPath(h.nsPath, func(ns.NetNS) error { return fn() })
}

func (h netlinkHost) handle() (*netlink.Handle, error) {
	if h.nsPath == "" {
		return netlink.NewHandle()
	}
	nsh, err := netns.GetFromPath(h.nsPath)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", h.nsPath, err)
	}
	defer nsh.Close()
	return netlink.NewHandleAt(nsh)
}

func (h netlinkHost) EnsureGateway(dev string, gw netip.Prefix, mac net.HardwareAddr, routes []netip.Prefix, mtu int) error {
	nh, err := h.handle()
	if err != nil {
		return err
	}
	defer nh.Close()
	link, err := nh.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("find %s: %w", dev, err)
	}
	if mac != nil && link.Attrs().HardwareAddr.String() != mac.String() {
		if err := nh.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("set %s address %s: %w", dev, mac, err)
		}
	}
	if err := ensureOnlyAddr(nh, link, gw); err != nil {
		return err
	}
	if err := h.sysctl("net/ipv4/conf/"+dev+"/accept_local", "1"); err != nil {
		return err
	}
	// The host's ARP requests on the gateway name the gateway address as sender: br0
	// answers only those (table 0 drops other tun0 ARP), and a packet the host sends from
	// another of its addresses — the node IP DNATed to a pod by a hostPort rule, say —
	// would otherwise ask with that address and never get an answer.
	if err := h.sysctl("net/ipv4/conf/"+dev+"/arp_announce", "2"); err != nil {
		return err
	}
	if err := nh.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", dev, err)
	}
	for _, dst := range routes {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(dst), Scope: netlink.SCOPE_LINK, MTU: mtu}
		if err := nh.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s dev %s: %w", dst, dev, err)
		}
	}
	return nil
}

func (h netlinkHost) EnsureServiceRoutes(dev string, via netip.Addr, mac net.HardwareAddr, dsts []netip.Prefix, mtu int) error {
	nh, err := h.handle()
	if err != nil {
		return err
	}
	defer nh.Close()
	link, err := nh.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("find %s: %w", dev, err)
	}
	neigh := &netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: via.AsSlice(), HardwareAddr: mac}
	if err := nh.NeighSet(neigh); err != nil {
		return fmt.Errorf("neighbour %s lladdr %s dev %s: %w", via, mac, dev, err)
	}
	for _, dst := range dsts {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(dst), Gw: via.AsSlice(), Flags: int(netlink.FLAG_ONLINK), MTU: mtu}
		if err := nh.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s via %s dev %s onlink: %w", dst, via, dev, err)
		}
	}
	return nil
}

func ensureOnlyAddr(nh *netlink.Handle, link netlink.Link, gw netip.Prefix) error {
	addrs, err := nh.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	have := false
	for _, a := range addrs {
		if a.IPNet.String() == gw.String() {
			have = true
			continue
		}
		if err := nh.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove %s from %s: %w", a.IPNet, link.Attrs().Name, err)
		}
	}
	if have {
		return nil
	}
	if err := nh.AddrAdd(link, &netlink.Addr{IPNet: ipNet(gw)}); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s to %s: %w", gw, link.Attrs().Name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (h netlinkHost) EnsureIPForward() error { return h.sysctl("net/ipv4/ip_forward", "1") }

// sysctl sets /proc/sys/<name> to value in the host namespace (/proc/sys/net
// is per network namespace, seen by a thread in it).
func (h netlinkHost) sysctl(name, value string) error {
	return h.do(func() error {
		path := "/proc/sys/" + name
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == value {
			return nil
		}
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(name, "/", "."), value, err)
		}
		return nil
	})
}

func (h netlinkHost) IPTables() (iptables.Interface, error) {
	var ipt iptables.Interface
	err := h.do(func() error {
		var err error
		ipt, err = iptables.New()
		return err
	})
	if err != nil || h.nsPath == "" {
		return ipt, err
	}
	return nsIPTables{h: h, ipt: ipt}, nil
}

// nsIPTables runs every iptables command from a thread in the host
// namespace: go-iptables execs iptables, and a child inherits the netns of
// the thread that forks it.
type nsIPTables struct {
	h   netlinkHost
	ipt iptables.Interface
}

func (n nsIPTables) ChainExists(table, chain string) (ok bool, err error) {
	err = n.h.do(func() error { ok, err = n.ipt.ChainExists(table, chain); return err })
	return ok, err
}

func (n nsIPTables) NewChain(table, chain string) error {
	return n.h.do(func() error { return n.ipt.NewChain(table, chain) })
}

func (n nsIPTables) ClearChain(table, chain string) error {
	return n.h.do(func() error { return n.ipt.ClearChain(table, chain) })
}

func (n nsIPTables) ClearAndDeleteChain(table, chain string) error {
	return n.h.do(func() error { return n.ipt.ClearAndDeleteChain(table, chain) })
}

func (n nsIPTables) List(table, chain string) (rules []string, err error) {
	err = n.h.do(func() error { rules, err = n.ipt.List(table, chain); return err })
	return rules, err
}

func (n nsIPTables) Exists(table, chain string, rulespec ...string) (ok bool, err error) {
	err = n.h.do(func() error { ok, err = n.ipt.Exists(table, chain, rulespec...); return err })
	return ok, err
}

func (n nsIPTables) Insert(table, chain string, pos int, rulespec ...string) error {
	return n.h.do(func() error { return n.ipt.Insert(table, chain, pos, rulespec...) })
}

func (n nsIPTables) Append(table, chain string, rulespec ...string) error {
	return n.h.do(func() error { return n.ipt.Append(table, chain, rulespec...) })
}

func (n nsIPTables) DeleteIfExists(table, chain string, rulespec ...string) error {
	return n.h.do(func() error { return n.ipt.DeleteIfExists(table, chain, rulespec...) })
}
