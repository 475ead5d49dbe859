package netlab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WhoAmI servers answer with who served and whom they saw: a Service test asks which
// endpoint a connection reached and which client address the endpoint saw (SNAT or not).

// Who is a WhoAmI server's answer.
type Who struct {
	Server string         // the pod that answered
	Client netip.AddrPort // the client address it saw
}

func (w Who) String() string { return w.Server + " saw " + w.Client.String() }

// WhoAmIServer serves TCP and UDP on one port inside a pod netns. A TCP connection gets the
// line "<pod> <client ip:port>\n" and then an echo of what it sends; a UDP datagram is
// answered with "<pod> <client ip:port>\n" followed by the datagram.
type WhoAmIServer struct {
	tcp  net.Listener
	udp  *net.UDPConn
	wg   sync.WaitGroup
	once sync.Once

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// ServeWhoAmI listens on 0.0.0.0:port (TCP and UDP) inside the pod netns until Close
// (Lab.Close closes it).
func (p *Pod) ServeWhoAmI(port int) (*WhoAmIServer, error) {
	s := &WhoAmIServer{conns: map[net.Conn]struct{}{}}
	err := inNetNS(p.NetNS.Path, func() (err error) {
		if s.tcp, err = net.Listen("tcp4", ":"+strconv.Itoa(port)); err != nil {
			return err
		}
		s.udp, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		if err != nil {
			s.tcp.Close()
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("whoami on port %d in pod %s: %w", port, p.Name, err)
	}
	s.wg.Add(2)
	go s.serveTCP(p.Name)
	go s.serveUDP(p.Name)
	p.Node.lab.addCloser(s)
	return s, nil
}

func (s *WhoAmIServer) serveTCP(name string) {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		if !s.track(c, true) {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.track(c, false)
			defer c.Close()
			line := name + " " + unmap(c.RemoteAddr().(*net.TCPAddr).AddrPort()).String() + "\n"
			if _, err := c.Write([]byte(line)); err == nil {
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil || func() error { _, err := c.Write(buf[:n]); return err }() != nil {
						return
					}
				}
			}
		}()
	}
}

func (s *WhoAmIServer) serveUDP(name string) {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, src, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		reply := append([]byte(name+" "+unmap(src).String()+"\n"), buf[:n]...)
		_, _ = s.udp.WriteToUDPAddrPort(reply, src)
	}
}

func (s *WhoAmIServer) track(c net.Conn, open bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case open && s.closed:
		_ = c.Close()
		return false
	case open:
		s.conns[c] = struct{}{}
	default:
		delete(s.conns, c)
	}
	return true
}

// Close stops both listeners, closes open connections and waits for the handlers.
// Idempotent.
func (s *WhoAmIServer) Close() error {
	var err error
	s.once.Do(func() {
		err = s.tcp.Close()
		_ = s.udp.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return err
}

func parseWho(line string) (Who, error) {
	name, addr, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
	ap, err := netip.ParseAddrPort(addr)
	if !ok || err != nil {
		return Who{}, fmt.Errorf("not a whoami answer: %q", line)
	}
	return Who{Server: name, Client: ap}, nil
}

// TCPWho connects from the namespace to a WhoAmI server (directly or through a Service)
// and returns its answer; the connection is closed.
func (n NetNS) TCPWho(dst netip.AddrPort, timeout time.Duration) (Who, error) {
	conn, w, err := n.TCPWhoConn(dst, timeout)
	if err == nil {
		conn.Close()
	}
	return w, err
}

// TCPWhoConn is TCPWho that leaves the connection open (a long-lived connection through a
// Service: write to it and read the echo to check it still works).
func (n NetNS) TCPWhoConn(dst netip.AddrPort, timeout time.Duration) (net.Conn, Who, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := n.DialTCP(ctx, netip.Addr{}, dst)
	if err != nil {
		return nil, Who{}, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, Who{}, fmt.Errorf("whoami answer from %s to %s: %w", dst, n.Name, err)
	}
	_ = conn.SetDeadline(time.Time{})
	w, err := parseWho(line)
	if err != nil {
		conn.Close()
		return nil, Who{}, err
	}
	return conn, w, nil
}

// UDPWho sends one datagram from the namespace to a WhoAmI server and returns its answer.
// The reply must come from dst (a connected socket drops anything else), so a Service's
// reply that is not un-NATed back to the virtual address fails here.
func (n NetNS) UDPWho(dst netip.AddrPort, timeout time.Duration) (Who, error) {
	msg := fmt.Sprintf("who %d", time.Now().UnixNano())
	reply, err := n.UDPExchange(dst, []byte(msg), timeout)
	if err != nil {
		return Who{}, err
	}
	line, rest, ok := strings.Cut(string(reply), "\n")
	if !ok || rest != msg {
		return Who{}, fmt.Errorf("udp reply from %s to %s: %q does not echo %q", dst, n.Name, reply, msg)
	}
	return parseWho(line)
}
