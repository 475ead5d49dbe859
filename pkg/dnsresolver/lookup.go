package dnsresolver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// Answer is the outcome of one successful resolution of a name.
type Answer struct {
	// Addrs are the IPv4 addresses of the name at the end of its CNAME chain, sorted and
	// unique. Empty means the name has no A record (NXDOMAIN or NODATA).
	Addrs []netip.Addr
	// TTL is the smallest TTL of the records used: every CNAME of the chain and the A
	// records; for an empty answer, the negative-caching TTL (RFC 2308) if the server gave
	// one, combined with the chain's.
	TTL time.Duration
	// Queries is the number of DNS messages sent (also set when LookupA fails).
	Queries int
}

// Lookuper resolves one name. The Resolver calls it from several goroutines at once (never
// twice at once for one name); it must give up when ctx ends.
type Lookuper interface {
	LookupA(ctx context.Context, name string) (Answer, error)
}

// DialFunc opens a connection, like net.Dialer.DialContext. The lab's agent runs in the
// root namespace while DNS is reachable only from the node's: it passes DialInNetNS.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// maxChain bounds the CNAME chain a name may have (BIND's limit is 16; 8 is plenty for
// egress-firewall names and stops loops early).
const maxChain = 8

// ednsSize is the UDP payload size advertised (EDNS0): large enough for dozens of A
// records, small enough to avoid IP fragmentation (DNS flag day 2020).
const ednsSize = 1232

// DNSLookuper resolves A records by querying Servers directly (no cache, no search list):
// each in order until one gives an answer (NOERROR or NXDOMAIN), each over UDP with a
// Timeout, retried over TCP when the answer is truncated; CNAME chains are followed, asking
// again for the chain's last name when a server's answer stops at a CNAME.
type DNSLookuper struct {
	Servers []netip.AddrPort
	Timeout time.Duration
	Dial    DialFunc
}

// LookupA implements Lookuper. name is absolute (a trailing dot is optional).
func (l *DNSLookuper) LookupA(ctx context.Context, name string) (Answer, error) {
	var ans Answer
	qname := dns.Fqdn(name)
	ttl := uint32(math.MaxUint32)
	seen := map[string]bool{}
	links := 0
	for { // ends: every round but the last adds a CNAME link, and links are bounded
		seen[dns.CanonicalName(qname)] = true
		r, n, err := l.query(ctx, qname)
		ans.Queries += n
		if err != nil {
			return ans, fmt.Errorf("resolve %s: %w", name, err)
		}
		c := followChain(r, qname)
		ttl, links = min(ttl, c.ttl), links+c.links
		switch {
		case c.loop || seen[dns.CanonicalName(c.last)] && c.links > 0:
			return ans, fmt.Errorf("resolve %s: CNAME loop at %s", name, c.last)
		case links > maxChain:
			return ans, fmt.Errorf("resolve %s: CNAME chain longer than %d", name, maxChain)
		case len(c.addrs) > 0:
			ans.Addrs, ans.TTL = c.addrs, seconds(ttl)
			return ans, nil
		case r.Rcode == dns.RcodeNameError || c.links == 0:
			ans.TTL = seconds(min(ttl, negativeTTL(r)))
			return ans, nil
		}
		qname = c.last // the answer stopped at a CNAME: ask for its target
	}
}

func seconds(ttl uint32) time.Duration { return time.Duration(ttl) * time.Second }

// chain is what one message says about a name: where its CNAME chain ends (last), after
// how many links, the A records of that name and the smallest TTL seen.
type chain struct {
	last  string
	links int
	addrs []netip.Addr
	ttl   uint32
	loop  bool // the CNAMEs in the message come back to a name already passed
}

// followChain walks the CNAMEs from qname through r's answer section and collects the A
// records of the last name. Records of other names are ignored.
func followChain(r *dns.Msg, qname string) chain {
	c := chain{last: qname, ttl: math.MaxUint32}
	seen := map[string]bool{dns.CanonicalName(qname): true}
	for rr := findRR(r.Answer, c.last, dns.TypeCNAME); rr != nil; rr = findRR(r.Answer, c.last, dns.TypeCNAME) {
		c.ttl = min(c.ttl, rr.Header().Ttl)
		c.last = rr.(*dns.CNAME).Target
		c.links++
		if seen[dns.CanonicalName(c.last)] {
			c.loop = true
			return c
		}
		seen[dns.CanonicalName(c.last)] = true
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok && dns.CanonicalName(a.Hdr.Name) == dns.CanonicalName(c.last) {
			if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
				c.addrs = append(c.addrs, ip)
				c.ttl = min(c.ttl, a.Hdr.Ttl)
			}
		}
	}
	slices.SortFunc(c.addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	c.addrs = slices.Compact(c.addrs)
	return c
}

func findRR(rrs []dns.RR, name string, typ uint16) dns.RR {
	for _, rr := range rrs {
		if rr.Header().Rrtype == typ && dns.CanonicalName(rr.Header().Name) == dns.CanonicalName(name) {
			return rr
		}
	}
	return nil
}

// negativeTTL is min(SOA TTL, SOA minimum) from the authority section (RFC 2308 §5), or 0.
func negativeTTL(r *dns.Msg) uint32 {
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl)
		}
	}
	return 0
}

// query asks each server in turn for qname's A records and returns the first usable answer
// (NOERROR or NXDOMAIN) and the number of messages sent.
func (l *DNSLookuper) query(ctx context.Context, qname string) (*dns.Msg, int, error) {
	if len(l.Servers) == 0 {
		return nil, 0, errors.New("no DNS servers configured")
	}
	var errs []error
	sent := 0
	for _, srv := range l.Servers {
		r, n, err := l.exchange(ctx, srv, qname)
		sent += n
		if err == nil && r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			err = fmt.Errorf("%s answered %s", srv, dns.RcodeToString[r.Rcode])
		}
		if err == nil {
			return r, sent, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, sent, errors.Join(errs...)
}

// exchange sends one query to srv over UDP, and again over TCP if the answer was truncated.
func (l *DNSLookuper) exchange(ctx context.Context, srv netip.AddrPort, qname string) (*dns.Msg, int, error) {
	m := new(dns.Msg)
	m.SetQuestion(qname, dns.TypeA)
	m.RecursionDesired = true
	m.SetEdns0(ednsSize, false)
	r, err := l.exchangeOver(ctx, "udp", srv, m)
	if err != nil || !r.Truncated {
		return r, 1, err
	}
	m.Id = dns.Id()
	r, err = l.exchangeOver(ctx, "tcp", srv, m)
	return r, 2, err
}

func (l *DNSLookuper) exchangeOver(ctx context.Context, network string, srv netip.AddrPort, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	conn, err := l.Dial(ctx, network, srv.String())
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", network, srv, err)
	}
	defer conn.Close()
	c := &dns.Client{Net: network}
	r, _, err := c.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: conn})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", network, srv, err)
	}
	return r, nil
}
