// Package dnsserver is the lab's DNS server: authoritative for a few test zones, with A and
// CNAME records whose addresses and TTLs tests and the demo change while it runs, a log of
// every query it receives (so tests can bound a resolver's query rate), and failure modes
// (stopped, silent, SERVFAIL) for "DNS server down" tests. It is built on
// github.com/miekg/dns.
//
// It answers only for its zones (REFUSED for anything else) and never recurses or forwards,
// so it sends nothing anywhere but replies to its clients. It listens on the addresses it is
// given, UDP and TCP on each, in a given network namespace (in the lab: the external host's,
// see netlab.ExternalHost), opening its sockets there on a thread switched into the
// namespace; the serving goroutines then run anywhere.
//
// Records are changed through the Go API (SetA, SetCNAME, SetTTL, Delete) or through a
// control file in master-file format (LoadFile, WatchFile) that a person can edit while
// `make run` is up; a load replaces every record.
package dnsserver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/miekg/dns"
)

// Failure selects how a running server treats queries, for failure tests.
type Failure int

const (
	// Answer is normal operation.
	Answer Failure = iota
	// Drop reads queries (they are logged) and never answers: clients time out.
	Drop
	// ServFail answers every query with SERVFAIL.
	ServFail
)

// Config configures New.
type Config struct {
	// Zones are the zones the server is authoritative for, e.g. "lab.example." (a trailing
	// dot is optional). At least one.
	Zones []string
	// Addrs are the addresses to listen on, UDP and TCP on each; port 0 picks a free port
	// (the same one for UDP and TCP, and again after a restart; see Server.Addrs). At
	// least one.
	Addrs []netip.AddrPort
	// NetNSPath is the network namespace to listen in (e.g. /run/netns/lab-ext); "" means
	// the caller's.
	NetNSPath string
}

// Query is one query the server received.
type Query struct {
	Time  time.Time
	Name  string // lower-case FQDN
	Type  string // "A", "CNAME", …
	Proto string // "udp" or "tcp"
	From  netip.AddrPort
}

// Server is the lab DNS server. Its methods are safe for concurrent use.
type Server struct {
	cfg Config

	mu      sync.Mutex
	data    zoneData
	failure Failure
	chase   bool
	queries []Query
	running []*dns.Server
	bound   []netip.AddrPort // the addresses of the first Start, kept for restarts
}

// New validates cfg and returns a stopped server with no records.
func New(cfg Config) (*Server, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("dns server: no listen addresses")
	}
	data, err := newZoneData(cfg.Zones)
	if err != nil {
		return nil, fmt.Errorf("dns server: %w", err)
	}
	return &Server{cfg: cfg, data: data, chase: true}, nil
}

// Start opens the sockets and serves until Stop. Records, the query log and the failure
// mode survive a Stop/Start cycle. Starting a running server is an error.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running != nil {
		return errors.New("dns server: already running")
	}
	servers, bound, err := s.listen()
	if err != nil {
		return err
	}
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
	}
	s.running, s.bound = servers, bound
	return nil
}

// listen opens UDP and TCP sockets on every address inside the namespace. On failure it
// closes what it opened.
func (s *Server) listen() ([]*dns.Server, []netip.AddrPort, error) {
	var servers []*dns.Server
	var bound []netip.AddrPort
	addrs := s.cfg.Addrs
	if s.bound != nil { // a restart: the ports port 0 picked the first time
		addrs = s.bound
	}
	err := s.inNetNS(func() error {
		for _, a := range addrs {
			pc, ln, ap, err := listenPair(a)
			if err != nil {
				return err
			}
			servers = append(servers, &dns.Server{PacketConn: pc, Handler: s},
				&dns.Server{Listener: ln, Handler: s})
			bound = append(bound, ap)
		}
		return nil
	})
	if err != nil {
		for _, srv := range servers {
			closeSockets(srv)
		}
		return nil, nil, fmt.Errorf("dns server: %w", err)
	}
	return servers, bound, nil
}

