package kubelet

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Outcome is what a probe observed.
type Outcome int

// The zero Outcome means the probe could not run (see the error).
const (
	Connected Outcome = iota + 1 // handshake done / reply or arrival seen
	Refused                      // RST, ICMP port unreachable, or SCTP to an undeclared port
	TimedOut                     // nothing came back: a silent drop
)

func (o Outcome) String() string {
	switch o {
	case Connected:
		return "Connected"
	case Refused:
		return "Refused"
	case TimedOut:
		return "TimedOut"
	}
	return "Unknown"
}

// ProbeResult is the outcome of one probe and, for TCP and UDP, the server's answer (the
// name of the pod that answered).
type ProbeResult struct {
	Outcome Outcome
	Reply   string
}

// resend is how often UDP and SCTP probes repeat their datagram: the first packets towards
// a remote node can be lost while OVS resolves the tunnel neighbour.
const resend = 200 * time.Millisecond

// SCTPWitness tells whether an SCTP INIT reached the pod with address to.
type SCTPWitness interface {
	// SCTPSeen reports whether an INIT from `from` to to:port arrived at or after since
	// (arrived), and whether that pod declares the SCTP port (served). ok is false when the
	// witness runs no pod with address to.
	SCTPSeen(to netip.Addr, port uint16, from netip.Addr, since time.Time) (arrived, served, ok bool)
}

// Probe connects from the pod `from` (running on this kubelet) to to:port over protocol
// within timeout. SCTP needs the destination on this node; use Group.Probe across nodes.
func (k *Kubelet) Probe(ctx context.Context, from types.NamespacedName, to netip.AddrPort, protocol corev1.Protocol, timeout time.Duration) (ProbeResult, error) {
	return k.probe(ctx, from, to, protocol, timeout, k, Via{})
}

// Via says where a probe to an address that the datapath translates (a Service's virtual
// address) arrives, for the SCTP witness: the endpoint the connection is DNATed to and the
// source address the endpoint sees (the client's own, or the address it is SNATed to). The
// zero Via means no translation: the probe's destination and the pod's own address.
type Via struct {
	Endpoint netip.AddrPort
	Source   netip.Addr
}

func (k *Kubelet) probe(ctx context.Context, from types.NamespacedName, to netip.AddrPort, protocol corev1.Protocol, timeout time.Duration, w SCTPWitness, via Via) (ProbeResult, error) {
	path, src, err := k.podNetNS(from)
	if err != nil {
		return ProbeResult{}, err
	}
	return probeIn(ctx, path, src, from, to, protocol, timeout, w, via)
}

