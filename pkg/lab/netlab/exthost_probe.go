package netlab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Probes from any lab namespace (a node, a pod, the external host). Sockets are created on
// a thread switched into the namespace and used from any goroutine afterwards.

// DialTCP connects from the namespace to dst; src, when valid, is the source address (it
// must be configured in the namespace), otherwise the kernel picks it.
func (n NetNS) DialTCP(ctx context.Context, src netip.Addr, dst netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{}
	if src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	var conn net.Conn
	err := inNetNS(n.Path, func() (err error) {
		conn, err = d.DialContext(ctx, "tcp4", dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tcp connect %s from %s: %w", dst, n.Name, err)
	}
	return conn, nil
}

// TCPHello connects to dst and returns the first line the server sends: for an external
// host's echo server the client address it saw ("198.18.0.11:40312"), for a pod's ServeTCP
// the pod name.
func (n NetNS) TCPHello(dst netip.AddrPort, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := n.DialTCP(ctx, netip.Addr{}, dst)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("tcp greeting from %s to %s: %w", dst, n.Name, err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// UDPExchange sends payload from the namespace to dst and returns the first reply within
// timeout (for an external host's echo server: "<client ip>:<port>\n" + payload).
func (n NetNS) UDPExchange(dst netip.AddrPort, payload []byte, timeout time.Duration) ([]byte, error) {
	var conn net.Conn
	err := inNetNS(n.Path, func() (err error) {
		conn, err = net.Dial("udp4", dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("udp to %s from %s: %w", dst, n.Name, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(payload); err != nil {
		return nil, fmt.Errorf("udp to %s from %s: %w", dst, n.Name, err)
	}
	buf := make([]byte, 65536)
	nr, err := conn.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("udp reply from %s to %s: %w", dst, n.Name, err)
	}
	return buf[:nr], nil
}

// UDPHello sends one datagram to an external host's echo server and returns the client
// address the server saw.
func (n NetNS) UDPHello(dst netip.AddrPort, timeout time.Duration) (string, error) {
	msg := fmt.Sprintf("hello %d", time.Now().UnixNano())
	reply, err := n.UDPExchange(dst, []byte(msg), timeout)
	if err != nil {
		return "", err
	}
	src, rest, ok := strings.Cut(string(reply), "\n")
	if !ok || rest != msg {
		return "", fmt.Errorf("udp reply from %s to %s: %q is not an echo of %q", dst, n.Name, reply, msg)
	}
	return src, nil
}

// Ping sends count echo requests from the namespace and succeeds when one is answered.
func (n NetNS) Ping(dst netip.Addr, count int) error {
	st, err := pingFrom(n, dst, count, 0)
	if err == nil && st.Received == 0 {
		err = fmt.Errorf("no reply to %d requests", st.Sent)
	}
	if err != nil {
		return fmt.Errorf("ping %s from %s: %w", dst, n.Name, err)
	}
	return nil
}

// CaptureDrops returns how many packets the kernel dropped from the host's capture socket
// (buffer full) since the previous call; a test asserting the absence of a packet must
// check it is 0, as well as Packets.Lost().
func (h *ExternalHost) CaptureDrops() (int, error) { return h.capture.drops() }

// Service returns the address:port of the host's i-th address and port.
func (h *ExternalHost) Service(addr int, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(h.Addrs[addr], port)
}

// DialContext connects from the namespace to address ("host:port") over network ("tcp",
// "tcp4", "udp", …), as net.Dialer.DialContext does from the calling process's namespace: a
// dialer for components that run in the root namespace but must reach lab addresses (the
// sdn-controller's egress-node health checks). The socket is created inside the namespace;
// errors wrap the dialer's, so errors.Is(err, syscall.ECONNREFUSED) still works.
func (n NetNS) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := inNetNS(n.Path, func() (err error) {
		conn, err = (&net.Dialer{}).DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s connect %s from %s: %w", network, address, n.Name, err)
	}
	return conn, nil
}
