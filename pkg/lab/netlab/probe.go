package netlab

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// inNetNS runs fn on a thread switched into the namespace at path. Sockets created by fn stay
// in that namespace and may be used from any goroutine afterwards.
func inNetNS(path string, fn func() error) error {
	return ns.WithNetNSPath(path, func(ns.NetNS) error { return fn() })
}

// PingStats is the outcome of a ping run.
type PingStats struct {
	Sent, Received int
	Min, Avg, Max  time.Duration
}

func (s PingStats) String() string {
	return fmt.Sprintf("%d/%d replies, rtt min/avg/max %v/%v/%v",
		s.Received, s.Sent, s.Min, s.Avg, s.Max)
}

// pingTimeout is how long one echo request waits for its reply.
const pingTimeout = time.Second

// Ping sends count ICMP echo requests from the pod to dst and succeeds when at least one is
// answered, like ping(8).
func (p *Pod) Ping(dst netip.Addr, count int) error {
	st, err := p.PingStats(dst, count, 0)
	if err != nil {
		return err
	}
	if st.Received == 0 {
		return fmt.Errorf("ping %s from pod %s: no reply to %d requests", dst, p.Name, st.Sent)
	}
	return nil
}

// PingStats sends count echo requests from the pod to dst, interval apart (after the reply
// or a 1 s timeout), and reports the replies and round-trip times.
func (p *Pod) PingStats(dst netip.Addr, count int, interval time.Duration) (PingStats, error) {
	return pingFrom(p.NetNS, dst, count, interval)
}

// Ping sends count echo requests from the node netns (e.g. to another node's IP) and succeeds
// when at least one is answered.
func (n *Node) Ping(dst netip.Addr, count int) error {
	st, err := pingFrom(n.NetNS, dst, count, 0)
	if err == nil && st.Received == 0 {
		err = fmt.Errorf("no reply to %d requests", st.Sent)
	}
	if err != nil {
		return fmt.Errorf("ping %s from node %s: %w", dst, n.Name, err)
	}
	return nil
}

func pingFrom(n NetNS, dst netip.Addr, count int, interval time.Duration) (PingStats, error) {
	var conn net.PacketConn
	err := inNetNS(n.Path, func() (err error) {
		conn, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		return PingStats{}, fmt.Errorf("icmp socket in %s: %w", n.Name, err)
	}
	defer conn.Close()
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	var st PingStats
	var total time.Duration
	for seq := 0; seq < count; seq++ {
		if seq > 0 {
			time.Sleep(interval)
		}
		st.Sent++
		rtt, ok, err := echo(conn, dst, id, uint16(seq))
		if err != nil {
			return st, fmt.Errorf("ping %s from %s: %w", dst, n.Name, err)
		}
		if ok {
			st.add(rtt)
			total += rtt
		}
	}
	if st.Received > 0 {
		st.Avg = total / time.Duration(st.Received)
	}
	return st, nil
}

func (s *PingStats) add(rtt time.Duration) {
	if s.Received == 0 || rtt < s.Min {
		s.Min = rtt
	}
	if rtt > s.Max {
		s.Max = rtt
	}
	s.Received++
}

// echo sends one echo request and waits for the matching reply; ok is false on timeout.
func echo(conn net.PacketConn, dst netip.Addr, id, seq uint16) (time.Duration, bool, error) {
	start := time.Now()
	to := &net.IPAddr{IP: dst.AsSlice()}
	if _, err := conn.WriteTo(icmpEcho(id, seq), to); err != nil {
		return 0, false, err
	}
	_ = conn.SetReadDeadline(start.Add(pingTimeout))
	buf := make([]byte, 1500)
	for {
		nr, from, err := conn.ReadFrom(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		if isEchoReply(buf[:nr], id, seq) && from.String() == dst.String() {
			return time.Since(start), true, nil
		}
	}
}

// icmpEcho builds an ICMP echo request (type 8) with a 32-byte payload.
func icmpEcho(id, seq uint16) []byte {
	b := make([]byte, 8+32)
	b[0] = 8
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "netlab-ping-payload-0123456789ab")
	binary.BigEndian.PutUint16(b[2:], inetChecksum(b))
	return b
}

// isEchoReply checks an ICMP message (the kernel strips the IPv4 header on ip4:icmp reads).
func isEchoReply(b []byte, id, seq uint16) bool {
	return len(b) >= 8 && b[0] == 0 && b[1] == 0 &&
		binary.BigEndian.Uint16(b[4:]) == id && binary.BigEndian.Uint16(b[6:]) == seq
}

// inetChecksum is the RFC 1071 one's-complement sum.
func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// TCPConnect connects from the pod to dst:port within timeout and, if the peer is a ServeTCP
// server, reads its greeting; any established connection counts as success.
func (p *Pod) TCPConnect(dst netip.Addr, port int, timeout time.Duration) error {
	_, err := p.TCPHello(dst, port, timeout)
	return err
}

// TCPHello connects from the pod to a ServeTCP server at dst:port and returns the name of the
// pod that answered (its greeting line).
func (p *Pod) TCPHello(dst netip.Addr, port int, timeout time.Duration) (string, error) {
	addr := netip.AddrPortFrom(dst, uint16(port)).String()
	var conn net.Conn
	err := inNetNS(p.NetNS.Path, func() (err error) {
		conn, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("tcp connect %s from pod %s: %w", addr, p.Name, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("tcp greeting from %s to pod %s: %w", addr, p.Name, err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// TCPServer is a listener in a pod netns run by the calling process: each connection gets the
// line "<pod name>\n" and then an echo of whatever it sends.
type TCPServer struct {
	Addr netip.AddrPort
	ln   net.Listener
	wg   sync.WaitGroup
	once sync.Once

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{} // open connections; their sockets pin the pod netns too
}

// ServeTCP listens on 0.0.0.0:port inside the pod netns until Close (Lab.Close closes it).
func (p *Pod) ServeTCP(port int) (*TCPServer, error) {
	var ln net.Listener
	err := inNetNS(p.NetNS.Path, func() (err error) {
		ln, err = net.Listen("tcp4", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on tcp port %d in pod %s: %w", port, p.Name, err)
	}
	s := &TCPServer{Addr: netip.AddrPortFrom(p.IP.Addr(), uint16(port)), ln: ln,
		conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve(p.Name + "\n")
	p.Node.lab.addCloser(s)
	return s, nil
}

func (s *TCPServer) serve(greeting string) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.track(c, true)
		s.wg.Add(1)
		go s.handle(c, greeting)
	}
}

func (s *TCPServer) handle(c net.Conn, greeting string) {
	defer s.wg.Done()
	defer s.track(c, false)
	defer c.Close()
	if _, err := io.WriteString(c, greeting); err == nil {
		_, _ = io.Copy(c, c)
	}
}

func (s *TCPServer) track(c net.Conn, open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if open && s.closed {
		_ = c.Close() // accepted while Close ran: the handler ends at once
	} else if open {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

// Close stops listening, closes open connections and waits for the handlers. Idempotent.
func (s *TCPServer) Close() error {
	var err error
	s.once.Do(func() {
		err = s.ln.Close()
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
