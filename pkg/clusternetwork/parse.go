// Package clusternetwork turns the ClusterNetwork "default" object into a
// validated Config. The sdn-controller and the node agent both read the
// cluster's pod networks, service network and isolation mode through it, so
// they agree on what is valid.
package clusternetwork

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/subnet"
)

// Limits on the scalar fields (reference §9.1).
const (
	MinMTU = 576
	MaxMTU = 65536
)

// ErrInvalid is wrapped by every error Parse returns for a ClusterNetwork
// that cannot be used; callers branch on it with errors.Is.
var ErrInvalid = errors.New("invalid ClusterNetwork")

// Config is the validated content of a ClusterNetwork. Parse returns it with
// defaults filled in; the zero value is not a usable Config.
type Config struct {
	// ClusterNetworks are the pod CIDRs in the order given, each with the
	// number of host bits of a node subnet. Non-empty, IPv4, non-overlapping.
	ClusterNetworks []subnet.ClusterNetwork
	// ServiceNetwork is the service CIDR; it overlaps no cluster network.
	ServiceNetwork netip.Prefix
	// Mode is the isolation mode selected by PluginName.
	Mode Mode
	// VXLANPort is the UDP port of the VXLAN tunnel (default 4789).
	VXLANPort uint16
	// MTU is the overlay MTU of pod interfaces and tun0 (default 1450).
	MTU int
	// PluginName is the canonical (lower-case) plugin name of Mode.
	PluginName string
}

// InvalidError lists every problem Parse found in one ClusterNetwork. Each
// problem names the field, e.g.
// `clusterNetworks[1].CIDR "10.128.0.0/15" overlaps clusterNetworks[0].CIDR "10.128.0.0/14"`.
type InvalidError struct {
	Name     string
	Problems []string
}

