package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/dnsserver"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
)

// The outside world of the lab (SPEC §9): an external host on the underlay
// and the lab's DNS server, started before the nodes so that every agent
// resolves through it.
//
//   - Ext is netlab's external host "ext" (netns <prefix>-ext, 198.18.0.254
//     on the underlay): 203.0.113.1–16 each serve TCP 80/443 and UDP
//     53/5353, answering with the client address they see. Every node routes
//     203.0.113.0/24 to it, so pods reach it through their node's normal
//     egress (br0, tun0, the node's SNAT, br-phy).
//   - DNS is authoritative for DNSZone, listening on 203.0.113.53:53 (UDP
//     and TCP) inside the external host's netns. It starts with no record;
//     tests and the demo set them (DNS.SetA, SetCNAME, Delete). The agents
//     get --dns-server=203.0.113.53 and, running in the root namespace,
//     query it from their node's netns (--host-netns), so the queries cross
//     the underlay like a real node's.
//
// Nothing here listens or sends outside the lab's namespaces: the external
// host has no default route, and the DNS server answers only for its zone
// and never recurses.

// DNSZone is the zone of the lab's DNS server.
const DNSZone = "lab.example."

// DNSAddr is the address the lab's DNS server listens on.
var DNSAddr = netip.AddrPortFrom(netlab.DefaultExternalDNSAddr, 53)

// externalHostName is the external host's name (netns <prefix>-ext).
const externalHostName = "ext"

// startOutside adds the external host and starts the DNS server in it.
// Call it before AddNodes; Close undoes it (stopOutside).
func (l *Lab) startOutside() error {
	ext, err := l.Net.AddExternalHost(externalHostName, netlab.ExternalConfig{})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l.Ext = ext
	srv, err := dnsserver.New(dnsserver.Config{Zones: []string{DNSZone}, Addrs: []netip.AddrPort{DNSAddr}, NetNSPath: ext.NetNS.Path})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l.DNS = srv
	l.progress("outside world: external host %s (%s, services on %s), DNS server %s for %s",
		ext.NetNS.Name, ext.IP.Addr(), ext.Network, DNSAddr, DNSZone)
	return nil
}

// stopOutside stops the DNS server: its sockets pin the external host's
// netns, which netlab removes next. The external host itself is netlab's.
func (l *Lab) stopOutside() {
	if l.DNS != nil {
		l.DNS.Stop()
	}
}

// dnsServerFlag is the agents' --dns-server, or "" without a DNS server.
func (l *Lab) dnsServerFlag() []string {
	if l.DNS == nil {
		return nil
	}
	return []string{"--dns-server=" + DNSAddr.String()}
}

// WatchDNSFile writes the DNS server's records to <state dir>/dns/records.zone
// and loads that file again whenever it changes, until ctx ends: how a
// person changes records while `make run` is up (edit the file; the server
// follows within a second). It returns the path. Records changed through
// the API afterwards are replaced at the file's next change.
func (l *Lab) WatchDNSFile(ctx context.Context) (string, error) {
	if l.DNS == nil {
		return "", fmt.Errorf("lab: no DNS server")
	}
	path := filepath.Join(l.cfg.StateDir, "dns", "records.zone")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	header := fmt.Sprintf("; sdn-lab DNS records (zone %s, server %s). Edit me: A and CNAME, per-record TTL.\n$ORIGIN %s\n", DNSZone, DNSAddr, DNSZone)
	if err := os.WriteFile(path, []byte(header+l.DNS.Records()), 0o644); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	go l.DNS.WatchFile(ctx, path, time.Second)
	return path, nil
}