// listenPair opens UDP then TCP on a; with port 0 the TCP socket takes the UDP port.
func listenPair(a netip.AddrPort) (net.PacketConn, net.Listener, netip.AddrPort, error) {
	// Port 0 picks a free UDP port; the same TCP port may be taken by someone else, so
	// pick again a few times before giving up.
	for try := 0; ; try++ {
		pc, ln, ap, err := listenPairOnce(a)
		if err == nil || a.Port() != 0 || try == 10 || !errors.Is(err, syscall.EADDRINUSE) {
			return pc, ln, ap, err
		}
	}
}

func listenPairOnce(a netip.AddrPort) (net.PacketConn, net.Listener, netip.AddrPort, error) {
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a))
	if err != nil {
		return nil, nil, a, fmt.Errorf("listen udp %s: %w", a, err)
	}
	ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		_ = pc.Close()
		return nil, nil, a, fmt.Errorf("listen tcp %s: %w", ap, err)
	}
	return pc, ln, ap, nil
}

func closeSockets(srv *dns.Server) {
	if srv.PacketConn != nil {
		_ = srv.PacketConn.Close()
	}
	if srv.Listener != nil {
		_ = srv.Listener.Close()
	}
}

func (s *Server) inNetNS(fn func() error) error {
	if s.cfg.NetNSPath == "" {
		return fn()
	}
	return ns.WithNetNSPath(s.cfg.NetNSPath, func(ns.NetNS) error { return fn() })
}

// Stop closes the sockets (queries then get ICMP port unreachable or a TCP reset) and waits
// for the serving goroutines. Idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	servers := s.running
	s.running = nil
	s.mu.Unlock()
	for _, srv := range servers {
		_ = srv.Shutdown()
		closeSockets(srv)
	}
}

// Running reports whether the server is started.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running != nil
}

// Addrs returns the addresses the server listens on (ports resolved), in Config order;
// nil when stopped.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		return nil
	}
	return append([]netip.AddrPort(nil), s.bound...)
}

// SetFailure switches the failure mode of the running (and any later started) server.
func (s *Server) SetFailure(f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failure = f
}

// SetChaseCNAME selects whether answers follow CNAMEs through the server's own data (the
// default, as authoritative servers do) or stop at the first CNAME, so that a resolver must
// query the target itself.
func (s *Server) SetChaseCNAME(chase bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chase = chase
}

// ServeDNS implements dns.Handler: log the query, then answer it from the zone data (or
// not, per the failure mode).
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	reply, ok := s.reply(w, r)
	if ok {
		_ = w.WriteMsg(reply)
	}
}

func (s *Server) reply(w dns.ResponseWriter, r *dns.Msg) (*dns.Msg, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	reply := new(dns.Msg)
	reply.SetReply(r)
	if len(r.Question) != 1 || r.Opcode != dns.OpcodeQuery {
		reply.Rcode = dns.RcodeFormatError
		return reply, true
	}
	q := r.Question[0]
	s.queries = append(s.queries, Query{Time: time.Now(), Name: dns.CanonicalName(q.Name),
		Type: dns.TypeToString[q.Qtype], Proto: w.LocalAddr().Network(), From: addrPortOf(w.RemoteAddr())})
	switch s.failure {
	case Drop:
		return nil, false
	case ServFail:
		reply.Rcode = dns.RcodeServerFailure
		return reply, true
	}
	s.data.answer(q, s.chase, reply)
	if w.LocalAddr().Network() == "udp" {
		reply.Truncate(udpSize(r)) // sets TC when records had to go: the client retries over TCP
	}
	return reply, true
}

// udpSize is the largest UDP reply the client accepts: its EDNS0 size, or 512.
func udpSize(r *dns.Msg) int {
	if opt := r.IsEdns0(); opt != nil {
		return max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	return dns.MinMsgSize
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
