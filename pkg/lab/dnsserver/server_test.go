package dnsserver

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const zone = "lab.example."

// startLoopback runs a server for zone (and "other.example.") on a free loopback port of
// the test's own namespace; no root needed.
func startLoopback(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{Zones: []string{zone, "other.example"},
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

func query(t *testing.T, s *Server, proto, name string, qtype uint16) *dns.Msg {
	t.Helper()
	r, err := exchange(s, proto, name, qtype, 2*time.Second)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", dns.TypeToString[qtype], name, proto, err)
	}
	return r
}

func exchange(s *Server, proto, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: proto, Timeout: timeout}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := c.Exchange(m, s.Addrs()[0].String())
	return r, err
}

// answer renders the answer section compactly: "name ttl TYPE data" per record, sorted as sent.
func answer(r *dns.Msg) string {
	var lines []string
	for _, rr := range r.Answer {
		lines = append(lines, strings.Join(strings.Fields(strings.Replace(rr.String(), "\tIN\t", " ", 1)), " "))
	}
	return strings.Join(lines, "; ")
}

func mustSetA(t *testing.T, s *Server, name string, ttl uint32, addrs ...string) {
	t.Helper()
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	if err := s.SetA(name, ttl, as...); err != nil {
		t.Fatal(err)
	}
}

func TestAnswers(t *testing.T) {
	s := startLoopback(t)
	mustSetA(t, s, "www.lab.example", 30, "203.0.113.10", "203.0.113.9", "203.0.113.9")
	if err := s.SetCNAME("alias.lab.example.", "WWW.lab.example", 60); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCNAME("alias2.lab.example.", "alias.lab.example", 7); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCNAME("out.lab.example.", "www.elsewhere.example", 9); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, proto string
		qtype       uint16
		rcode       int
		want        string
	}{
		{"www.lab.example", "udp", dns.TypeA, dns.RcodeSuccess,
			"www.lab.example. 30 A 203.0.113.9; www.lab.example. 30 A 203.0.113.10"},
		{"WWW.Lab.Example", "tcp", dns.TypeA, dns.RcodeSuccess,
			"www.lab.example. 30 A 203.0.113.9; www.lab.example. 30 A 203.0.113.10"},
		{"alias2.lab.example", "udp", dns.TypeA, dns.RcodeSuccess,
			"alias2.lab.example. 7 CNAME alias.lab.example.; alias.lab.example. 60 CNAME www.lab.example.; " +
				"www.lab.example. 30 A 203.0.113.9; www.lab.example. 30 A 203.0.113.10"},
		{"alias.lab.example", "udp", dns.TypeCNAME, dns.RcodeSuccess, "alias.lab.example. 60 CNAME www.lab.example."},
		{"out.lab.example", "udp", dns.TypeA, dns.RcodeSuccess, "out.lab.example. 9 CNAME www.elsewhere.example."},
		{"missing.lab.example", "udp", dns.TypeA, dns.RcodeNameError, ""},
		{"www.lab.example", "udp", dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"lab.example", "udp", dns.TypeA, dns.RcodeSuccess, ""},
		{"www.elsewhere.example", "udp", dns.TypeA, dns.RcodeRefused, ""},
	} {
		r := query(t, s, c.proto, c.name, c.qtype)
		if r.Rcode != c.rcode || answer(r) != c.want {
			t.Errorf("%s %s/%s: rcode %s, answer %q\nwant rcode %s, answer %q", dns.TypeToString[c.qtype], c.name, c.proto,
				dns.RcodeToString[r.Rcode], answer(r), dns.RcodeToString[c.rcode], c.want)
		}
		if c.rcode != dns.RcodeRefused && !r.Authoritative {
			t.Errorf("%s: answer not authoritative", c.name)
		}
		if c.want == "" && c.rcode != dns.RcodeRefused && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
			t.Errorf("%s: negative answer without SOA: %v", c.name, r.Ns)
		}
	}
}

