package ovs

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MatchField is one typed clause of a flow match. The set of implementations
// is closed; each renders itself in ovs-ofctl syntax and can be evaluated by
// the tracer.
type MatchField interface {
	// Key names the matched field in canonical form ("nw_src", "reg0",
	// "proto"); a match holds each key at most once.
	Key() string
	// String renders the clause in ovs-ofctl syntax ("nw_src=10.0.0.0/8").
	String() string
	matches(p *Packet) bool
}

// Proto is an ethertype / IP protocol shorthand ("ip", "arp", "tcp", …).
type Proto uint8

// Supported protocols. ProtoIP matches any IPv4 packet; the transport
// protocols imply ProtoIP.
const (
	ProtoIP Proto = iota + 1
	ProtoARP
	ProtoTCP
	ProtoUDP
	ProtoSCTP
	ProtoICMP
)

var protoNames = map[Proto]string{ProtoIP: "ip", ProtoARP: "arp", ProtoTCP: "tcp", ProtoUDP: "udp", ProtoSCTP: "sctp", ProtoICMP: "icmp"}

// protoNumbers maps transport protocols to IP protocol numbers.
var protoNumbers = map[Proto]uint8{ProtoTCP: 6, ProtoUDP: 17, ProtoSCTP: 132, ProtoICMP: 1}

func (p Proto) Key() string    { return "proto" }
func (p Proto) String() string { return protoNames[p] }

// IsIP reports whether p is IPv4 or a protocol carried in IPv4.
func (p Proto) IsIP() bool { return p != ProtoARP && p != 0 }

// isTransport reports whether p has ports (tp_src/tp_dst).
func (p Proto) isTransport() bool { return p == ProtoTCP || p == ProtoUDP || p == ProtoSCTP }

// InPort matches the OpenFlow ingress port ("in_port=3").
type InPort uint32

func (InPort) Key() string      { return "in_port" }
func (m InPort) String() string { return "in_port=" + strconv.FormatUint(uint64(m), 10) }

// AddrMatch matches an IPv4 address field against a prefix. Field is one of
// "nw_src", "nw_dst", "arp_spa", "arp_tpa", "tun_src", "tun_dst". Host bits
// are ignored (OVS masks them); a /32 renders as a bare address, as OVS does.
type AddrMatch struct {
	Field  string
	Prefix netip.Prefix
}

func (m AddrMatch) Key() string { return m.Field }
func (m AddrMatch) String() string {
	p := m.Prefix.Masked()
	if p.IsSingleIP() {
		return m.Field + "=" + p.Addr().String()
	}
	return m.Field + "=" + p.String()
}

// MAC is an Ethernet address, comparable and printable in OVS form.
type MAC [6]byte

func (m MAC) String() string {
	const digits = "0123456789abcdef"
	var b [17]byte
	for i, x := range m {
		if i > 0 {
			b[3*i-1] = ':'
		}
		b[3*i], b[3*i+1] = digits[x>>4], digits[x&15]
	}
	return string(b[:])
}

