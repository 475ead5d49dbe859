package kubelet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Multicast in pods. A receiver is a UDP socket bound to group:port in the pod's netns and
// joined to the group on eth0 (IP_ADD_MEMBERSHIP): the kernel accepts a multicast datagram
// only for a group some socket of the netns joined on the receiving interface; no IGMP
// querier is needed, since OVS floods per VNID without snooping. A sender is a UDP socket
// connected to group:port with no interface chosen: the pod's default route (via the
// gateway, on eth0) selects eth0, and the kernel sends multicast there without the gateway
// (it never routes multicast through a gateway when no more specific route exists). The
// sender turns IP_MULTICAST_LOOP off, so that a listener in the sender's own pod can only
// receive the datagram if the network sent it back.

// Datagram is one multicast datagram a listener received.
type Datagram struct {
	From    netip.AddrPort
	Payload string
	At      time.Time
}

// MulticastListener records the datagrams sent to its group and port in one pod.
type MulticastListener struct {
	Pod  types.NamespacedName
	conn *net.UDPConn
	done chan struct{}

	mu  sync.Mutex
	got []Datagram
}

// JoinMulticast starts a listener for group:port in the running pod key.
func (k *Kubelet) JoinMulticast(key types.NamespacedName, group netip.AddrPort) (*MulticastListener, error) {
	path, _, err := k.podNetNS(key)
	if err != nil {
		return nil, err
	}
	return joinMulticast(path, key, group)
}

// joinMulticast starts a listener for group:port in the pod key, whose netns is at path.
func joinMulticast(path string, key types.NamespacedName, group netip.AddrPort) (*MulticastListener, error) {
	if !group.Addr().Is4() || !group.Addr().IsMulticast() {
		return nil, fmt.Errorf("join %s in pod %s: not an IPv4 multicast group", group, key)
	}
	var conn *net.UDPConn
	err := inNetNS(path, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		conn, err = net.ListenMulticastUDP("udp4", ifi, net.UDPAddrFromAddrPort(group))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("join %s in pod %s: %w", group, key, err)
	}
	l := &MulticastListener{Pod: key, conn: conn, done: make(chan struct{})}
	go l.receive()
	return l, nil
}

func (l *MulticastListener) receive() {
	defer close(l.done)
	buf := make([]byte, 2048)
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		d := Datagram{From: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), Payload: string(buf[:n]), At: time.Now()}
		l.mu.Lock()
		l.got = append(l.got, d)
		l.mu.Unlock()
	}
}

// Received returns the datagrams received so far whose payload starts with prefix.
func (l *MulticastListener) Received(prefix string) []Datagram {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Datagram
	for _, d := range l.got {
		if strings.HasPrefix(d.Payload, prefix) {
			out = append(out, d)
		}
	}
	return out
}

// Close stops the listener (it leaves the group with the socket).
func (l *MulticastListener) Close() error {
	err := l.conn.Close()
	<-l.done
	return err
}

// SendMulticast sends each payload once from the running pod key to group:port, with
// IP_MULTICAST_LOOP off (see the comment at the top of this file).
func (k *Kubelet) SendMulticast(ctx context.Context, key types.NamespacedName, group netip.AddrPort, payloads ...string) error {
	path, _, err := k.podNetNS(key)
	if err != nil {
		return err
	}
	return sendMulticast(ctx, path, key, group, payloads...)
}

// sendMulticast sends the payloads from the pod key, whose netns is at path.
func sendMulticast(ctx context.Context, path string, key types.NamespacedName, group netip.AddrPort, payloads ...string) error {
	var conn *net.UDPConn
	err := inNetNS(path, func() (err error) {
		conn, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(group))
		return err
	})
	if err != nil {
		return fmt.Errorf("send to %s from pod %s: %w", group, key, err)
	}
	defer conn.Close()
	if err := noMulticastLoop(conn); err != nil {
		return fmt.Errorf("send to %s from pod %s: %w", group, key, err)
	}
	for _, p := range payloads {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := conn.Write([]byte(p)); err != nil {
			return fmt.Errorf("send to %s from pod %s: %w", group, key, err)
		}
	}
	return nil
}

func noMulticastLoop(conn *net.UDPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MULTICAST_LOOP, 0)
	})
	return errors.Join(err, serr)
}

// JoinMulticast runs JoinMulticast in the pod key, on whichever member runs it.
func (g *Group) JoinMulticast(key types.NamespacedName, group netip.AddrPort) (*MulticastListener, error) {
	path, err := g.podPath(key)
	if err != nil {
		return nil, err
	}
	return joinMulticast(path, key, group)
}

// SendMulticast runs SendMulticast from the pod key, on whichever member runs it.
func (g *Group) SendMulticast(ctx context.Context, key types.NamespacedName, group netip.AddrPort, payloads ...string) error {
	path, err := g.podPath(key)
	if err != nil {
		return err
	}
	return sendMulticast(ctx, path, key, group, payloads...)
}

func (g *Group) podPath(key types.NamespacedName) (string, error) {
	for _, k := range g.members() {
		if p := k.PodNetNS(key); p != "" {
			return p, nil
		}
	}
	return "", fmt.Errorf("pod %s runs on no node of the group", key)
}