func TestNoChase(t *testing.T) {
	s := startLoopback(t)
	mustSetA(t, s, "www.lab.example", 30, "203.0.113.9")
	if err := s.SetCNAME("alias.lab.example.", "www.lab.example", 60); err != nil {
		t.Fatal(err)
	}
	s.SetChaseCNAME(false)
	if got := answer(query(t, s, "udp", "alias.lab.example", dns.TypeA)); got != "alias.lab.example. 60 CNAME www.lab.example." {
		t.Errorf("no chase: %q", got)
	}
}

func TestChangesAndQueryLog(t *testing.T) {
	s := startLoopback(t)
	mustSetA(t, s, "www.lab.example", 30, "203.0.113.9")
	query(t, s, "udp", "www.lab.example", dns.TypeA)
	mustSetA(t, s, "www.lab.example", 30, "203.0.113.12")
	if err := s.SetTTL("www.lab.example.", 1); err != nil {
		t.Fatal(err)
	}
	if got := answer(query(t, s, "tcp", "www.lab.example", dns.TypeA)); got != "www.lab.example. 1 A 203.0.113.12" {
		t.Errorf("after SetA and SetTTL: %q", got)
	}
	s.Delete("www.lab.example")
	s.Delete("never.lab.example")
	if r := query(t, s, "udp", "www.lab.example", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("after Delete: %s", dns.RcodeToString[r.Rcode])
	}
	qs := s.QueriesFor("WWW.lab.example")
	if len(qs) != 3 || qs[0].Proto != "udp" || qs[1].Proto != "tcp" || qs[0].Type != "A" ||
		qs[0].Name != "www.lab.example." || qs[0].From.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("query log: %+v", qs)
	}
	s.ResetQueries()
	if len(s.Queries()) != 0 {
		t.Error("ResetQueries left queries")
	}
}

func TestBadInput(t *testing.T) {
	s := startLoopback(t)
	for name, err := range map[string]error{
		"outside zone":    s.SetA("www.elsewhere.example", 5, netip.MustParseAddr("203.0.113.1")),
		"IPv6":            s.SetA("v6.lab.example", 5, netip.MustParseAddr("2001:db8::1")),
		"no address":      s.SetA("none.lab.example", 5),
		"CNAME to itself": s.SetCNAME("loop.lab.example", "LOOP.lab.example.", 5),
		"TTL of missing":  s.SetTTL("missing.lab.example", 5),
		"bad name":        s.SetA("bad..lab.example", 5, netip.MustParseAddr("203.0.113.1")),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := New(Config{Zones: []string{zone}}); err == nil {
		t.Error("New without addresses accepted")
	}
	if _, err := New(Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}}); err == nil {
		t.Error("New without zones accepted")
	}
}

func TestFailureModesAndRestart(t *testing.T) {
	s := startLoopback(t)
	mustSetA(t, s, "www.lab.example", 30, "203.0.113.9")
	s.SetFailure(ServFail)
	if r := query(t, s, "udp", "www.lab.example", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("ServFail mode: %s", dns.RcodeToString[r.Rcode])
	}
	s.SetFailure(Drop)
	if _, err := exchange(s, "udp", "www.lab.example", dns.TypeA, 300*time.Millisecond); err == nil {
		t.Error("Drop mode answered")
	}
	if n := len(s.QueriesFor("www.lab.example")); n != 2 {
		t.Errorf("%d queries logged, want 2 (dropped ones count)", n)
	}
	s.SetFailure(Answer)
	addr := s.Addrs()[0]
	s.Stop()
	s.Stop()
	if s.Running() || s.Addrs() != nil {
		t.Error("stopped server reports running")
	}
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("www.lab.example.", dns.TypeA)
	if _, _, err := c.Exchange(m, addr.String()); err == nil {
		t.Error("stopped server answered")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("second Start accepted")
	}
	if got := s.Addrs(); len(got) != 1 || got[0] != addr {
		t.Errorf("after restart listening on %v, want %v (the port picked first)", got, addr)
	}
	if got := answer(query(t, s, "udp", "www.lab.example", dns.TypeA)); got != "www.lab.example. 30 A 203.0.113.9" {
		t.Errorf("after restart: %q", got)
	}
}

