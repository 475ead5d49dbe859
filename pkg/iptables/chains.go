// Package iptables holds the node's host firewall and NAT rules as data (which chains exist,
// what they contain and where they are jumped to from) and the code that converges the
// kernel's tables to that data through github.com/coreos/go-iptables.
//
// The chains mirror OpenShift SDN's OPENSHIFT-* chains (reference §8.4) under our own prefix
// SDN-: masquerade pod→external traffic, accept VXLAN and tun0 input, accept forwarding to
// and from the cluster network, disable conntrack for the VXLAN underlay. OpenShift's
// OPENSHIFT-BLOCK-OUTPUT (machine-config-server ports 22623/22624) is OpenShift-specific and
// not reproduced.
package iptables

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Table names.
const (
	TableFilter = "filter"
	TableNAT    = "nat"
	TableRaw    = "raw"
	TableMangle = "mangle"
)

// Chain names owned by the node agent.
const (
	ChainFirewallAllow     = "SDN-FIREWALL-ALLOW"
	ChainFirewallForward   = "SDN-FIREWALL-FORWARD"
	ChainAdminOutputRules  = "SDN-ADMIN-OUTPUT-RULES"
	ChainMasquerade        = "SDN-MASQUERADE"
	ChainMasquerade2       = "SDN-MASQUERADE-2"
	ChainNoTrack           = "SDN-NOTRACK"
	ChainCanary            = "SDN-CANARY"
	ChainNodePorts         = "SDN-NODEPORTS"
	ChainEgressIPs         = "SDN-EGRESS-IPS"
	defaultTunnelInterface = "tun0"
)

// CanaryTables are the tables holding an empty SDN-CANARY chain; its disappearance means
// somebody flushed the tables and every chain must be re-ensured.
var CanaryTables = []string{TableMangle, TableNAT, TableFilter}

// Jump is a rule in a built-in (or foreign) parent chain that jumps into one of ours. Jumps
// are prepended, so they run before rules other software appends.
type Jump struct {
	Parent string
	Args   []string // match arguments before "-j"
}

// Chain is one chain we own: its table, name, the jumps into it and its rules in order.
type Chain struct {
	Table string
	Name  string
	Jumps []Jump
	Rules [][]string
}

// Config is what the node's rules depend on.
type Config struct {
	ClusterNetworks []netip.Prefix
	VXLANPort       uint16
	// MasqueradeBit is kube-proxy's masquerade mark bit (0..31); traffic kube-proxy already
	// marked is left to kube-proxy. Negative disables the rule.
	MasqueradeBit int
	// TunnelInterface is the node gateway interface (default tun0).
	TunnelInterface string
	// Services is the host side of the ovs proxy (nil: kube-proxy mode,
	// whose chains are kube-proxy's).
	Services *ServicesConfig
}

// ServicesConfig is what the host does for Services load-balanced in br0.
type ServicesConfig struct {
	// ServiceNetwork is the service CIDR.
	ServiceNetwork netip.Prefix
	// NodePortVIP is the address br0 answers node ports on.
	NodePortVIP netip.Addr
	// NodePortRange is the node port range (inclusive).
	NodePortRange [2]uint16
}

// NodeChains renders the node's chains. It is pure: the same Config always gives the same
// chains, in the same order.
func NodeChains(cfg Config) []Chain {
	tun := cfg.TunnelInterface
	if tun == "" {
		tun = defaultTunnelInterface
	}
	port := strconv.Itoa(int(cfg.VXLANPort))
	chains := []Chain{
		{Table: TableFilter, Name: ChainFirewallAllow,
			Jumps: []Jump{{Parent: "INPUT", Args: comment("firewall overrides")}},
			Rules: [][]string{
				append([]string{"-p", "udp", "--dport", port}, withComment("VXLAN incoming", "-j", "ACCEPT")...),
				append([]string{"-i", tun}, withComment("from SDN to localhost", "-j", "ACCEPT")...),
			}},
		{Table: TableFilter, Name: ChainAdminOutputRules,
			Jumps: []Jump{{Parent: "FORWARD", Args: append([]string{"-i", tun, "!", "-o", tun}, comment("administrator overrides")...)}}},
		{Table: TableFilter, Name: ChainFirewallForward,
			Jumps: []Jump{{Parent: "FORWARD", Args: comment("firewall overrides")}},
			Rules: forwardRules(cfg.ClusterNetworks, cfg.Services, tun)},
		{Table: TableNAT, Name: ChainMasquerade,
			Jumps: []Jump{{Parent: "POSTROUTING", Args: comment("rules for masquerading SDN traffic")}},
			Rules: masqueradeRules(cfg)},
		{Table: TableNAT, Name: ChainMasquerade2, Rules: masquerade2Rules(cfg.ClusterNetworks)},
		{Table: TableRaw, Name: ChainNoTrack,
			Jumps: []Jump{
				{Parent: "OUTPUT", Args: comment("disable conntrack for vxlan")},
				{Parent: "PREROUTING", Args: comment("disable conntrack for vxlan")},
			},
			Rules: [][]string{{"-p", "udp", "--dport", port, "-j", "NOTRACK"}}},
	}
	if cfg.Services != nil {
		chains = append(chains, serviceChains(*cfg.Services, tun)...)
	}
	for _, t := range CanaryTables {
		chains = append(chains, Chain{Table: t, Name: ChainCanary})
	}
	return chains
}