// Error renders `clusternetwork "<name>": <problem>; <problem>`.
func (e *InvalidError) Error() string {
	return fmt.Sprintf("clusternetwork %q: %s", e.Name, strings.Join(e.Problems, "; "))
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Parse validates cn and returns its Config. It never modifies cn. On
// failure the error is an *InvalidError wrapping ErrInvalid that names every
// offending field (the process is expected to refuse to start with it).
//
// Rules: at least one clusterNetworks entry (or, for old objects, the legacy
// network/hostsubnetlength pair); each CIDR an IPv4 network address;
// hostSubnetLength in [2, 30] and no more than the host bits of its CIDR; no
// two cluster CIDRs overlap; serviceNetwork an IPv4 network address that
// overlaps no cluster CIDR; the legacy network/hostsubnetlength fields, when
// set, equal clusterNetworks[0]; pluginName one of the three names
// (case-insensitive, empty = networkpolicy); vxlanPort in [1, 65535]; mtu in
// [576, 65536].
func Parse(cn *networkv1.ClusterNetwork) (*Config, error) {
	if cn == nil {
		return nil, fmt.Errorf("%w: nil object", ErrInvalid)
	}
	p := &parser{cn: cn, cfg: &Config{}}
	p.clusterNetworks()
	p.legacy()
	p.serviceNetwork()
	p.scalars()
	if len(p.problems) > 0 {
		return nil, &InvalidError{Name: cn.Name, Problems: p.problems}
	}
	return p.cfg, nil
}

// parser collects problems so one error reports all of them.
type parser struct {
	cn       *networkv1.ClusterNetwork
	cfg      *Config
	problems []string
	// parsed holds the CIDR of every clusterNetworks entry by index; the
	// zero Prefix for entries that failed to parse, which overlap checks skip.
	parsed []netip.Prefix
}

func (p *parser) addf(format string, args ...any) {
	p.problems = append(p.problems, fmt.Sprintf(format, args...))
}

// entries returns the clusterNetworks to use, falling back to the legacy
// single-network fields when the list is empty.
func (p *parser) entries() []networkv1.ClusterNetworkEntry {
	if len(p.cn.ClusterNetworks) > 0 || p.cn.Network == "" {
		return p.cn.ClusterNetworks
	}
	return []networkv1.ClusterNetworkEntry{{CIDR: p.cn.Network, HostSubnetLength: p.cn.HostSubnetLength}}
}

func (p *parser) clusterNetworks() {
	entries := p.entries()
	if len(entries) == 0 {
		p.addf("clusterNetworks must have at least one entry")
		return
	}
	for i, e := range entries {
		field := fmt.Sprintf("clusterNetworks[%d]", i)
		prefix, ok := p.cidr(field+".CIDR", e.CIDR)
		p.parsed = append(p.parsed, prefix)
		if !ok {
			continue
		}
		for j := range i {
			if other := p.parsed[j]; other.IsValid() && other.Overlaps(prefix) {
				p.addf("%s.CIDR %q overlaps clusterNetworks[%d].CIDR %q", field, e.CIDR, j, entries[j].CIDR)
			}
		}
		hostBits := int(e.HostSubnetLength)
		if !p.hostBits(field+".hostSubnetLength", hostBits, prefix) {
			continue
		}
		p.cfg.ClusterNetworks = append(p.cfg.ClusterNetworks, subnet.ClusterNetwork{CIDR: prefix, HostBits: hostBits})
	}
}

// cidr parses an IPv4 network address; it records a problem and returns
// false when s is not one.
func (p *parser) cidr(field, s string) (netip.Prefix, bool) {
	prefix, err := netip.ParsePrefix(strings.TrimSpace(s))
	switch {
	case s == "":
		p.addf("%s is required", field)
	case err != nil:
		p.addf("%s %q is not a CIDR", field, s)
	case !prefix.Addr().Is4():
		p.addf("%s %q is not IPv4", field, s)
	case prefix.Masked() != prefix:
		p.addf("%s %q has host bits set (want %q)", field, s, prefix.Masked().String())
	default:
		return prefix, true
	}
	return netip.Prefix{}, false
}

func (p *parser) hostBits(field string, hostBits int, cidr netip.Prefix) bool {
	switch {
	case hostBits < subnet.MinHostBits || hostBits > subnet.MaxHostBits:
		p.addf("%s %d is out of range [%d, %d]", field, hostBits, subnet.MinHostBits, subnet.MaxHostBits)
	case hostBits > 32-cidr.Bits():
		p.addf("%s %d exceeds the %d host bits of CIDR %q", field, hostBits, 32-cidr.Bits(), cidr.String())
	default:
		return true
	}
	return false
}

// legacy checks that the single-network fields of old objects agree with
// clusterNetworks[0] when set.
func (p *parser) legacy() {
	if len(p.cn.ClusterNetworks) == 0 {
		return // the legacy fields were used as the list itself
	}
	first := p.cn.ClusterNetworks[0]
	if p.cn.Network != "" {
		legacy, err := netip.ParsePrefix(strings.TrimSpace(p.cn.Network))
		if err != nil || len(p.parsed) == 0 || legacy != p.parsed[0] {
			p.addf("network %q must equal clusterNetworks[0].CIDR %q", p.cn.Network, first.CIDR)
		}
	}
	if p.cn.HostSubnetLength != 0 && p.cn.HostSubnetLength != first.HostSubnetLength {
		p.addf("hostsubnetlength %d must equal clusterNetworks[0].hostSubnetLength %d",
			p.cn.HostSubnetLength, first.HostSubnetLength)
	}
}

func (p *parser) serviceNetwork() {
	svc, ok := p.cidr("serviceNetwork", p.cn.ServiceNetwork)
	if !ok {
		return
	}
	entries := p.entries()
	for i, cidr := range p.parsed {
		if cidr.IsValid() && cidr.Overlaps(svc) {
			p.addf("serviceNetwork %q overlaps clusterNetworks[%d].CIDR %q", p.cn.ServiceNetwork, i, entries[i].CIDR)
		}
	}
	p.cfg.ServiceNetwork = svc
}

func (p *parser) scalars() {
	mode, err := ModeForPlugin(p.cn.PluginName)
	if err != nil {
		p.addf("%s", err)
	} else {
		p.cfg.Mode, p.cfg.PluginName = mode, mode.PluginName()
	}
	p.cfg.VXLANPort = uint16(networkv1.DefaultVXLANPort)
	if v := p.cn.VXLANPort; v != nil {
		if *v < 1 || *v > 65535 {
			p.addf("vxlanPort %d is out of range [1, 65535]", *v)
		} else {
			p.cfg.VXLANPort = uint16(*v)
		}
	}
	p.cfg.MTU = int(networkv1.DefaultMTU)
	if v := p.cn.MTU; v != nil {
		if *v < MinMTU || *v > MaxMTU {
			p.addf("mtu %d is out of range [%d, %d]", *v, MinMTU, MaxMTU)
		} else {
			p.cfg.MTU = int(*v)
		}
	}
}

// ContainsNodeSubnet reports whether p is exactly one of the node subnets of
// a cluster network: inside its CIDR, masked, and of length 32-HostBits.
func (c *Config) ContainsNodeSubnet(p netip.Prefix) bool {
	for _, n := range c.ClusterNetworks {
		if p.IsValid() && p.Masked() == p && n.CIDR.Contains(p.Addr()) && p.Bits() == 32-n.HostBits {
			return true
		}
	}
	return false
}

// String summarises c for logs, e.g.
// "mode=NetworkPolicy clusterNetworks=[10.128.0.0/14 hostBits=9] serviceNetwork=172.30.0.0/16 vxlanPort=4789 mtu=1450".
func (c *Config) String() string {
	nets := make([]string, len(c.ClusterNetworks))
	for i, n := range c.ClusterNetworks {
		nets[i] = n.String()
	}
	return fmt.Sprintf("mode=%s clusterNetworks=[%s] serviceNetwork=%s vxlanPort=%d mtu=%d",
		c.Mode, strings.Join(nets, ", "), c.ServiceNetwork, c.VXLANPort, c.MTU)
}