func TestControlFile(t *testing.T) {
	s := startLoopback(t)
	mustSetA(t, s, "old.lab.example", 30, "203.0.113.1")
	path := filepath.Join(t.TempDir(), "zone")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("$TTL 20\nwww 5 IN A 203.0.113.9\nwww 7 IN A 203.0.113.10\nalias IN CNAME www\nx.other.example. 3 IN A 203.0.113.11\n")
	if err := s.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	want := "alias.lab.example.\t20\tIN\tCNAME\twww.lab.example.\n" +
		"www.lab.example.\t5\tIN\tA\t203.0.113.9\nwww.lab.example.\t5\tIN\tA\t203.0.113.10\n" +
		"x.other.example.\t3\tIN\tA\t203.0.113.11\n"
	if got := s.Records(); got != want {
		t.Errorf("records after load:\n%s\nwant:\n%s", got, want)
	}
	for _, bad := range []string{
		"www IN AAAA 2001:db8::1\n",
		"www IN A 203.0.113.9\nwww IN CNAME x\n",
		"www IN CNAME x\nwww IN A 203.0.113.9\n",
		"x.elsewhere.example. IN A 203.0.113.9\n",
		"www IN A not-an-address\n",
	} {
		write(bad)
		if err := s.LoadFile(path); err == nil {
			t.Errorf("bad file accepted: %q", bad)
		} else {
			t.Logf("refused: %v", err)
		}
		if s.Records() != want {
			t.Errorf("bad file %q changed the records", bad)
		}
	}
	// Records() is itself a valid control file.
	write(want)
	if err := s.LoadFile(path); err != nil || s.Records() != want {
		t.Errorf("round trip: %v\n%s", err, s.Records())
	}
}

func TestWatchFile(t *testing.T) {
	s := startLoopback(t)
	path := filepath.Join(t.TempDir(), "zone")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.WatchFile(ctx, path, 20*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for got := answer(query(t, s, "udp", "www.lab.example", dns.TypeA)); got != want; got = answer(query(t, s, "udp", "www.lab.example", dns.TypeA)) {
			if time.Now().After(deadline) {
				t.Fatalf("answer %q, want %q", got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := os.WriteFile(path, []byte("www 5 IN A 203.0.113.9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("www.lab.example. 5 A 203.0.113.9")
	if err := os.WriteFile(path, []byte("www 6 IN A 203.0.113.12\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("www.lab.example. 6 A 203.0.113.12")
}

func TestMaxQueriesPerWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []Query {
		var qs []Query
		for _, m := range ms {
			qs = append(qs, Query{Time: t0.Add(time.Duration(m) * time.Millisecond)})
		}
		return qs
	}
	for _, c := range []struct {
		ms   []int
		want int
	}{
		{nil, 0},
		{[]int{0}, 1},
		{[]int{0, 1000, 2000}, 1},
		{[]int{0, 999, 2000}, 2},
		{[]int{0, 500, 900, 1400, 1600}, 3},
	} {
		if got := MaxQueriesPerWindow(at(c.ms...), time.Second); got != c.want {
			t.Errorf("%v: %d, want %d", c.ms, got, c.want)
		}
	}
}

func TestTruncation(t *testing.T) {
	s := startLoopback(t)
	var addrs []string
	for i := 1; i <= 100; i++ {
		addrs = append(addrs, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}).String())
	}
	mustSetA(t, s, "many.lab.example", 30, addrs...)
	if r := query(t, s, "udp", "many.lab.example", dns.TypeA); !r.Truncated || len(r.Answer) >= 100 {
		t.Errorf("UDP answer of 100 A records: truncated=%v, %d records", r.Truncated, len(r.Answer))
	}
	if r := query(t, s, "tcp", "many.lab.example", dns.TypeA); r.Truncated || len(r.Answer) != 100 {
		t.Errorf("TCP answer: truncated=%v, %d records", r.Truncated, len(r.Answer))
	}
}
