package cni

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni/shim"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs/ovsdb"
)

// check answers CHECK: it verifies, read-only, everything ADD set up — the
// lease (and prevResult's address), the pod interface (veth, MAC, MTU,
// address, routes, TX checksum), the host end, the OVS port and its
// external_ids, and the pod's flows (through the agent).
func (s *Server) check(ctx context.Context, req *request) error {
	nc, ok := s.cfg.PodNetwork.NodeConfig()
	if !ok {
		return types.NewError(types.ErrTryAgainLater, "ovs-sdn node agent is not ready yet; try again later", "")
	}
	ip, ok := s.leases.Lookup(req.ContainerID, req.IfName)
	if !ok {
		return types.NewError(types.ErrUnknownContainer,
			fmt.Sprintf("ovs-sdn: container %s (%s) has no IP lease on this node", req.ContainerID, req.IfName),
			"it was never added here, or its network was deleted; recreate the pod sandbox")
	}
	p := PodPort{Namespace: req.pod.Namespace, Name: req.pod.Name, SandboxID: req.ContainerID,
		IP: ip, MAC: PodMAC(ip), PortName: HostVethName(req.ContainerID, req.IfName)}
	l := podLink{netns: req.Netns, ifName: req.IfName, hostVeth: p.PortName, addr: netip.PrefixFrom(ip, nc.Subnet.Bits()), nc: nc}
	err := errors.Join(
		checkPrevResult(req.conf, ip),
		checkVeth(s.hostNS, l),
		s.checkPort(ctx, &p),
	)
	if err == nil {
		var verr error
		if p.VNID, verr = s.cfg.PodNetwork.VNID(ctx, p.Namespace); verr != nil {
			err = fmt.Errorf("VNID of namespace %s: %w", p.Namespace, verr)
		} else if ferr := s.cfg.PodNetwork.CheckPod(ctx, p); ferr != nil {
			err = fmt.Errorf("flows: %w", ferr)
		}
	}
	if err != nil {
		return types.NewError(types.ErrInternal,
			fmt.Sprintf("ovs-sdn: pod %s/%s network is broken; recreate the pod sandbox", p.Namespace, p.Name), err.Error())
	}
	return nil
}

// checkPrevResult compares the runtime's cached result with the lease.
func checkPrevResult(conf *shim.NetConf, ip netip.Addr) error {
	if conf.PrevResult == nil {
		return nil
	}
	res, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return fmt.Errorf("prevResult: %w", err)
	}
	for _, c := range res.IPs {
		if a, ok := netip.AddrFromSlice(c.Address.IP.To4()); ok && a == ip {
			return nil
		}
	}
	return fmt.Errorf("prevResult does not hold the leased address %s", ip)
}

// checkVeth verifies both ends of the pod's veth.
func checkVeth(hostNS ns.NetNS, l podLink) error {
	podNS, err := ns.GetNS(l.netns)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", l.netns, err)
	}
	defer podNS.Close()
	err = podNS.Do(func(ns.NetNS) error {
		link, err := netlinksafe.LinkByName(l.ifName)
		if err != nil {
			return fmt.Errorf("pod interface %s: %w", l.ifName, err)
		}
		return errors.Join(isPeerOf(hostNS, link, l.hostVeth), checkPodLink(link, l))
	})
	if err != nil {
		return err
	}
	return hostNS.Do(func(ns.NetNS) error {
		link, err := netlinksafe.LinkByName(l.hostVeth)
		if err != nil {
			return fmt.Errorf("host veth %s: %w", l.hostVeth, err)
		}
		return checkLinkBasics(link, l.nc, nil)
	})
}

// checkPodLink runs in the pod netns.
func checkPodLink(link netlink.Link, l podLink) error {
	errs := []error{checkLinkBasics(link, l.nc, PodMAC(l.addr.Addr()))}
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", l.ifName, err)
	}
	if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == ipNet(l.addr).String() }) {
		errs = append(errs, fmt.Errorf("%s lacks address %s", l.ifName, l.addr))
	}
	routes, err := netlinksafe.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("routes of %s: %w", l.ifName, err)
	}
	for _, want := range podRoutes(link.Attrs().Index, l.nc) {
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return sameRoute(r, want) }) {
			errs = append(errs, fmt.Errorf("%s lacks route %s via %v", l.ifName, want.Dst, want.Gw))
		}
	}
	return errors.Join(errs...)
}

func sameRoute(r, want netlink.Route) bool {
	dst := "0.0.0.0/0"
	if r.Dst != nil {
		dst = r.Dst.String()
	}
	return dst == want.Dst.String() && r.Gw.Equal(want.Gw) && (want.Gw != nil || r.Scope == netlink.SCOPE_LINK)
}

// checkLinkBasics checks MTU, up, the MAC (when mac is set) and TX
// checksum offload on the netdev datapath, in the link's netns.
func checkLinkBasics(link netlink.Link, nc NodeConfig, mac net.HardwareAddr) error {
	a := link.Attrs()
	var errs []error
	if a.MTU != nc.MTU {
		errs = append(errs, fmt.Errorf("%s has MTU %d, want %d", a.Name, a.MTU, nc.MTU))
	}
	if a.Flags&net.FlagUp == 0 {
		errs = append(errs, fmt.Errorf("%s is down", a.Name))
	}
	if mac != nil && !bytes.Equal(a.HardwareAddr, mac) {
		errs = append(errs, fmt.Errorf("%s has MAC %s, want %s", a.Name, a.HardwareAddr, mac))
	}
	if nc.DatapathType == "netdev" {
		if on, err := txChecksum(a.Name); err != nil || on {
			errs = append(errs, fmt.Errorf("%s: TX checksum offload must be off on the userspace datapath (on=%v, err=%v)", a.Name, on, err))
		}
	}
	return errors.Join(errs...)
}

// checkPort verifies the OVS port and its external_ids, and fills p.OFPort.
func (s *Server) checkPort(ctx context.Context, p *PodPort) error {
	ports, err := s.sw.Ports(ctx, s.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("ports of %s: %w", s.cfg.Bridge, err)
	}
	i := slices.IndexFunc(ports, func(pi ovsdb.PortInfo) bool { return pi.Name == p.PortName })
	if i < 0 {
		return fmt.Errorf("OVS port %s is missing from %s", p.PortName, s.cfg.Bridge)
	}
	pi := ports[i]
	if pi.OFPort <= 0 {
		return fmt.Errorf("OVS port %s has no ofport (%s)", p.PortName, pi.Error)
	}
	p.OFPort = uint32(pi.OFPort)
	want := portExternalIDs(*p)
	for k, v := range want {
		if pi.ExternalIDs[k] != v {
			return fmt.Errorf("OVS port %s has external_ids:%s=%q, want %q", p.PortName, k, pi.ExternalIDs[k], v)
		}
	}
	return nil
}
