package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netlinkUnderlay is the underlay of the host network namespace at nsPath
// ("" = the agent's own), through netlink (see underlay). It keeps one
// netlink handle open (reopened after an error); safe for concurrent use.
type netlinkUnderlay struct {
	h  netlinkHost
	mu sync.Mutex
	nh *netlink.Handle
}

func newNetlinkUnderlay(nsPath string) *netlinkUnderlay {
	return &netlinkUnderlay{h: netlinkHost{nsPath: nsPath}}
}

// do runs fn with the handle; an error closes it, so the next call opens
// a new one (the namespace or the socket may have gone bad).
func (u *netlinkUnderlay) do(fn func(nh *netlink.Handle) error) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.nh == nil {
		nh, err := u.h.handle()
		if err != nil {
			return err
		}
		u.nh = nh
	}
	err := fn(u.nh)
	if err != nil {
		u.nh.Close()
		u.nh = nil
	}
	return err
}

func (u *netlinkUnderlay) Route(dst netip.Addr) (dev string, hop netip.Addr, err error) {
	err = u.do(func(nh *netlink.Handle) error {
		dev, hop, err = route(nh, dst)
		return err
	})
	return dev, hop, err
}

func route(nh *netlink.Handle, dst netip.Addr) (string, netip.Addr, error) {
	routes, err := nh.RouteGet(dst.AsSlice())
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("route to %s: %w", dst, err)
	}
	if len(routes) == 0 {
		return "", netip.Addr{}, fmt.Errorf("route to %s: none", dst)
	}
	link, err := nh.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("route to %s: device %d: %w", dst, routes[0].LinkIndex, err)
	}
	hop := dst
	if gw, ok := netip.AddrFromSlice(routes[0].Gw); ok && gw.Unmap().IsValid() && !gw.IsUnspecified() {
		hop = gw.Unmap()
	}
	return link.Attrs().Name, hop, nil
}

// validNeighbor is the states whose MAC is usable.
const validNeighbor = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT

func (u *netlinkUnderlay) Neighbors(dev string) (ns map[netip.Addr]net.HardwareAddr, err error) {
	err = u.do(func(nh *netlink.Handle) error {
		ns, err = neighbors(nh, dev)
		return err
	})
	return ns, err
}

func neighbors(nh *netlink.Handle, dev string) (map[netip.Addr]net.HardwareAddr, error) {
	link, err := nh.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", dev, err)
	}
	ns, err := nh.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("neighbours of %s: %w", dev, err)
	}
	out := map[netip.Addr]net.HardwareAddr{}
	for _, n := range ns {
		ip, ok := netip.AddrFromSlice(n.IP)
		if ok && n.State&validNeighbor != 0 && len(n.HardwareAddr) == 6 {
			out[ip.Unmap()] = n.HardwareAddr
		}
	}
	return out, nil
}

// Resolve sends RTM_NEWNEIGH with NTF_USE (resolve now, as a packet to hop
// would) and NTF_EXT_MANAGED (keep it resolved). Kernels before 5.16 do
// not know managed entries: then the entry is only used.
func (u *netlinkUnderlay) Resolve(dev string, hop netip.Addr) error {
	return u.do(func(nh *netlink.Handle) error { return resolve(nh, dev, hop) })
}

func resolve(nh *netlink.Handle, dev string, hop netip.Addr) error {
	link, err := nh.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("find %s: %w", dev, err)
	}
	n := &netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4, IP: hop.AsSlice(),
		State: netlink.NUD_NONE, Flags: netlink.NTF_USE, FlagsExt: netlink.NTF_EXT_MANAGED}
	err = nh.NeighSet(n)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		n.FlagsExt = 0
		err = nh.NeighSet(n)
	}
	if err != nil {
		return fmt.Errorf("resolve %s on %s: %w", hop, dev, err)
	}
	return nil
}
