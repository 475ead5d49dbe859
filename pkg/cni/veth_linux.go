package cni

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// HostVethName is the host end of the veth of (containerID, ifName), which
// is also its OVS port name: "veth" + 11 hex digits of a SHA-256 of both
// (15 bytes, the kernel's limit). Derived, not random, so that DEL, CHECK
// and a repeated ADD find it without any saved state, also after an agent
// restart.
func HostVethName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifName))
	return "veth" + hex.EncodeToString(sum[:])[:11]
}

// PodMAC is the MAC of a pod with address a: 0a:58:<a.b.c.d>, as
// OpenShift SDN's plugin sets it (the pipeline's ARP anti-spoofing relies
// on it).
func PodMAC(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x0a, 0x58, b[0], b[1], b[2], b[3]}
}

// podLink is the wanted state of a pod's interface.
type podLink struct {
	netns, ifName, hostVeth string
	addr                    netip.Prefix
	nc                      NodeConfig
}

// ensureVeth makes the veth pair exist and be configured: ifName in the pod
// netns (MAC, MTU, address, routes, up; lo up), hostVeth in hostNS (MTU,
// up); TX checksum offload off on both on the netdev datapath. created
// reports whether this call created the pair (what a rollback must undo).
// Idempotent: a pair that already exists is reconfigured in place.
func ensureVeth(hostNS ns.NetNS, l podLink) (created bool, err error) {
	podNS, err := ns.GetNS(l.netns)
	if err != nil {
		return false, &netnsError{path: l.netns, err: err}
	}
	defer podNS.Close()
	err = podNS.Do(func(ns.NetNS) error {
		created, err = ensurePair(hostNS, l)
		if err != nil {
			return err
		}
		return configurePodLink(l)
	})
	if err != nil {
		return created, err
	}
	return created, hostNS.Do(func(ns.NetNS) error { return configureHostLink(l) })
}

// ensurePair runs in the pod netns: it creates the pair unless ifName is
// already the peer of hostVeth.
func ensurePair(hostNS ns.NetNS, l podLink) (bool, error) {
	link, err := netlinksafe.LinkByName(l.ifName)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		mac := PodMAC(l.addr.Addr()).String()
		if _, _, err := ip.SetupVethWithName(l.ifName, l.hostVeth, l.nc.MTU, mac, hostNS); err != nil {
			return false, fmt.Errorf("create veth %s/%s: %w", l.ifName, l.hostVeth, err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", l.ifName, err)
	}
	if err := isPeerOf(hostNS, link, l.hostVeth); err != nil {
		return false, fmt.Errorf("interface %s already exists in %s and is not ours: %w", l.ifName, l.netns, err)
	}
	return false, nil
}

// isPeerOf reports an error unless link is a veth whose peer is hostVeth in
// hostNS.
func isPeerOf(hostNS ns.NetNS, link netlink.Link, hostVeth string) error {
	if _, ok := link.(*netlink.Veth); !ok {
		return fmt.Errorf("%s is a %s, not a veth", link.Attrs().Name, link.Type())
	}
	var index int
	err := hostNS.Do(func(ns.NetNS) error {
		h, err := netlinksafe.LinkByName(hostVeth)
		if err != nil {
			return fmt.Errorf("host end %s: %w", hostVeth, err)
		}
		index = h.Attrs().Index
		return nil
	})
	if err != nil {
		return err
	}
	if link.Attrs().ParentIndex != index {
		return fmt.Errorf("%s is not the peer of host veth %s", link.Attrs().Name, hostVeth)
	}
	return nil
}

// configurePodLink runs in the pod netns.
func configurePodLink(l podLink) error {
	link, err := netlinksafe.LinkByName(l.ifName)
	if err != nil {
		return fmt.Errorf("look up %s: %w", l.ifName, err)
	}
	mac := PodMAC(l.addr.Addr())
	if !bytes.Equal(link.Attrs().HardwareAddr, mac) {
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("set MAC of %s: %w", l.ifName, err)
		}
	}
	if link.Attrs().MTU != l.nc.MTU {
		if err := netlink.LinkSetMTU(link, l.nc.MTU); err != nil {
			return fmt.Errorf("set MTU of %s: %w", l.ifName, err)
		}
	}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipNet(l.addr)}); err != nil {
		return fmt.Errorf("address %s on %s: %w", l.addr, l.ifName, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", l.ifName, err)
	}
	if lo, err := netlinksafe.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo) // best effort: runtimes usually did it already
	}
	for _, r := range podRoutes(link.Attrs().Index, l.nc) {
		if err := netlink.RouteReplace(&r); err != nil {
			return fmt.Errorf("route %s on %s: %w", r.Dst, l.ifName, err)
		}
	}
	if l.nc.DatapathType == "netdev" {
		return setTxChecksum(l.ifName, false)
	}
	return nil
}

// configureHostLink runs in the host netns.
func configureHostLink(l podLink) error {
	link, err := netlinksafe.LinkByName(l.hostVeth)
	if err != nil {
		return fmt.Errorf("look up host veth %s: %w", l.hostVeth, err)
	}
	if link.Attrs().MTU != l.nc.MTU {
		if err := netlink.LinkSetMTU(link, l.nc.MTU); err != nil {
			return fmt.Errorf("set MTU of %s: %w", l.hostVeth, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", l.hostVeth, err)
	}
	if l.nc.DatapathType == "netdev" {
		return setTxChecksum(l.hostVeth, false)
	}
	return nil
}

// podRoutes are the pod's routes: each cluster CIDR on-link (pods ARP for
// every pod address), and the default route via the node gateway.
func podRoutes(linkIndex int, nc NodeConfig) []netlink.Route {
	var rs []netlink.Route
	for _, cn := range nc.ClusterNetworks {
		rs = append(rs, netlink.Route{LinkIndex: linkIndex, Dst: ipNet(cn.Masked()), Scope: netlink.SCOPE_LINK})
	}
	return append(rs, netlink.Route{LinkIndex: linkIndex, Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")),
		Gw: nc.gateway().AsSlice()})
}

// deleteVeth removes the pair by its host end (which takes the pod end
// with it). Idempotent: a missing veth is fine — the pod netns may be gone
// already, and with it the pair.
func deleteVeth(hostNS ns.NetNS, hostVeth string) error {
	return hostNS.Do(func(ns.NetNS) error {
		err := ip.DelLinkByName(hostVeth)
		if err != nil && !errors.Is(err, ip.ErrLinkNotFound) {
			return fmt.Errorf("delete veth %s: %w", hostVeth, err)
		}
		return nil
	})
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// netnsError is a CNI_NETNS that cannot be opened.
type netnsError struct {
	path string
	err  error
}

func (e *netnsError) Error() string { return fmt.Sprintf("network namespace %s: %v", e.path, e.err) }
func (e *netnsError) Unwrap() error { return e.err }
