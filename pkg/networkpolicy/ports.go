package networkpolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
)

// portClause is one port match: protocol, and destination port under mask
// (mask 0: any port of the protocol). Every clause we build is an aligned
// block, so it is also the range [port, port|^mask].
type portClause struct {
	proto      ovs.Proto
	port, mask uint16
}

func (p portClause) fields() []ovs.MatchField {
	if p.mask == 0 {
		return []ovs.MatchField{p.proto}
	}
	if p.mask == 0xffff {
		return []ovs.MatchField{p.proto, ovs.TpDst(p.port)}
	}
	return []ovs.MatchField{p.proto, ovs.TpDstMasked(p.port, p.mask)}
}

// span is the clause as a range in the space proto<<16 | port, used by the
// overlap test.
func (p portClause) span() span {
	lo := uint32(p.proto)<<16 | uint32(p.port&p.mask)
	return span{lo, lo | uint32(^p.mask)}
}

func comparePorts(a, b portClause) int {
	if c := int(a.proto) - int(b.proto); c != 0 {
		return c
	}
	if c := int(a.port) - int(b.port); c != 0 {
		return c
	}
	return int(a.mask) - int(b.mask)
}

// namedPort is a policy port given by container port name.
type namedPort struct {
	proto ovs.Proto
	name  string
}

// rulePorts is a rule's parsed ports: numeric clauses apply to every
// destination, named ones are resolved per destination pod. any is true
// when the rule lists no ports (all ports and protocols).
type rulePorts struct {
	any     bool
	numeric []portClause
	named   []namedPort
}

func parseProtocol(p *corev1.Protocol) (ovs.Proto, error) {
	if p == nil {
		return ovs.ProtoTCP, nil
	}
	switch *p {
	case corev1.ProtocolTCP:
		return ovs.ProtoTCP, nil
	case corev1.ProtocolUDP:
		return ovs.ProtoUDP, nil
	case corev1.ProtocolSCTP:
		return ovs.ProtoSCTP, nil
	}
	return 0, fmt.Errorf("unsupported protocol %q", *p)
}

func parsePorts(ports []networkingv1.NetworkPolicyPort) (rulePorts, error) {
	rp := rulePorts{any: len(ports) == 0}
	for _, p := range ports {
		proto, err := parseProtocol(p.Protocol)
		if err != nil {
			return rulePorts{}, err
		}
		switch {
		case p.Port == nil:
			if p.EndPort != nil {
				return rulePorts{}, errors.New("endPort without port")
			}
			rp.numeric = append(rp.numeric, portClause{proto: proto})
		case p.Port.Type == intstr.String:
			if p.EndPort != nil {
				return rulePorts{}, fmt.Errorf("endPort with named port %q", p.Port.StrVal)
			}
			rp.named = append(rp.named, namedPort{proto: proto, name: p.Port.StrVal})
		default:
			clauses, err := portRange(proto, p.Port.IntVal, p.EndPort)
			if err != nil {
				return rulePorts{}, err
			}
			rp.numeric = append(rp.numeric, clauses...)
		}
	}
	return rp, nil
}

// portRange renders port (or port..endPort) as aligned value/mask blocks.
func portRange(proto ovs.Proto, port int32, endPort *int32) ([]portClause, error) {
	end := port
	if endPort != nil {
		end = *endPort
	}
	if port < 1 || port > 65535 || end < port || end > 65535 {
		return nil, fmt.Errorf("invalid port range %d-%d", port, end)
	}
	var out []portClause
	for lo := uint32(port); lo <= uint32(end); {
		size := uint32(1)
		// Grow the block while lo stays aligned and it fits in the range.
		for lo&(size*2-1) == 0 && lo+size*2-1 <= uint32(end) && size < 1<<16 {
			size *= 2
		}
		out = append(out, portClause{proto: proto, port: uint16(lo), mask: uint16(^(size - 1))})
		lo += size
	}
	return out, nil
}

// resolve returns the clauses the rule's ports stand for when the
// destination is pod (nil pod: a non-pod destination, numeric ports only),
// sorted and deduplicated.
func (rp rulePorts) resolve(pod *podInfo) []portClause {
	out := slices.Clone(rp.numeric)
	if pod != nil {
		for _, np := range rp.named {
			for _, cp := range pod.Ports {
				proto, err := parseProtocol(&cp.Protocol)
				if cp.Protocol == "" {
					proto, err = ovs.ProtoTCP, nil
				}
				if err == nil && cp.Name == np.name && proto == np.proto && cp.Port != 0 {
					out = append(out, portClause{proto: proto, port: cp.Port, mask: 0xffff})
				}
			}
		}
	}
	slices.SortFunc(out, comparePorts)
	return slices.Compact(out)
}

// span is an inclusive range of uint32 (IPv4 addresses or proto<<16|port).
type span struct{ lo, hi uint32 }

// spansOverlap reports whether two sorted span lists share a value.
func spansOverlap(a, b []span) bool {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i].hi < b[j].lo {
			i++
		} else if b[j].hi < a[i].lo {
			j++
		} else {
			return true
		}
	}
	return false
}

func sortSpans(s []span) []span {
	slices.SortFunc(s, func(a, b span) int {
		if a.lo != b.lo {
			if a.lo < b.lo {
				return -1
			}
			return 1
		}
		return 0
	})
	return s
}

// prefixSpan returns the address range of an IPv4 prefix.
func prefixSpan(p netip.Prefix) span {
	a := p.Masked().Addr().As4()
	lo := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	return span{lo, lo | uint32(uint64(1)<<(32-p.Bits())-1)}
}
