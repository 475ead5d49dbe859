package dnsserver

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
	"k8s.io/klog/v2"
)

// LoadFile replaces every record with those of the control file at path, in RFC 1035
// master-file format (A and CNAME records; $ORIGIN and $TTL directives; relative names are
// relative to the first zone), for example:
//
//	www.lab.example.    5  IN A      203.0.113.9
//	www.lab.example.    5  IN A      203.0.113.10
//	alias.lab.example. 30  IN CNAME  www.lab.example.
//
// All A records of a name take the smallest TTL given for it. The file is applied whole or
// not at all: on any error (syntax, another record type, a name outside the zones, a name
// with both CNAME and A) the records stay as they were.
func (s *Server) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("dns control file: %w", err)
	}
	defer f.Close()
	return s.Load(f, path)
}

// Load is LoadFile from a reader; file names the source in errors.
func (s *Server) Load(r io.Reader, file string) error {
	s.mu.Lock()
	origin := s.data.origin
	s.mu.Unlock()
	names, err := parseMasterFile(r, origin, file)
	if err != nil {
		return fmt.Errorf("dns control file %s: %w", file, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for n := range names {
		if s.data.zoneOf(n) == "" {
			return fmt.Errorf("dns control file %s: name %s is outside the zones %v", file, n, s.data.zones)
		}
	}
	s.data.names = names
	s.data.serial++
	return nil
}

func parseMasterFile(r io.Reader, origin, file string) (map[string]entry, error) {
	zp := dns.NewZoneParser(r, origin, file)
	names := map[string]entry{}
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if err := addRR(names, rr); err != nil {
			return nil, err
		}
	}
	if err := zp.Err(); err != nil {
		return nil, err
	}
	for n, e := range names {
		sorted, _ := sortedAddrs(e.addrs)
		e.addrs = sorted
		names[n] = e
	}
	return names, nil
}

func addRR(names map[string]entry, rr dns.RR) error {
	h := rr.Header()
	n := dns.CanonicalName(h.Name)
	e, seen := names[n]
	switch rr := rr.(type) {
	case *dns.A:
		if e.target != "" {
			return fmt.Errorf("%s: A record next to a CNAME", n)
		}
		a, _ := netip.AddrFromSlice(rr.A.To4())
		if !seen || h.Ttl < e.ttl {
			e.ttl = h.Ttl
		}
		e.addrs = append(e.addrs, a)
	case *dns.CNAME:
		if seen {
			return fmt.Errorf("%s: CNAME next to other data", n)
		}
		e = entry{ttl: h.Ttl, target: dns.CanonicalName(rr.Target)}
	default:
		return fmt.Errorf("%s: record type %s not supported (A and CNAME only)", n, dns.TypeToString[h.Rrtype])
	}
	names[n] = e
	return nil
}

// WatchFile loads the control file at path now and again whenever its modification time
// or size changes (checked every period), until ctx ends. Errors are logged and the records
// kept; a missing file is not an error (nothing is loaded until it appears). It is how the
// `make run` demo lets a person change records: edit the file, the server follows within
// period.
func (s *Server) WatchFile(ctx context.Context, path string, period time.Duration) {
	log := klog.FromContext(ctx).WithValues("file", path)
	var last os.FileInfo
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if fi, err := os.Stat(path); err == nil && (last == nil || changed(last, fi)) {
			last = fi
			if err := s.LoadFile(path); err != nil {
				log.Error(err, "DNS control file not loaded; records unchanged")
			} else {
				log.Info("DNS control file loaded", "records", strings.Count(s.Records(), "\n"))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func changed(a, b os.FileInfo) bool {
	return !a.ModTime().Equal(b.ModTime()) || a.Size() != b.Size()
}
