package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// packetLogLimit bounds ExternalHost.Packets (~90 bytes a record): enough for probe traffic
// of long tests; bulk transfers through the host would exceed it (Log.Lost says so).
const packetLogLimit = 500_000

// captureRcvBuf is the packet socket's receive buffer; bursts beyond it are dropped by the
// kernel and counted (ExternalHost.CaptureDrops).
const captureRcvBuf = 8 << 20

// ipv4EtherType is ETH_P_IP in network byte order, as packet sockets take it.
const ipv4EtherType = unix.ETH_P_IP<<8&0xff00 | unix.ETH_P_IP>>8

// IP protocol numbers of Packet.Proto.
const (
	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
	ProtoSCTP = 132
)

// TCP flags of Packet.TCPFlags.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPAck = 0x10
)

// Packet is one IPv4 packet that arrived on the external host's eth0.
type Packet struct {
	Time     time.Time
	Proto    uint8          // IP protocol (ProtoTCP, …)
	Src, Dst netip.AddrPort // ports are 0 unless Proto is TCP, UDP or SCTP (first fragment)
	TCPFlags uint8
}

func (p Packet) String() string {
	s := fmt.Sprintf("%s proto %d %s → %s", p.Time.Format("15:04:05.000"), p.Proto, p.Src, p.Dst)
	if p.Proto == ProtoTCP {
		s += fmt.Sprintf(" flags %#02x", p.TCPFlags)
	}
	return s
}

// packetCapture reads IPv4 packets arriving on one device from an AF_PACKET socket
// (SOCK_DGRAM: the link header is removed) opened inside the host netns. The socket is
// non-blocking and registered with Go's poller, so Close unblocks the reader.
type packetCapture struct {
	f    *os.File
	fd   int
	log  *Log[Packet]
	done chan struct{}
}

func startCapture(ns NetNS, dev string, log *Log[Packet]) (*packetCapture, error) {
	proto := int(ipv4EtherType)
	var fd int
	err := inNetNS(ns.Path, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, captureRcvBuf)
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index})
	})
	if err != nil {
		if fd > 0 {
			_ = unix.Close(fd)
		}
		return nil, fmt.Errorf("packet capture on %s in %s: %w", dev, ns.Name, err)
	}
	c := &packetCapture{f: os.NewFile(uintptr(fd), "capture-"+dev), fd: fd, log: log, done: make(chan struct{})}
	go c.run()
	return c, nil
}

func (c *packetCapture) run() {
	defer close(c.done)
	rc, err := c.f.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 256) // headers only; the rest of a packet is truncated away
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil { // closed
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); rerr != nil || !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if p, ok := parseIPv4(buf[:n]); ok {
			p.Time = time.Now()
			c.log.add(p)
		}
	}
}

// drops returns the packets the kernel dropped for lack of buffer space since the last call.
func (c *packetCapture) drops() (int, error) {
	var st *unix.TpacketStats
	err := rawControl(c.f, func(fd int) (err error) {
		st, err = unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("capture statistics: %w", err)
	}
	return int(st.Drops), nil
}

func rawControl(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func (c *packetCapture) Close() error {
	err := c.f.Close()
	<-c.done
	return err
}

// parseIPv4 decodes the addresses, protocol, ports and TCP flags of an IPv4 packet.
func parseIPv4(b []byte) (Packet, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return Packet{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	src, _ := netip.AddrFromSlice(b[12:16])
	dst, _ := netip.AddrFromSlice(b[16:20])
	p := Packet{Proto: b[9], Src: netip.AddrPortFrom(src, 0), Dst: netip.AddrPortFrom(dst, 0)}
	firstFragment := binary.BigEndian.Uint16(b[6:8])&0x1fff == 0
	l4 := b[min(ihl, len(b)):]
	switch {
	case !firstFragment || len(l4) < 4:
	case p.Proto == ProtoTCP || p.Proto == ProtoUDP || p.Proto == ProtoSCTP:
		p.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:2]))
		p.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:4]))
		if p.Proto == ProtoTCP && len(l4) >= 14 {
			p.TCPFlags = l4[13]
		}
	}
	return p, true
}