// serviceChains are the host's part of the ovs proxy:
//
//   - SDN-NODEPORTS (nat, from PREROUTING and OUTPUT for local
//     destinations): a node port on any node address but loopback is DNATed
//     to NodePortVIP, port kept; the route to NodePortVIP leads into br0,
//     which load-balances it. Every port of the range goes there: a port no
//     Service holds is rejected like a Service without endpoints.
//   - SDN-FIREWALL-FORWARD first rejects what br0 sends back out tun0 to a
//     Service without a usable endpoint (or a node port no Service holds)
//     with ICMP port unreachable, so the client sees "connection refused"
//     at once (kube-proxy's REJECT); a node port the host has just DNATed
//     (conntrack state DNAT) is on its way into br0 and passes. Then it
//     accepts forwarding to and from NodePortVIP (and, as before, the
//     cluster networks). The rejects come first in the same chain: its
//     accept of cluster sources would otherwise forward the bounced packet
//     back into br0.
func serviceChains(cfg ServicesConfig, tun string) []Chain {
	ports := fmt.Sprintf("%d:%d", cfg.NodePortRange[0], cfg.NodePortRange[1])
	var nodePorts [][]string
	for _, proto := range []string{"tcp", "udp", "sctp"} {
		nodePorts = append(nodePorts, append([]string{"!", "-d", "127.0.0.0/8", "-p", proto, "-m", proto, "--dport", ports},
			withComment("node ports to br0", "-j", "DNAT", "--to-destination", cfg.NodePortVIP.String())...))
	}
	return []Chain{
		{Table: TableNAT, Name: ChainNodePorts,
			Jumps: []Jump{
				{Parent: "PREROUTING", Args: append([]string{"-m", "addrtype", "--dst-type", "LOCAL"}, comment("node ports")...)},
				{Parent: "OUTPUT", Args: append([]string{"-m", "addrtype", "--dst-type", "LOCAL"}, comment("node ports")...)},
			},
			Rules: nodePorts},
	}
}

func forwardRules(cidrs []netip.Prefix, services *ServicesConfig, tun string) [][]string {
	var rules [][]string
	if services != nil {
		vip := netip.PrefixFrom(services.NodePortVIP, 32).String()
		// TCP gets a reset: ICMP errors are rate-limited per destination
		// (net.ipv4.icmp_ratelimit; on the lab's 6.18 kernel a pod's first
		// SYN often got none), a reset is not.
		reject := func(tcp bool, dst string, more ...string) []string {
			r := append([]string{"-i", tun, "-d", dst}, more...)
			with := "icmp-port-unreachable"
			if tcp {
				r, with = append(r, "-p", "tcp"), "tcp-reset"
			}
			return append(r, withComment("service without endpoints", "-j", "REJECT", "--reject-with", with)...)
		}
		notDNAT := []string{"-m", "conntrack", "!", "--ctstate", "DNAT"}
		rules = append(rules,
			reject(true, services.ServiceNetwork.String()),
			reject(false, services.ServiceNetwork.String()),
			reject(true, vip, notDNAT...),
			reject(false, vip, notDNAT...),
			append([]string{"-d", vip}, withComment("node ports into br0", "-j", "ACCEPT")...),
			append([]string{"-s", vip}, withComment("node port replies from br0", "-j", "ACCEPT")...))
	}
	for _, cn := range cidrs {
		c := cn.String()
		rules = append(rules,
			append([]string{"-s", c, "-m", "conntrack", "--ctstate", "INVALID"}, withComment("attempted resend after connection close", "-j", "DROP")...),
			append([]string{"-d", c}, withComment("forward traffic from SDN", "-j", "ACCEPT")...),
			append([]string{"-s", c}, withComment("forward traffic to SDN", "-j", "ACCEPT")...),
		)
	}
	return rules
}

func masqueradeRules(cfg Config) [][]string {
	var rules [][]string
	if cfg.MasqueradeBit >= 0 && cfg.MasqueradeBit < 32 {
		mark := fmt.Sprintf("0x%x/0x%x", uint32(1)<<cfg.MasqueradeBit, uint32(1)<<cfg.MasqueradeBit)
		rules = append(rules, []string{"-m", "mark", "--mark", mark, "-j", "RETURN"})
	}
	for _, cn := range cfg.ClusterNetworks {
		rules = append(rules, append([]string{"-s", cn.String()},
			withComment("masquerade pod-to-external traffic", "-j", ChainMasquerade2)...))
	}
	return rules
}

func masquerade2Rules(cidrs []netip.Prefix) [][]string {
	var rules [][]string
	for _, cn := range cidrs {
		rules = append(rules, []string{"-d", cn.String(), "-j", "RETURN"})
	}
	return append(rules, []string{"-j", "MASQUERADE"})
}

func comment(text string) []string { return []string{"-m", "comment", "--comment", text} }

func withComment(text string, rest ...string) []string { return append(comment(text), rest...) }

// EgressIPChain is the filter chain refusing new inbound connections to the
// egress IPs this node holds (jumped to from FORWARD: the host routes those
// addresses into br0, it does not own them). Replies of the connections
// SNATed to them are ESTABLISHED in the host's conntrack (it forwarded the
// first packet out) and pass. No ips: an empty chain.
func EgressIPChain(ips []netip.Addr) Chain {
	c := Chain{Table: TableFilter, Name: ChainEgressIPs,
		Jumps: []Jump{{Parent: "FORWARD", Args: comment("egress IPs accept no new connections")}}}
	for _, ip := range ips {
		c.Rules = append(c.Rules, append([]string{"-d", netip.PrefixFrom(ip, 32).String(), "-m", "conntrack", "--ctstate", "NEW"},
			withComment("egress IP", "-j", "REJECT", "--reject-with", "icmp-port-unreachable")...))
	}
	return c
}