// ParseMAC parses "aa:bb:cc:dd:ee:ff" (either case).
func ParseMAC(s string) (MAC, error) {
	var m MAC
	n, err := fmt.Sscanf(strings.ToLower(s), "%02x:%02x:%02x:%02x:%02x:%02x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5])
	if err != nil || n != 6 || len(s) != 17 {
		return MAC{}, fmt.Errorf("invalid MAC %q", s)
	}
	return m, nil
}

// FullMAC is the all-ones MAC mask (exact match).
var FullMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// MACMatch matches an Ethernet address field ("dl_dst", "dl_src",
// "arp_sha", "arp_tha") under Mask (FullMAC for an exact match).
type MACMatch struct {
	Field string
	Addr  MAC
	Mask  MAC
}

func (m MACMatch) Key() string { return m.Field }
func (m MACMatch) String() string {
	if m.Mask == FullMAC {
		return m.Field + "=" + m.masked().String()
	}
	return m.Field + "=" + m.masked().String() + "/" + m.Mask.String()
}

func (m MACMatch) masked() MAC {
	var r MAC
	for i := range r {
		r[i] = m.Addr[i] & m.Mask[i]
	}
	return r
}

// PortMatch matches a transport port ("tp_dst", "tp_src") under Mask
// (0xffff for an exact match). Masked values render in hex, as OVS prints them.
type PortMatch struct {
	Field string
	Port  uint16
	Mask  uint16
}

func (m PortMatch) Key() string { return m.Field }
func (m PortMatch) String() string {
	if m.Mask == 0xffff {
		return fmt.Sprintf("%s=%d", m.Field, m.Port&m.Mask)
	}
	return fmt.Sprintf("%s=%#x/%#x", m.Field, m.Port&m.Mask, m.Mask)
}

// NwProto matches the IP protocol number ("nw_proto=47"); use Proto for
// TCP/UDP/SCTP/ICMP.
type NwProto uint8

func (NwProto) Key() string      { return "nw_proto" }
func (m NwProto) String() string { return fmt.Sprintf("nw_proto=%d", uint8(m)) }

// RegMatch matches a register under Mask; build it with RegField.Match or
// BitField.Match. An exact match renders "reg0=0x5" (and "reg0=0x0", where
// OVS prints "reg0=0"; Canonical normalizes both), a masked one as OVS
// prints it: "reg4=0x10000/0x70000", "reg4=0/0x70000". Value bits outside
// Mask are invalid (ValidateFlow reports them).
type RegMatch struct {
	Field RegField
	Value uint32
	Mask  uint32
}

func (m RegMatch) Key() string { return "reg" + strconv.Itoa(int(m.Field.Reg)) }
func (m RegMatch) String() string {
	if m.Mask == ^uint32(0) {
		return "reg" + strconv.Itoa(int(m.Field.Reg)) + "=0x" + strconv.FormatUint(uint64(m.Value), 16)
	}
	return "reg" + strconv.Itoa(int(m.Field.Reg)) + "=" + hexOrZero(uint64(m.Value&m.Mask)) + "/" + hexOrZero(uint64(m.Mask))
}

// TunID matches the whole tunnel key ("tun_id=0x5").
type TunID uint64

func (TunID) Key() string      { return "tun_id" }
func (m TunID) String() string { return fmt.Sprintf("tun_id=%#x", uint64(m)) }

// ConjID matches packets that completed conjunction N ("conj_id=N").
type ConjID uint32

func (ConjID) Key() string      { return "conj_id" }
func (m ConjID) String() string { return fmt.Sprintf("conj_id=%d", uint32(m)) }

// CtFlags is a set of connection-tracking state bits, in OVS bit order.
type CtFlags uint8

// Connection-tracking state bits.
const (
	CtNew CtFlags = 1 << iota
	CtEst
	CtRel
	CtRpl
	CtInv
	CtTrk
	CtSNAT
	CtDNAT
)

var ctFlagNames = []string{"new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"}

// CtState matches conntrack state: bits in Set must be set, bits in Clear
// must be clear ("ct_state=+trk-rpl"). Renders in OVS bit order.
type CtState struct {
	Set, Clear CtFlags
}

func (CtState) Key() string { return "ct_state" }
func (m CtState) String() string {
	var b strings.Builder
	b.WriteString("ct_state=")
	for i, name := range ctFlagNames {
		bit := CtFlags(1 << i)
		switch {
		case m.Set&bit != 0:
			b.WriteString("+" + name)
		case m.Clear&bit != 0:
			b.WriteString("-" + name)
		}
	}
	return b.String()
}

// Match constructors for the address fields, so flow code never spells
// field names.

// NwSrc matches the IPv4 source (requires ip or a transport protocol).
func NwSrc(p netip.Prefix) MatchField { return AddrMatch{Field: "nw_src", Prefix: p.Masked()} }

// NwDst matches the IPv4 destination.
func NwDst(p netip.Prefix) MatchField { return AddrMatch{Field: "nw_dst", Prefix: p.Masked()} }

// ArpSpa matches the ARP sender protocol address (requires arp).
func ArpSpa(p netip.Prefix) MatchField { return AddrMatch{Field: "arp_spa", Prefix: p.Masked()} }

// ArpTpa matches the ARP target protocol address (requires arp).
func ArpTpa(p netip.Prefix) MatchField { return AddrMatch{Field: "arp_tpa", Prefix: p.Masked()} }

// TunSrc matches the outer source IP of a tunnelled packet.
func TunSrc(a netip.Addr) MatchField { return AddrMatch{Field: "tun_src", Prefix: HostPrefix(a)} }

// ArpSha matches the ARP sender hardware address under mask.
func ArpSha(addr, mask MAC) MatchField { return MACMatch{Field: "arp_sha", Addr: addr, Mask: mask} }

// EthDst matches the Ethernet destination exactly (rendered "dl_dst", as OVS
// prints it).
func EthDst(addr MAC) MatchField { return MACMatch{Field: "dl_dst", Addr: addr, Mask: FullMAC} }

// TpDst matches the transport destination port exactly (requires tcp, udp or
// sctp).
func TpDst(port uint16) MatchField { return PortMatch{Field: "tp_dst", Port: port, Mask: 0xffff} }

// TpDstMasked matches the transport destination port under mask (port
// ranges are rendered as sets of masked matches).
func TpDstMasked(port, mask uint16) MatchField {
	return PortMatch{Field: "tp_dst", Port: port & mask, Mask: mask}
}

// HostPrefix returns the single-address prefix of a (/32 for IPv4).
func HostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
