package netlab

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// contactLogLimit bounds ExternalHost.Contacts (~100 bytes a record).
const contactLogLimit = 1 << 20

// Contact is one connection accepted or one datagram received by an external host's echo
// server, as the server saw it.
type Contact struct {
	Time  time.Time
	Proto string         // "tcp" or "udp"
	Src   netip.AddrPort // the client as seen by the host (after any SNAT)
	Dst   netip.AddrPort // the server's address and port
}

func (c Contact) String() string {
	return fmt.Sprintf("%s %s %s → %s", c.Time.Format("15:04:05.000"), c.Proto, c.Src, c.Dst)
}

// startServers opens every listener inside the host netns, then serves from goroutines.
func (h *ExternalHost) startServers() error {
	return inNetNS(h.NetNS.Path, func() error {
		for _, a := range h.Addrs {
			for _, p := range h.TCPPorts {
				ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, p)))
				if err != nil {
					return fmt.Errorf("listen tcp %s:%d: %w", a, p, err)
				}
				h.servers = append(h.servers, serveTCPEcho(ln, h.Contacts))
			}
			for _, p := range h.UDPPorts {
				c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, p)))
				if err != nil {
					return fmt.Errorf("listen udp %s:%d: %w", a, p, err)
				}
				h.servers = append(h.servers, serveUDPEcho(c, h.Contacts))
			}
		}
		return nil
	})
}

// tcpEcho answers each connection with the client's address, then echoes.
type tcpEcho struct {
	ln    *net.TCPListener
	log   *Log[Contact]
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

func serveTCPEcho(ln *net.TCPListener, log *Log[Contact]) *tcpEcho {
	s := &tcpEcho{ln: ln, log: log, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	return s
}

func (s *tcpEcho) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptTCP()
		if err != nil {
			return
		}
		src, dst := c.RemoteAddr().(*net.TCPAddr).AddrPort(), c.LocalAddr().(*net.TCPAddr).AddrPort()
		s.log.add(Contact{Time: time.Now(), Proto: "tcp", Src: unmap(src), Dst: unmap(dst)})
		if !s.track(c, true) {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.track(c, false)
			defer c.Close()
			if _, err := io.WriteString(c, unmap(src).String()+"\n"); err == nil {
				_, _ = io.Copy(c, c)
			}
		}()
	}
}

// track registers (open) or forgets a connection; it refuses, closing c, once closed.
func (s *tcpEcho) track(c net.Conn, open bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case open && s.done:
		_ = c.Close()
		return false
	case open:
		s.conns[c] = struct{}{}
	default:
		delete(s.conns, c)
	}
	return true
}

func (s *tcpEcho) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.done = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// udpEcho answers each datagram with the client's address and the datagram.
type udpEcho struct {
	c    *net.UDPConn
	log  *Log[Contact]
	done chan struct{}
}

func serveUDPEcho(c *net.UDPConn, log *Log[Contact]) *udpEcho {
	s := &udpEcho{c: c, log: log, done: make(chan struct{})}
	go s.serve()
	return s
}

func (s *udpEcho) serve() {
	defer close(s.done)
	dst := unmap(s.c.LocalAddr().(*net.UDPAddr).AddrPort())
	buf := make([]byte, 65536)
	for {
		n, src, err := s.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		src = unmap(src)
		s.log.add(Contact{Time: time.Now(), Proto: "udp", Src: src, Dst: dst})
		reply := append([]byte(src.String()+"\n"), buf[:n]...)
		_, _ = s.c.WriteToUDPAddrPort(reply, src)
	}
}

func (s *udpEcho) Close() error {
	err := s.c.Close()
	<-s.done
	return err
}

func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }
