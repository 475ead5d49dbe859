package dnsresolver

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/dnsserver"
)

const zone = "lab.example."

// labServer runs the lab DNS server on a free loopback port of the test's namespace.
func labServer(t *testing.T) *dnsserver.Server {
	t.Helper()
	s, err := dnsserver.New(dnsserver.Config{Zones: []string{zone, "other.example."},
		Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func setA(t *testing.T, s *dnsserver.Server, name string, ttl uint32, as ...string) {
	t.Helper()
	if err := s.SetA(name, ttl, addrs(as...)...); err != nil {
		t.Fatal(err)
	}
}

func setCNAME(t *testing.T, s *dnsserver.Server, name, target string, ttl uint32) {
	t.Helper()
	if err := s.SetCNAME(name, target, ttl); err != nil {
		t.Fatal(err)
	}
}

func lookuper(servers ...netip.AddrPort) *DNSLookuper {
	return &DNSLookuper{Servers: servers, Timeout: 300 * time.Millisecond, Dial: defaultDial}
}

func TestLookupAnswers(t *testing.T) {
	s := labServer(t)
	setA(t, s, "www.lab.example", 30, "203.0.113.10", "203.0.113.9")
	setCNAME(t, s, "alias.lab.example", "www.lab.example", 60)
	setCNAME(t, s, "alias2.lab.example", "alias.lab.example", 7)
	setCNAME(t, s, "cross.lab.example", "x.other.example", 50)
	setA(t, s, "x.other.example", 40, "203.0.113.11")
	setCNAME(t, s, "dangling.lab.example", "gone.lab.example", 50)
	setA(t, s, "ttl0.lab.example", 0, "203.0.113.12")
	for _, chase := range []bool{true, false} {
		s.SetChaseCNAME(chase)
		for _, c := range []struct {
			name, addrs string
			ttl         time.Duration
			queries     int // when the server does not chase CNAMEs
		}{
			{"www.lab.example", "203.0.113.9,203.0.113.10", 30 * time.Second, 1},
			{"WWW.LAB.EXAMPLE.", "203.0.113.9,203.0.113.10", 30 * time.Second, 1},
			{"alias2.lab.example", "203.0.113.9,203.0.113.10", 7 * time.Second, 3},
			{"alias.lab.example", "203.0.113.9,203.0.113.10", 30 * time.Second, 2},
			{"cross.lab.example", "203.0.113.11", 40 * time.Second, 2},
			{"ttl0.lab.example", "203.0.113.12", 0, 1},
			{"missing.lab.example", "", 5 * time.Second, 1}, // NXDOMAIN: SOA minimum 5 s
			{"dangling.lab.example", "", 5 * time.Second, 2},
			{"lab.example", "", 5 * time.Second, 1}, // NODATA at the apex
		} {
			ans, err := lookuper(s.Addrs()[0]).LookupA(context.Background(), c.name)
			if err != nil {
				t.Errorf("chase=%v %s: %v", chase, c.name, err)
				continue
			}
			wantQ := c.queries
			if chase {
				wantQ = 1
			}
			if fmtAddrs(ans.Addrs) != c.addrs || ans.TTL != c.ttl || ans.Queries != wantQ {
				t.Errorf("chase=%v %s: %s TTL %v, %d queries; want %s TTL %v, %d queries", chase, c.name,
					fmtAddrs(ans.Addrs), ans.TTL, ans.Queries, c.addrs, c.ttl, wantQ)
			}
		}
	}
}

func TestLookupFailures(t *testing.T) {
	s := labServer(t)
	setA(t, s, "www.lab.example", 30, "203.0.113.9")
	setCNAME(t, s, "loop1.lab.example", "loop2.lab.example", 30)
	setCNAME(t, s, "loop2.lab.example", "loop1.lab.example", 30)
	for i := range 9 { // c0 → c1 → … → c9: nine links, one more than allowed
		setCNAME(t, s, fmt.Sprintf("c%d.lab.example", i), fmt.Sprintf("c%d.lab.example", i+1), 30)
	}
	setA(t, s, "c9.lab.example", 30, "203.0.113.9")
	l := lookuper(s.Addrs()[0])
	for _, chase := range []bool{true, false} {
		s.SetChaseCNAME(chase)
		if _, err := l.LookupA(context.Background(), "loop1.lab.example"); err == nil || !strings.Contains(err.Error(), "CNAME loop") {
			t.Errorf("chase=%v: CNAME loop: %v", chase, err)
		}
		if ans, err := l.LookupA(context.Background(), "c1.lab.example"); err != nil || len(ans.Addrs) != 1 {
			t.Errorf("chase=%v: chain of 8: %v, %v", chase, ans, err)
		}
		if _, err := l.LookupA(context.Background(), "c0.lab.example"); err == nil || !strings.Contains(err.Error(), "longer than 8") {
			t.Errorf("chase=%v: chain of 9: %v", chase, err)
		}
	}
	s.SetChaseCNAME(true)
	if _, err := l.LookupA(context.Background(), "www.elsewhere.example"); err == nil || !strings.Contains(err.Error(), "REFUSED") {
		t.Errorf("outside the zones: %v", err)
	}
	s.SetFailure(dnsserver.ServFail)
	if _, err := l.LookupA(context.Background(), "www.lab.example"); err == nil || !strings.Contains(err.Error(), "SERVFAIL") {
		t.Errorf("SERVFAIL: %v", err)
	}
	s.SetFailure(dnsserver.Drop)
	start := time.Now()
	if _, err := l.LookupA(context.Background(), "www.lab.example"); err == nil {
		t.Error("no answer, no error")
	} else if d := time.Since(start); d < l.Timeout || d > 5*l.Timeout {
		t.Errorf("timeout after %v, want about %v", d, l.Timeout)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.LookupA(ctx, "www.lab.example"); err == nil {
		t.Error("cancelled lookup succeeded")
	}
	if _, err := lookuper().LookupA(context.Background(), "www.lab.example"); err == nil {
		t.Error("lookup without servers succeeded")
	}
}

// Servers are tried in order until one answers; a truncated UDP answer is asked again over
// TCP.
func TestLookupServersInOrderAndTCP(t *testing.T) {
	bad, good := labServer(t), labServer(t)
	bad.SetFailure(dnsserver.ServFail)
	var many []string
	for i := 1; i <= 100; i++ {
		many = append(many, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}).String())
	}
	setA(t, good, "many.lab.example", 30, many...)
	down := labServer(t)
	downAddr := down.Addrs()[0]
	down.Stop()
	ans, err := lookuper(downAddr, bad.Addrs()[0], good.Addrs()[0]).LookupA(context.Background(), "many.lab.example")
	if err != nil || len(ans.Addrs) != 100 {
		t.Fatalf("%d addresses, %v", len(ans.Addrs), err)
	}
	if ans.Queries != 4 { // down (UDP), bad (UDP), good (UDP truncated, then TCP)
		t.Errorf("%d queries, want 4", ans.Queries)
	}
	qs := good.QueriesFor("many.lab.example")
	if len(qs) != 2 || qs[0].Proto != "udp" || qs[1].Proto != "tcp" {
		t.Errorf("good server saw %+v, want UDP then TCP", qs)
	}
}