// probeIn runs a probe from the network namespace at path, whose pod (from) has address src.
func probeIn(ctx context.Context, path string, src netip.Addr, from types.NamespacedName, to netip.AddrPort, protocol corev1.Protocol, timeout time.Duration, w SCTPWitness, via Via) (ProbeResult, error) {
	if !via.Endpoint.IsValid() {
		via.Endpoint = to
	}
	if !via.Source.IsValid() {
		via.Source = src
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var res ProbeResult
	var err error
	switch protocol {
	case corev1.ProtocolTCP, "":
		res, err = probeTCP(ctx, path, to)
	case corev1.ProtocolUDP:
		res, err = probeUDP(ctx, path, to)
	case corev1.ProtocolSCTP:
		res, err = probeSCTP(ctx, path, to, via, w)
	default:
		err = fmt.Errorf("unknown protocol %q", protocol)
	}
	if err != nil {
		return res, fmt.Errorf("probe %s %s from pod %s: %w", protocol, to, from, err)
	}
	return res, nil
}

// podNetNS returns the netns path and first address of a running pod of this kubelet.
func (k *Kubelet) podNetNS(key types.NamespacedName) (string, netip.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	sb := k.sandboxes[key]
	if sb == nil || sb.servers == nil || len(sb.ips) == 0 {
		return "", netip.Addr{}, fmt.Errorf("pod %s is not running on node %s", key, k.cfg.NodeName)
	}
	return sb.netnsPath, sb.ips[0], nil
}

// PodIPs returns the addresses of a running pod of this kubelet (nil if it is not running).
func (k *Kubelet) PodIPs(key types.NamespacedName) []netip.Addr {
	k.mu.Lock()
	defer k.mu.Unlock()
	if sb := k.sandboxes[key]; sb != nil && sb.servers != nil {
		return sb.podIPs()
	}
	return nil
}

// PodNetNS returns the netns path of a running pod of this kubelet ("" if not running).
func (k *Kubelet) PodNetNS(key types.NamespacedName) string {
	p, _, _ := k.podNetNS(key)
	return p
}

// SCTPSeen implements SCTPWitness for the pods of this kubelet.
func (k *Kubelet) SCTPSeen(to netip.Addr, port uint16, from netip.Addr, since time.Time) (arrived, served, ok bool) {
	k.mu.Lock()
	var srv *podServers
	for _, sb := range k.sandboxes {
		if sb.servers != nil && !sb.hostNetwork && containsAddr(sb.ips, to) {
			srv = sb.servers
		}
	}
	k.mu.Unlock()
	if srv == nil {
		return false, false, false
	}
	arrived, served = srv.sctpSeen(port, from, since)
	return arrived, served, true
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// classify maps a dial/read error to an outcome; other errors are returned.
func classify(ctx context.Context, err error) (Outcome, error) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused, nil
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return TimedOut, nil
	case ctx.Err() != nil:
		return TimedOut, nil
	}
	return 0, err
}

func probeTCP(ctx context.Context, path string, to netip.AddrPort) (ProbeResult, error) {
	var conn net.Conn
	err := inNetNS(path, func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", to.String())
		return err
	})
	if err != nil {
		o, err := classify(ctx, err)
		return ProbeResult{Outcome: o}, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	line, _ := bufio.NewReader(conn).ReadString('\n') // any established connection counts
	return ProbeResult{Outcome: Connected, Reply: strings.TrimSuffix(line, "\n")}, nil
}

// probeUDP sends a datagram every `resend` on a connected socket until a reply, an ICMP
// port unreachable (ECONNREFUSED on the next read) or the deadline.
func probeUDP(ctx context.Context, path string, to netip.AddrPort) (ProbeResult, error) {
	var conn net.Conn
	err := inNetNS(path, func() (err error) {
		conn, err = net.Dial("udp", to.String())
		return err
	})
	if err != nil {
		return ProbeResult{}, err
	}
	defer conn.Close()
	buf := make([]byte, 2048)
	for {
		if _, err := conn.Write([]byte("probe\n")); err != nil {
			o, err := classify(ctx, err)
			return ProbeResult{Outcome: o}, err
		}
		_ = conn.SetReadDeadline(earliest(ctx, time.Now().Add(resend)))
		n, err := conn.Read(buf)
		if err == nil {
			return ProbeResult{Outcome: Connected, Reply: strings.TrimSuffix(string(buf[:n]), "\n")}, nil
		}
		o, err := classify(ctx, err)
		if err != nil || o == Refused || ctx.Err() != nil {
			return ProbeResult{Outcome: o}, err
		}
	}
}

func earliest(ctx context.Context, t time.Time) time.Time {
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		return dl
	}
	return t
}

