package controller

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// EgressProbePort is the TCP port the health check connects to on an egress
// node's hostIP: "discard", which nothing listens on, as OpenShift SDN did.
// A live node answers with a RST (or accepts); a dead one does not answer.
const EgressProbePort = 9

// DialFunc opens a connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// probeAlive dials hostIP:EgressProbePort within timeout and reports
// whether the node proved to be alive: the connection was accepted or
// refused (a RST). Everything else — timeout, unreachable host or network,
// any other error — counts as down: only an answer proves life, and a
// prober that cannot reach anything takes egress IPs out of use (traffic of
// their namespaces is dropped) rather than leaving them on dead nodes.
func probeAlive(ctx context.Context, dial DialFunc, hostIP netip.Addr, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := dial(ctx, "tcp", net.JoinHostPort(hostIP.String(), strconv.Itoa(EgressProbePort)))
	if conn != nil {
		_ = conn.Close()
	}
	return err == nil || errors.Is(err, syscall.ECONNREFUSED)
}

// egressHealth is the reachability of the egress nodes (HostSubnets with
// egressCIDRs or egressIPs), kept for one leadership term. A node becomes
// unreachable after `failures` consecutive failed probes and reachable
// again on the first success. Safe for concurrent use.
type egressHealth struct {
	dial              DialFunc
	interval, timeout time.Duration
	failures          int

	mu    sync.Mutex
	nodes map[string]*probeState // by HostSubnet name
}

type probeState struct {
	hostIP      netip.Addr
	fails       int
	unreachable bool
	since       time.Time // when it became unreachable
}

func newEgressHealth(opts Options) *egressHealth {
	return &egressHealth{dial: opts.EgressDial, interval: opts.EgressProbeInterval, timeout: opts.EgressProbeTimeout,
		failures: opts.EgressProbeFailures, nodes: map[string]*probeState{}}
}

// status returns what the probes found for node: known is false until it
// has been probed at its current hostIP in this term.
func (h *egressHealth) status(node string, hostIP netip.Addr) (unreachable bool, since time.Time, known bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.nodes[node]
	if s == nil || s.hostIP != hostIP {
		return false, time.Time{}, false
	}
	return s.unreachable, s.since, true
}

func (h *egressHealth) unreachableCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.nodes {
		if s.unreachable {
			n++
		}
	}
	return n
}

// run probes the current targets every interval until ctx ends, calling
// changed after a round in which some node was first probed or changed
// state.
func (h *egressHealth) run(ctx context.Context, targets func() map[string]netip.Addr, changed func()) {
	for ctx.Err() == nil {
		start := time.Now()
		if h.round(ctx, targets()) {
			changed()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(start.Add(h.interval))):
		}
	}
}

// round probes every target at once and records the results; it reports
// whether any node's state is new or changed. Nodes that are no longer
// targets are forgotten.
func (h *egressHealth) round(ctx context.Context, targets map[string]netip.Addr) bool {
	alive := make(map[string]bool, len(targets))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, ip := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok := probeAlive(ctx, h.dial, ip, h.timeout)
			mu.Lock()
			alive[name] = ok
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false
	}
	return h.record(targets, alive, time.Now())
}

func (h *egressHealth) record(targets map[string]netip.Addr, alive map[string]bool, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := false
	for name := range h.nodes {
		if _, ok := targets[name]; !ok {
			delete(h.nodes, name)
		}
	}
	for name, ip := range targets {
		s := h.nodes[name]
		if s == nil || s.hostIP != ip {
			s = &probeState{hostIP: ip}
			h.nodes[name], changed = s, true
		}
		changed = s.observe(alive[name], h.failures, now) || changed
	}
	return changed
}

// observe applies one probe result and reports a state change.
func (s *probeState) observe(alive bool, failures int, now time.Time) bool {
	if alive {
		s.fails = 0
		if s.unreachable {
			s.unreachable, s.since = false, time.Time{}
			return true
		}
		return false
	}
	s.fails++
	if !s.unreachable && s.fails >= failures {
		s.unreachable, s.since = true, now
		return true
	}
	return false
}
