package dnsserver

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// maxChase bounds the CNAME chain the server follows inside its own data (a loop ends there).
const maxChase = 8

// negativeTTL is the SOA minimum, the TTL of negative answers (RFC 2308), in seconds.
const negativeTTL = 5

// entry is the data of one name: either a CNAME or an A RRset (RFC 1034: a CNAME owner
// holds no other data). All A records of a name share one TTL (RFC 2181 §5.2).
type entry struct {
	ttl    uint32
	target string       // CNAME target (FQDN, lower case), or ""
	addrs  []netip.Addr // A records, sorted; set when target == ""
}

// zoneData is the whole data set of the server: the zones it is authoritative for and the
// names in them. It is a plain value guarded by the Server's mutex.
type zoneData struct {
	zones  []string // FQDN, lower case, longest first
	origin string   // the first zone of Config.Zones: relative names in control files
	names  map[string]entry
	serial uint32 // bumped on every change; the SOA serial
}

func newZoneData(zones []string) (zoneData, error) {
	z := zoneData{names: map[string]entry{}, serial: 1}
	for _, o := range zones {
		name, err := canonical(o)
		if err != nil {
			return z, fmt.Errorf("zone %q: %w", o, err)
		}
		z.zones = append(z.zones, name)
	}
	if len(z.zones) == 0 {
		return z, fmt.Errorf("no zones")
	}
	z.origin = z.zones[0]
	sort.Slice(z.zones, func(i, j int) bool { return len(z.zones[i]) > len(z.zones[j]) })
	return z, nil
}

// canonical returns name as a lower-case FQDN, or an error if it is not a domain name.
func canonical(name string) (string, error) {
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return "", fmt.Errorf("%q is not a domain name", name)
	}
	return dns.CanonicalName(name), nil
}

// zoneOf returns the zone holding name ("" if none).
func (z *zoneData) zoneOf(name string) string {
	for _, o := range z.zones {
		if dns.IsSubDomain(o, name) {
			return o
		}
	}
	return ""
}

// owned checks that name is inside one of the zones and returns its canonical form.
func (z *zoneData) owned(name string) (string, error) {
	n, err := canonical(name)
	if err != nil {
		return "", err
	}
	if z.zoneOf(n) == "" {
		return "", fmt.Errorf("name %s is outside the zones %v", n, z.zones)
	}
	return n, nil
}

func (z *zoneData) set(name string, e entry) {
	z.names[name] = e
	z.serial++
}

func (z *zoneData) soa(zone string) *dns.SOA {
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: negativeTTL},
		Ns:  "ns." + zone, Mbox: "hostmaster." + zone, Serial: z.serial,
		Refresh: 60, Retry: 10, Expire: 600, Minttl: negativeTTL,
	}
}

// answer fills the reply to one question. It follows CNAMEs inside the server's data when
// chase is set (as an authoritative server does for in-zone targets) and stops at a target
// outside its zones, leaving the rest to the resolver.
func (z *zoneData) answer(q dns.Question, chase bool, reply *dns.Msg) {
	name := dns.CanonicalName(q.Name)
	zone := z.zoneOf(name)
	if zone == "" {
		reply.Rcode = dns.RcodeRefused
		return
	}
	reply.Authoritative = true
	for hop := 0; hop < maxChase; hop++ {
		e, ok := z.names[name]
		switch {
		case !ok && name == zone && q.Qtype == dns.TypeSOA:
			reply.Answer = append(reply.Answer, z.soa(zone))
			return
		case !ok:
			if name != zone { // the apex exists (it has the SOA): NODATA, not NXDOMAIN
				reply.Rcode = dns.RcodeNameError
			}
			reply.Ns = append(reply.Ns, z.soa(zone))
			return
		case e.target != "":
			reply.Answer = append(reply.Answer, cnameRR(name, e))
			if q.Qtype == dns.TypeCNAME || !chase || z.zoneOf(e.target) == "" {
				return
			}
			name, zone = e.target, z.zoneOf(e.target)
		case q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY:
			reply.Answer = append(reply.Answer, aRRs(name, e)...)
			return
		default: // NODATA
			reply.Ns = append(reply.Ns, z.soa(zone))
			return
		}
	}
}

func cnameRR(name string, e entry) dns.RR {
	return &dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: e.ttl},
		Target: e.target}
}

func aRRs(name string, e entry) []dns.RR {
	rrs := make([]dns.RR, 0, len(e.addrs))
	for _, a := range e.addrs {
		rrs = append(rrs, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: e.ttl},
			A: a.AsSlice()})
	}
	return rrs
}

// text renders the data in master-file format, one record per line, sorted by name: the
// format LoadFile reads.
func (z *zoneData) text() string {
	names := make([]string, 0, len(z.names))
	for n := range z.names {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		e := z.names[n]
		if e.target != "" {
			b.WriteString(cnameRR(n, e).String() + "\n")
			continue
		}
		for _, rr := range aRRs(n, e) {
			b.WriteString(rr.String() + "\n")
		}
	}
	return b.String()
}

// sortedAddrs validates and sorts A addresses (IPv4 only), dropping duplicates.
func sortedAddrs(addrs []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if !a.Is4() {
			return nil, fmt.Errorf("A record address %s is not IPv4", a)
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out), nil
}
