// Package relay connects sdn-lab's network namespaces with its control plane, which listens
// on the root namespace's loopback only, in both directions and without any address
// outside loopback and the lab's own namespaces:
//
//   - TCP listens on an address inside a lab namespace (the underlay's gateway address, on
//     which every node reaches the API server) and joins each accepted connection to a new
//     connection to the API server's loopback port. It relays bytes, not HTTP: TLS and
//     client certificates go end to end, so the API server's certificate must name the
//     relay's address (testenv.Options.ServingIPs).
//   - Connect is the other way: an HTTP CONNECT proxy on a unix socket that kube-apiserver's
//     egress selector uses for "cluster" traffic (kubelets: logs, exec, port-forward). It
//     dials each target from inside a lab namespace, and only targets inside the prefixes
//     it was given.
//
// Sockets are created on a thread switched into the namespace (containernetworking's
// ns.Do) and then used from any goroutine: a socket stays in the namespace it was created
// in.
package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"

	"github.com/containernetworking/plugins/pkg/ns"
)

// TCP relays connections accepted inside a network namespace to a target in the root one.
type TCP struct {
	ln     net.Listener
	target string
	conns  connSet
	done   chan struct{}
}

// ListenTCP listens on addr inside the network namespace at netnsPath (which must already
// hold addr) and relays every connection to target ("127.0.0.1:6443"), dialled from the
// root namespace. Close stops it.
func ListenTCP(netnsPath string, addr netip.AddrPort, target string) (*TCP, error) {
	var ln net.Listener
	err := inNetNS(netnsPath, func() (err error) {
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("relay: listening on %s in %s: %w", addr, netnsPath, err)
	}
	t := &TCP{ln: ln, target: target, done: make(chan struct{})}
	go t.serve()
	return t, nil
}

// Addr is the address the relay listens on.
func (t *TCP) Addr() netip.AddrPort { return t.ln.Addr().(*net.TCPAddr).AddrPort() }

func (t *TCP) serve() {
	defer close(t.done)
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		go t.relay(c)
	}
}

func (t *TCP) relay(c net.Conn) {
	up, err := net.Dial("tcp", t.target)
	if err != nil {
		c.Close()
		return
	}
	splice(&t.conns, c, up)
}

// Close stops listening, closes every relayed connection and waits for the accept loop.
// It is idempotent.
func (t *TCP) Close() error {
	err := t.ln.Close()
	<-t.done
	t.conns.closeAll()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// inNetNS runs fn on a thread switched into the network namespace at path.
func inNetNS(path string, fn func() error) error {
	netns, err := ns.GetNS(path)
	if err != nil {
		return err
	}
	defer netns.Close()
	return netns.Do(func(ns.NetNS) error { return fn() })
}

// connSet tracks live connections so Close can end them.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// add records c, or closes it and reports false when the set was closed.
func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
}

// splice copies both ways between a and b until either side ends, then closes both.
func splice(set *connSet, a, b net.Conn) {
	if !set.add(a) || !set.add(b) {
		a.Close()
		b.Close()
		return
	}
	defer set.remove(a)
	defer set.remove(b)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Half-close so the peer sees EOF but can still answer (TLS close_notify).
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}
