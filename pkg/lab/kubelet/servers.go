package kubelet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
)

// inNetNS runs fn on a thread switched into the netns at path. Sockets fn creates stay in
// that netns and may be used from any goroutine afterwards.
func inNetNS(path string, fn func() error) error {
	return ns.WithNetNSPath(path, func(ns.NetNS) error { return fn() })
}

// podServers are the in-process "containers" of one pod: a listener per declared TCP and UDP
// port answering with the pod name, and the SCTP watcher.
type podServers struct {
	greeting []byte
	sctp     *sctpWatcher
	sctpPort map[uint16]bool // declared SCTP ports

	wg      sync.WaitGroup
	mu      sync.Mutex
	closed  bool
	closers map[io.Closer]struct{}
}

// startServers opens every declared port inside netnsPath. On error, what was opened is
// closed again.
func startServers(netnsPath, podName string, pod *corev1.Pod) (*podServers, error) {
	s := &podServers{greeting: []byte(podName + "\n"), sctpPort: map[uint16]bool{},
		closers: map[io.Closer]struct{}{}}
	err := inNetNS(netnsPath, func() error {
		if err := s.listenAll(pod); err != nil {
			return err
		}
		w, err := listenSCTPWatcher()
		s.sctp = w
		return err
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("start servers: %w", err)
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.sctp.run() }()
	s.add(s.sctp)
	return s, nil
}

// listenAll runs inside the netns. Ports declared twice (two containers) are opened once.
func (s *podServers) listenAll(pod *corev1.Pod) error {
	seen := map[string]bool{}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			id := string(proto) + "/" + strconv.Itoa(int(p.ContainerPort))
			if seen[id] {
				continue
			}
			seen[id] = true
			if err := s.listen(proto, p.ContainerPort); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *podServers) listen(proto corev1.Protocol, port int32) error {
	addr := ":" + strconv.Itoa(int(port))
	switch proto {
	case corev1.ProtocolTCP:
		ln, err := net.Listen("tcp4", addr)
		if err != nil {
			return fmt.Errorf("listen tcp %s: %w", addr, err)
		}
		s.add(ln)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.serveTCP(ln) }()
	case corev1.ProtocolUDP:
		pc, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return fmt.Errorf("listen udp %s: %w", addr, err)
		}
		s.add(pc)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.serveUDP(pc) }()
	case corev1.ProtocolSCTP:
		s.sctpPort[uint16(port)] = true
	default:
		return fmt.Errorf("port %d: unknown protocol %q", port, proto)
	}
	return nil
}

// add registers c for Close; if Close already ran, c is closed at once.
func (s *podServers) add(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return
	}
	s.closers[c] = struct{}{}
}

// remove forgets a closed connection.
func (s *podServers) remove(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.closers, c)
}

func (s *podServers) serveTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.add(c)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.remove(c)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			if _, err := c.Write(s.greeting); err == nil {
				_, _ = io.Copy(c, c) // echo until the client closes
			}
		}()
	}
}

func (s *podServers) serveUDP(pc net.PacketConn) {
	buf := make([]byte, 64<<10)
	for {
		_, from, err := pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err == nil {
			_, _ = pc.WriteTo(s.greeting, from)
		}
	}
}

// sctpSeen reports whether an INIT to port from `from` arrived at or after since, and
// whether the pod declares that SCTP port.
func (s *podServers) sctpSeen(port uint16, from netip.Addr, since time.Time) (arrived, served bool) {
	return s.sctp.seen(port, from, since), s.sctpPort[port]
}

// Close closes every listener and connection and waits for the goroutines. Idempotent.
// Open sockets pin the netns, so Close must precede deleting it.
func (s *podServers) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cs := s.closers
	s.closers = nil
	s.mu.Unlock()
	for c := range cs {
		_ = c.Close()
	}
	s.wg.Wait()
	return nil
}
