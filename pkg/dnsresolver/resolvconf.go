package dnsresolver

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/miekg/dns"
)

// ServersFromResolvConf returns the nameservers of a resolv.conf file with its port
// (53 unless the file says otherwise). Search domains, ndots and the other options do not
// apply to egress-firewall names, which are absolute. A file without a usable nameserver is
// an error.
func ServersFromResolvConf(path string) ([]netip.AddrPort, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read DNS servers: %w", err)
	}
	port, err := strconv.ParseUint(cc.Port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("read DNS servers from %s: port %q: %w", path, cc.Port, err)
	}
	var out []netip.AddrPort
	for _, s := range cc.Servers {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(port)))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read DNS servers from %s: no nameserver", path)
	}
	return out, nil
}
