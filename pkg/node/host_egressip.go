package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
)

// The host side of the egress IPs a node holds (pkg/pipeline egressip.go
// explains why the SNAT is br0's): for each held IP, a /32 route into br0
// (via ServiceGatewayIP, the permanent neighbour of the service routes, on
// tun0), so that replies from outside reach br0 to be un-SNATed, and a
// proxy neighbour entry on the underlay interface (the one holding the
// node IP), so that the node answers ARP for it; gratuitous ARP announces a
// new claim. The routes are the record of what the agent holds: a /32 via
// ServiceGatewayIP on tun0 other than NodePortVIP is an egress IP, so a
// restarted agent finds (and removes) what it no longer holds.

// EnsureEgressIPs makes the node hold exactly ips (see above) and returns
// the IPs it newly claimed (gratuitous ARP sent). Idempotent.
func (h netlinkHost) EnsureEgressIPs(nodeIP netip.Addr, ips []netip.Addr) ([]netip.Addr, error) {
	nh, err := h.handle()
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	tun, err := nh.LinkByName(pipeline.Tun0)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", pipeline.Tun0, err)
	}
	uplink, err := linkWithAddr(nh, nodeIP)
	if err != nil {
		return nil, err
	}
	held, err := heldEgressIPs(nh, tun)
	if err != nil {
		return nil, err
	}
	if len(ips) > 0 {
		// Answer ARP for a proxied address at once, not after a random
		// delay of up to proxy_delay (0.8 s by default).
		if err := h.sysctl("net/ipv4/neigh/"+uplink.Attrs().Name+"/proxy_delay", "0"); err != nil {
			return nil, err
		}
	}
	var errs []error
	for _, ip := range held {
		if slices.Contains(ips, ip) {
			continue
		}
		proxy := &netlink.Neigh{LinkIndex: uplink.Attrs().Index, Family: netlink.FAMILY_V4, Flags: netlink.NTF_PROXY, IP: ip.AsSlice()}
		if err := nh.NeighDel(proxy); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("release egress IP %s: proxy neighbour on %s: %w", ip, uplink.Attrs().Name, err))
		}
		if err := nh.RouteDel(egressRoute(tun, ip)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("release egress IP %s: route: %w", ip, err))
		}
	}
	var claimed []netip.Addr
	for _, ip := range ips {
		if err := nh.RouteReplace(egressRoute(tun, ip)); err != nil {
			errs = append(errs, fmt.Errorf("egress IP %s: route via %s dev %s: %w", ip, pipeline.ServiceGatewayIP, pipeline.Tun0, err))
			continue
		}
		proxy := &netlink.Neigh{LinkIndex: uplink.Attrs().Index, Family: netlink.FAMILY_V4, Flags: netlink.NTF_PROXY, IP: ip.AsSlice()}
		if err := nh.NeighSet(proxy); err != nil {
			errs = append(errs, fmt.Errorf("egress IP %s: proxy neighbour on %s: %w", ip, uplink.Attrs().Name, err))
			continue
		}
		if slices.Contains(held, ip) {
			continue
		}
		if err := h.gratuitousARP(uplink, ip); err != nil {
			errs = append(errs, fmt.Errorf("egress IP %s: gratuitous ARP on %s: %w", ip, uplink.Attrs().Name, err))
		}
		claimed = append(claimed, ip)
	}
	return claimed, errors.Join(errs...)
}

func egressRoute(tun netlink.Link, ip netip.Addr) *netlink.Route {
	return &netlink.Route{LinkIndex: tun.Attrs().Index, Dst: ipNet(netip.PrefixFrom(ip, 32)),
		Gw: pipeline.ServiceGatewayIP.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}
}

// heldEgressIPs reads the egress IPs held from the routes on tun.
func heldEgressIPs(nh *netlink.Handle, tun netlink.Link) ([]netip.Addr, error) {
	routes, err := nh.RouteList(tun, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list routes of %s: %w", pipeline.Tun0, err)
	}
	var out []netip.Addr
	for _, r := range routes {
		if r.Dst == nil || r.Gw == nil {
			continue
		}
		ones, bits := r.Dst.Mask.Size()
		gw, _ := netip.AddrFromSlice(r.Gw.To4())
		dst, _ := netip.AddrFromSlice(r.Dst.IP.To4())
		if ones == 32 && bits == 32 && gw == pipeline.ServiceGatewayIP && dst != pipeline.NodePortVIP {
			out = append(out, dst)
		}
	}
	return out, nil
}

// linkWithAddr finds the interface holding ip.
func linkWithAddr(nh *netlink.Handle, ip netip.Addr) (netlink.Link, error) {
	addrs, err := nh.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP.To4()); ok && got == ip {
			return nh.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, fmt.Errorf("no interface holds the node IP %s", ip)
}

// gratuitousARP announces ip at link's MAC: an ARP reply and an ARP request
// for ip from ip, broadcast (what arping -A and -U send), so that neighbours
// update their caches at once when an egress IP moves here.
func (h netlinkHost) gratuitousARP(link netlink.Link, ip netip.Addr) error {
	mac := link.Attrs().HardwareAddr
	if len(mac) != 6 {
		return fmt.Errorf("%s has no Ethernet address", link.Attrs().Name)
	}
	return h.do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: link.Attrs().Index, Protocol: htons(unix.ETH_P_ARP), Halen: 6,
			Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		for _, op := range []uint16{2, 1} {
			if err := unix.Sendto(fd, arpFrame(mac, ip, op), 0, to); err != nil {
				return err
			}
		}
		return nil
	})
}

// arpFrame is a broadcast ARP packet of op (1 request, 2 reply) whose
// sender and target protocol addresses are both ip.
func arpFrame(mac net.HardwareAddr, ip netip.Addr, op uint16) []byte {
	b := make([]byte, 42)
	copy(b[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(b[6:12], mac)
	binary.BigEndian.PutUint16(b[12:], unix.ETH_P_ARP)
	binary.BigEndian.PutUint16(b[14:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[16:], 0x0800) // IPv4
	b[18], b[19] = 6, 4
	binary.BigEndian.PutUint16(b[20:], op)
	a := ip.As4()
	copy(b[22:28], mac)
	copy(b[28:32], a[:])
	if op == 2 {
		copy(b[32:38], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	copy(b[38:42], a[:])
	return b
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
