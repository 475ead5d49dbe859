package node_test

// SCTP by hand for TestIntegrationServicesSCTP: the lab's kernel has no
// SCTP sockets (no sctp module), so the test speaks SCTP itself through raw
// IPv4 sockets (protocol 132) in the pods: it builds the packets of an
// association (INIT, INIT ACK, COOKIE ECHO, COOKIE ACK, DATA; RFC 9260 §3)
// and records, with their IP header, the packets each pod receives. A raw
// socket bound to protocol 132 also keeps the pod's kernel from answering
// an INIT with ICMP protocol unreachable. Packet captures for the log are
// tcpdump's, on each pod's eth0.

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
)

// SCTP chunk types (RFC 9260 §3.2).
const (
	chunkData       = 0
	chunkInit       = 1
	chunkInitAck    = 2
	chunkCookieEcho = 10
	chunkCookieAck  = 11
)

var chunkNames = map[byte]string{chunkData: "DATA", chunkInit: "INIT", chunkInitAck: "INIT ACK",
	chunkCookieEcho: "COOKIE ECHO", chunkCookieAck: "COOKIE ACK"}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpChunk is one chunk: type, no flags but DATA's (unfragmented), value
// padded to 4 bytes.
func sctpChunk(typ byte, value []byte) []byte {
	b := make([]byte, 4, 4+len(value)+3)
	b[0] = typ
	if typ == chunkData {
		b[1] = 0x03 // B and E: the whole message
	}
	binary.BigEndian.PutUint16(b[2:], uint16(4+len(value)))
	b = append(b, value...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// sctpMessage is an SCTP packet (common header and chunks) with its CRC32c,
// stored little-endian as RFC 9260 Appendix A and Linux do.
func sctpMessage(sport, dport uint16, vtag uint32, chunks ...[]byte) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], vtag)
	for _, c := range chunks {
		b = append(b, c...)
	}
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, castagnoli))
	return b
}

// initValue is the value of an INIT (or the fixed part of an INIT ACK):
// initiate tag, a_rwnd, one stream each way, initial TSN 1.
func initValue(tag uint32) []byte {
	v := make([]byte, 16)
	binary.BigEndian.PutUint32(v[0:], tag)
	binary.BigEndian.PutUint32(v[4:], 65535)
	binary.BigEndian.PutUint16(v[8:], 1)
	binary.BigEndian.PutUint16(v[10:], 1)
	binary.BigEndian.PutUint32(v[12:], 1)
	return v
}

// sctpCookie is the State Cookie the endpoint hands out and the client
// echoes (its content is the endpoint's business).
var sctpCookie = []byte("cookie!!")

// initAckValue is an INIT ACK's value: initValue and a State Cookie
// parameter (type 7).
func initAckValue(tag uint32) []byte {
	param := make([]byte, 4)
	binary.BigEndian.PutUint16(param[0:], 7)
	binary.BigEndian.PutUint16(param[2:], uint16(4+len(sctpCookie)))
	return append(append(initValue(tag), param...), sctpCookie...)
}

// dataValue is a DATA chunk's value: TSN, stream 0, sequence 0, PPID 0,
// the payload.
func dataValue(tsn uint32, payload string) []byte {
	v := make([]byte, 12)
	binary.BigEndian.PutUint32(v[0:], tsn)
	return append(v, payload...)
}

// sctpSeen is one SCTP packet a pod received, read from its IP header on.
type sctpSeen struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	VTag             uint32
	Chunk            byte   // the first chunk's type
	InitTag          uint32 // INIT and INIT ACK: the initiate tag
	Payload          string // DATA
	CRCValid         bool
}

func (p sctpSeen) String() string {
	s := fmt.Sprintf("%s:%d > %s:%d %s vtag=%#x", p.Src, p.SrcPort, p.Dst, p.DstPort, chunkNames[p.Chunk], p.VTag)
	if p.Chunk == chunkInit || p.Chunk == chunkInitAck {
		s += fmt.Sprintf(" init-tag=%#x", p.InitTag)
	}
	if p.Chunk == chunkData {
		s += fmt.Sprintf(" %q", p.Payload)
	}
	if !p.CRCValid {
		s += " BAD-CRC32c"
	}
	return s
}

