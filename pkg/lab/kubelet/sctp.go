package kubelet

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net"
	"net/netip"
	"sync"
	"time"
)

// protoSCTP is SCTP's IP protocol number.
const protoSCTP = 132

// sctpChunkInit is the INIT chunk type (RFC 9260 §3.3.2).
const sctpChunkInit = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpInit builds an SCTP packet holding one INIT chunk: common header (ports, verification
// tag 0 as INIT requires, CRC32c) and the 20-byte INIT with one stream each way.
func sctpInit(srcPort, dstPort uint16) []byte {
	b := make([]byte, 12+20)
	binary.BigEndian.PutUint16(b[0:], srcPort)
	binary.BigEndian.PutUint16(b[2:], dstPort)
	c := b[12:]
	c[0] = sctpChunkInit
	binary.BigEndian.PutUint16(c[2:], 20)
	var r [8]byte
	_, _ = rand.Read(r[:])
	tag := binary.BigEndian.Uint32(r[:4]) | 1 // the initiate tag must not be 0
	binary.BigEndian.PutUint32(c[4:], tag)
	binary.BigEndian.PutUint32(c[8:], 65535) // a_rwnd
	binary.BigEndian.PutUint16(c[12:], 1)    // outbound streams
	binary.BigEndian.PutUint16(c[14:], 1)    // inbound streams
	binary.BigEndian.PutUint32(c[16:], binary.BigEndian.Uint32(r[4:]))
	// The CRC32c is computed with the field zero and stored in little-endian byte order
	// (RFC 9260 Appendix A; what Linux and Wireshark do).
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, castagnoli))
	return b
}

// parseSCTPInit returns the destination port of an SCTP packet whose first chunk is an INIT
// with a valid checksum.
func parseSCTPInit(b []byte) (dstPort uint16, ok bool) {
	if len(b) < 12+4 || b[12] != sctpChunkInit {
		return 0, false
	}
	want := binary.LittleEndian.Uint32(b[8:])
	c := make([]byte, len(b))
	copy(c, b)
	binary.LittleEndian.PutUint32(c[8:], 0)
	if crc32.Checksum(c, castagnoli) != want {
		return 0, false
	}
	return binary.BigEndian.Uint16(b[2:]), true
}

// sctpWatcher records the INITs arriving in its netns.
type sctpWatcher struct {
	conn net.PacketConn

	mu       sync.Mutex
	arrivals map[sctpFlow]time.Time // last arrival
}

type sctpFlow struct {
	port uint16
	from netip.Addr
}

// listenSCTPWatcher opens the raw socket; call it inside the netns.
func listenSCTPWatcher() (*sctpWatcher, error) {
	c, err := net.ListenPacket("ip4:132", "0.0.0.0")
	if err != nil {
		return nil, err
	}
	return &sctpWatcher{conn: c, arrivals: map[sctpFlow]time.Time{}}, nil
}

// run reads until Close. Go strips the IPv4 header of ip4 raw reads.
func (w *sctpWatcher) run() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := w.conn.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		port, ok := parseSCTPInit(buf[:n])
		ipa, isIP := from.(*net.IPAddr)
		if ok && isIP {
			src, _ := netip.AddrFromSlice(ipa.IP)
			w.mu.Lock()
			w.arrivals[sctpFlow{port, src.Unmap()}] = time.Now()
			w.mu.Unlock()
		}
	}
}

func (w *sctpWatcher) seen(port uint16, from netip.Addr, since time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.arrivals[sctpFlow{port, from}]
	return ok && !t.Before(since)
}

func (w *sctpWatcher) Close() error {
	if w == nil || w.conn == nil {
		return nil
	}
	return w.conn.Close()
}