// probeSCTP sends an INIT to `to` every `resend` from a raw socket and asks the witness
// whether it arrived at via.Endpoint from via.Source.
func probeSCTP(ctx context.Context, path string, to netip.AddrPort, via Via, w SCTPWitness) (ProbeResult, error) {
	var conn net.PacketConn
	err := inNetNS(path, func() (err error) {
		conn, err = net.ListenPacket("ip4:132", "0.0.0.0")
		return err
	})
	if err != nil {
		return ProbeResult{}, fmt.Errorf("raw SCTP socket: %w", err)
	}
	defer conn.Close()
	since := time.Now()
	pkt := sctpInit(ephemeralPort(), to.Port())
	dst := &net.IPAddr{IP: to.Addr().AsSlice()}
	t := time.NewTicker(resend / 4)
	defer t.Stop()
	for i := 0; ; i++ {
		if i%4 == 0 {
			if _, err := conn.WriteTo(pkt, dst); err != nil {
				return ProbeResult{}, fmt.Errorf("send INIT: %w", err)
			}
		}
		arrived, served, ok := w.SCTPSeen(via.Endpoint.Addr(), via.Endpoint.Port(), via.Source, since)
		switch {
		case !ok:
			return ProbeResult{}, fmt.Errorf("no pod with address %s to witness SCTP arrival", via.Endpoint.Addr())
		case arrived && served:
			return ProbeResult{Outcome: Connected}, nil
		case arrived:
			return ProbeResult{Outcome: Refused}, nil
		}
		select {
		case <-ctx.Done():
			return ProbeResult{Outcome: TimedOut}, nil
		case <-t.C:
		}
	}
}

func ephemeralPort() uint16 {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return 32768 + binary.BigEndian.Uint16(b[:])%28232
}

// Member is a node's source of pods for a Group: a Kubelet (the stand-in) or a Tap (a real
// kubelet's pods).
type Member interface {
	SCTPWitness
	// PodNetNS returns the netns path of a running pod of the member ("" if none).
	PodNetNS(key types.NamespacedName) string
	// PodIPs returns the addresses of a running pod of the member (nil if none).
	PodIPs(key types.NamespacedName) []netip.Addr
	probe(ctx context.Context, from types.NamespacedName, to netip.AddrPort, protocol corev1.Protocol, timeout time.Duration, w SCTPWitness, via Via) (ProbeResult, error)
}

// Group is the kubelets (or taps) of a multi-node lab: it finds a pod's node for probes and
// witnesses SCTP arrivals on any node. The zero Group is empty and ready to use.
type Group struct {
	mu sync.Mutex
	ks []Member
}

// Add adds members to the group.
func (g *Group) Add(ms ...Member) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ks = append(g.ks, ms...)
}

func (g *Group) members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Member(nil), g.ks...)
}

// SCTPSeen implements SCTPWitness across the group.
func (g *Group) SCTPSeen(to netip.Addr, port uint16, from netip.Addr, since time.Time) (arrived, served, ok bool) {
	for _, k := range g.members() {
		if arrived, served, ok = k.SCTPSeen(to, port, from, since); ok {
			return arrived, served, ok
		}
	}
	return false, false, false
}

// Serves reports whether a member runs the pod at address ip with its servers up (probes
// from and to it work).
func (g *Group) Serves(key types.NamespacedName, ip netip.Addr) bool {
	for _, k := range g.members() {
		if k.PodNetNS(key) != "" {
			return containsAddr(k.PodIPs(key), ip)
		}
	}
	return false
}

// Probe runs the probe on the member running `from`, with the whole group as SCTP witness.
func (g *Group) Probe(ctx context.Context, from types.NamespacedName, to netip.AddrPort, protocol corev1.Protocol, timeout time.Duration) (ProbeResult, error) {
	return g.ProbeVia(ctx, from, to, protocol, timeout, Via{})
}

// ProbeVia is Probe to an address the datapath translates as via says (a Service's
// virtual address and its endpoint); via matters to SCTP only, whose arrival is witnessed
// at the endpoint.
func (g *Group) ProbeVia(ctx context.Context, from types.NamespacedName, to netip.AddrPort, protocol corev1.Protocol, timeout time.Duration, via Via) (ProbeResult, error) {
	for _, k := range g.members() {
		if k.PodNetNS(from) != "" {
			return k.probe(ctx, from, to, protocol, timeout, g, via)
		}
	}
	return ProbeResult{}, fmt.Errorf("probe: pod %s runs on no node of the group", from)
}