// parseSCTP reads an IPv4 packet carrying SCTP (ok false for anything else).
func parseSCTP(b []byte) (sctpSeen, bool) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != unix.IPPROTO_SCTP {
		return sctpSeen{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	s := b[ihl:]
	if len(s) < 16 {
		return sctpSeen{}, false
	}
	p := sctpSeen{Src: netip.AddrFrom4([4]byte(b[12:16])), Dst: netip.AddrFrom4([4]byte(b[16:20])),
		SrcPort: binary.BigEndian.Uint16(s[0:]), DstPort: binary.BigEndian.Uint16(s[2:]),
		VTag: binary.BigEndian.Uint32(s[4:]), Chunk: s[12]}
	c := append([]byte(nil), s...)
	binary.LittleEndian.PutUint32(c[8:], 0)
	p.CRCValid = crc32.Checksum(c, castagnoli) == binary.LittleEndian.Uint32(s[8:])
	switch v := s[16:]; {
	case (p.Chunk == chunkInit || p.Chunk == chunkInitAck) && len(v) >= 4:
		p.InitTag = binary.BigEndian.Uint32(v)
	case p.Chunk == chunkData && len(v) >= 12:
		n := min(int(binary.BigEndian.Uint16(s[14:]))-16, len(v)-12)
		p.Payload = string(v[12 : 12+max(n, 0)])
	}
	return p, true
}

// rawSCTP is a raw SCTP socket in a pod: it sends SCTP packets (the kernel
// adds the IP header, with the pod's address) and records every SCTP packet
// the pod receives.
type rawSCTP struct {
	pod  *netlab.Pod
	fd   int
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	seen []sctpSeen
}

func openRawSCTP(t *testing.T, pod *netlab.Pod) *rawSCTP {
	t.Helper()
	r := &rawSCTP{pod: pod, stop: make(chan struct{}), done: make(chan struct{})}
	err := ns.WithNetNSPath(pod.NetNS.Path, func(ns.NetNS) (err error) {
		r.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
		if err != nil {
			return err
		}
		tv := unix.Timeval{Usec: 50_000}
		return unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("raw SCTP socket in %s: %v", pod.Name, err)
	}
	go r.run()
	t.Cleanup(r.close)
	return r
}

func (r *rawSCTP) run() {
	defer close(r.done)
	buf := make([]byte, 65536)
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(r.fd, buf, 0) // IPv4 raw sockets receive the IP header
		if err != nil || n <= 0 {
			continue
		}
		if p, ok := parseSCTP(buf[:n]); ok {
			r.mu.Lock()
			r.seen = append(r.seen, p)
			r.mu.Unlock()
		}
	}
}

func (r *rawSCTP) close() {
	select {
	case <-r.stop:
		return
	default:
	}
	close(r.stop)
	<-r.done
	unix.Close(r.fd)
}

// send sends an SCTP message to dst.
func (r *rawSCTP) send(t *testing.T, dst netip.Addr, msg []byte) {
	t.Helper()
	if err := unix.Sendto(r.fd, msg, 0, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
		t.Fatalf("%s: send SCTP to %s: %v", r.pod.Name, dst, err)
	}
}

// find returns the first recorded packet that match accepts.
func (r *rawSCTP) find(match func(sctpSeen) bool) (sctpSeen, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.seen {
		if match(p) {
			return p, true
		}
	}
	return sctpSeen{}, false
}

// sctpCapture is tcpdump on a pod's eth0, SCTP only: the capture the test
// logs as evidence.
type sctpCapture struct {
	pod  *netlab.Pod
	proc *netlab.Process
}

// startCapture starts tcpdump in pod and waits until it listens.
func startCapture(t *testing.T, pod *netlab.Pod) *sctpCapture {
	t.Helper()
	proc, err := pod.Start("tcpdump-sctp", "tcpdump", "-l", "-n", "-vv", "-i", "eth0", "sctp")
	if err != nil {
		t.Fatalf("tcpdump in %s: %v", pod.Name, err)
	}
	c := &sctpCapture{pod: pod, proc: proc}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.read(), "listening on") {
		if time.Now().After(deadline) || proc.Exited() {
			t.Fatalf("tcpdump in %s did not start: %s", pod.Name, c.read())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

func (c *sctpCapture) read() string {
	b, _ := os.ReadFile(c.proc.LogPath)
	return string(b)
}

// stop stops tcpdump and returns what it captured.
func (c *sctpCapture) stop() string {
	c.proc.Stop(2 * time.Second)
	return c.read()
}
