package controller

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestProbeAliveLoopback dials real sockets on loopback: nothing listens on
// 127.0.0.1:9, so the kernel answers with a RST — alive; a listener that
// accepts is alive too.
func TestProbeAliveLoopback(t *testing.T) {
	dial := (&net.Dialer{}).DialContext
	if !probeAlive(context.Background(), dial, netip.MustParseAddr("127.0.0.1"), time.Second) {
		t.Errorf("127.0.0.1:%d refused the connection, which proves the host alive; probe said down", EgressProbePort)
	}
	ln, err := net.Listen("tcp", "127.0.0.2:9")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2:9 (%v); accepted connections not covered", err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	if !probeAlive(context.Background(), dial, netip.MustParseAddr("127.0.0.2"), time.Second) {
		t.Errorf("an accepted connection must count as alive")
	}
}

func TestProbeAliveErrors(t *testing.T) {
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	cases := []struct {
		name  string
		dial  DialFunc
		alive bool
	}{
		{"refused", func(context.Context, string, string) (net.Conn, error) { return nil, opErr(syscall.ECONNREFUSED) }, true},
		{"host unreachable", func(context.Context, string, string) (net.Conn, error) { return nil, opErr(syscall.EHOSTUNREACH) }, false},
		{"network unreachable", func(context.Context, string, string) (net.Conn, error) { return nil, opErr(syscall.ENETUNREACH) }, false},
		{"timeout", func(ctx context.Context, _, _ string) (net.Conn, error) { <-ctx.Done(); return nil, ctx.Err() }, false},
		{"other error", func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("dialer broken") }, false},
	}
	for _, tc := range cases {
		if got := probeAlive(context.Background(), tc.dial, netip.MustParseAddr("192.0.2.1"), 50*time.Millisecond); got != tc.alive {
			t.Errorf("%s: alive = %v, want %v", tc.name, got, tc.alive)
		}
	}
}

// TestEgressHealthTransitions: unreachable after `failures` failed probes
// in a row, reachable on the first success; a new hostIP starts afresh;
// nodes that stop being targets are forgotten.
func TestEgressHealthTransitions(t *testing.T) {
	h := &egressHealth{failures: 2, nodes: map[string]*probeState{}}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	now := time.Unix(1000, 0)
	step := func(aAlive bool, want bool, wantUnreachable bool) {
		t.Helper()
		if got := h.record(map[string]netip.Addr{"n1": a}, map[string]bool{"n1": aAlive}, now); got != want {
			t.Fatalf("record(alive=%v) changed = %v, want %v", aAlive, got, want)
		}
		if u, _, known := h.status("n1", a); !known || u != wantUnreachable {
			t.Fatalf("status = %v known %v, want unreachable %v", u, known, wantUnreachable)
		}
	}
	step(true, true, false)   // first probe: new
	step(false, false, false) // one failure
	step(true, false, false)  // success resets
	step(false, false, false)
	step(false, true, true) // second failure in a row
	step(false, false, true)
	step(true, true, false)
	if _, _, known := h.status("n1", b); known {
		t.Errorf("status at another hostIP must be unknown")
	}
	h.record(map[string]netip.Addr{}, nil, now)
	if _, _, known := h.status("n1", a); known {
		t.Errorf("a node that is no longer a target must be forgotten")
	}
}
