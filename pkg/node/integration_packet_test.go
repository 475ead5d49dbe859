package node_test

// Crafted packets for the spoofing tests: whole Ethernet frames sent from a
// packet socket inside a pod netns, and a packet-socket sniffer on a pod's
// eth0 that records every frame the pod receives.

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sniffer records the frames seen on one interface of a netns.
type sniffer struct {
	fd     int
	mu     sync.Mutex
	frames [][]byte
	stop   chan struct{}
	done   chan struct{}
}

// sniff starts recording frames on dev inside the netns at nsPath until the
// test ends.
func sniff(t *testing.T, nsPath, dev string) *sniffer {
	t.Helper()
	s := &sniffer{stop: make(chan struct{}), done: make(chan struct{})}
	err := ns.WithNetNSPath(nsPath, func(ns.NetNS) error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		s.fd = fd
		tv := unix.Timeval{Usec: 50_000}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("sniffer on %s in %s: %v", dev, nsPath, err)
	}
	go s.run()
	t.Cleanup(s.close)
	return s
}

func (s *sniffer) run() {
	defer close(s.done)
	buf := make([]byte, 65536)
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil || n <= 0 {
			continue
		}
		s.mu.Lock()
		s.frames = append(s.frames, append([]byte(nil), buf[:n]...))
		s.mu.Unlock()
	}
}

func (s *sniffer) close() {
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	<-s.done
	unix.Close(s.fd)
}

// seen waits up to wait for a frame containing marker.
func (s *sniffer) seen(marker []byte, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		s.mu.Lock()
		for _, f := range s.frames {
			if bytes.Contains(f, marker) {
				s.mu.Unlock()
				return true
			}
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sendFrames sends frame count times from dev inside the netns at nsPath
// through a packet socket: the kernel adds nothing, not even ARP.
func sendFrames(t *testing.T, nsPath, dev string, frame []byte, count int) {
	t.Helper()
	err := ns.WithNetNSPath(nsPath, func(ns.NetNS) error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		copy(to.Addr[:], frame[:6])
		for i := 0; i < count; i++ {
			if err := unix.Sendto(fd, frame, 0, to); err != nil {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send frames from %s in %s: %v", dev, nsPath, err)
	}
}

// sendUDP sends payload count times from an unconnected UDP socket inside
// the netns at nsPath to dst (ordinary kernel routing, ARP and source
// address; ICMP errors from the peer are ignored).
func sendUDP(t *testing.T, nsPath string, dst netip.AddrPort, payload []byte, count int) {
	t.Helper()
	var conn *net.UDPConn
	err := ns.WithNetNSPath(nsPath, func(ns.NetNS) (err error) {
		conn, err = net.ListenUDP("udp4", nil)
		return err
	})
	if err != nil {
		t.Fatalf("udp socket in %s: %v", nsPath, err)
	}
	defer conn.Close()
	for i := 0; i < count; i++ {
		if _, err := conn.WriteToUDPAddrPort(payload, dst); err != nil {
			t.Fatalf("udp send to %s from %s: %v", dst, nsPath, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ethHeader(dst, src net.HardwareAddr, etherType uint16) []byte {
	b := make([]byte, 14)
	copy(b, dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], etherType)
	return b
}

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// arpFrame is an ARP request (op 1). tha carries a marker: requests ignore it.
func arpFrame(ethSrc, sha net.HardwareAddr, spa, tpa netip.Addr, tha net.HardwareAddr) []byte {
	b := ethHeader(broadcastMAC, ethSrc, unix.ETH_P_ARP)
	arp := make([]byte, 28)
	binary.BigEndian.PutUint16(arp[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(arp[2:], 0x0800) // IPv4
	arp[4], arp[5] = 6, 4
	binary.BigEndian.PutUint16(arp[6:], 1) // request
	copy(arp[8:], sha)
	s, d := spa.As4(), tpa.As4()
	copy(arp[14:], s[:])
	copy(arp[18:], tha)
	copy(arp[24:], d[:])
	return append(b, arp...)
}

// udpFrame is an Ethernet/IPv4/UDP frame with correct checksums.
func udpFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	return append(ethHeader(dstMAC, srcMAC, unix.ETH_P_IP), ipv4UDP(src, dst, sport, dport, payload)...)
}

func ipv4UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	udpLen := 8 + len(payload)
	ip := make([]byte, 20+udpLen)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[8], ip[9] = 64, unix.IPPROTO_UDP
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip[:20], 0))
	u := ip[20:]
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(udpLen))
	copy(u[8:], payload)
	pseudo := uint32(0)
	for i := 0; i < 4; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(s[i:])) + uint32(binary.BigEndian.Uint16(d[i:]))
	}
	pseudo += unix.IPPROTO_UDP + uint32(udpLen)
	cs := checksum(u, pseudo)
	if cs == 0 {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], cs)
	return ip
}

// vxlanPayload is a VXLAN header (I flag, vni) followed by inner.
func vxlanPayload(vni uint32, inner []byte) []byte {
	h := make([]byte, 8)
	h[0] = 0x08
	binary.BigEndian.PutUint32(h[4:], vni<<8)
	return append(h, inner...)
}

func checksum(b []byte, sum uint32) uint16 {
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
