package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/netlab"
)

// Egress IPs on the lab (SPEC §4.7, issue 13): the controller assigns them
// from HostSubnet egressCIDRs and health-checks the egress nodes (from the
// lab's underlay host <prefix>-ctl); the external host on the underlay
// (netlab.ExternalHost) sees the sources and captures every packet.

// eipCIDR holds the egress IPs of these tests: on the underlay, below the
// ctl host (.250) and the external host (.254), above the nodes' .11 … .13.
const eipCIDR = "198.18.0.64/27"

// eipAddr is the i-th egress IP (198.18.0.65 …).
func eipAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(64 + i)}) }

// eipLab is a lab with an external host.
type eipLab struct {
	l   *lab.Lab
	ext *netlab.ExternalHost
}

// newEIPLab uses the lab's own external host (lab.Lab.Ext, the outside world).
func newEIPLab(l *lab.Lab) (*eipLab, error) {
	if l.Ext == nil {
		return nil, fmt.Errorf("the lab has no external host")
	}
	return &eipLab{l: l, ext: l.Ext}, nil
}

// setEgressCIDRs makes node an automatic egress node for cidrs.
func (e *eipLab) setEgressCIDRs(ctx context.Context, node string, cidrs ...string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		hs, err := e.l.Network.NetworkV1().HostSubnets().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		hs.EgressCIDRs = nil
		for _, c := range cidrs {
			hs.EgressCIDRs = append(hs.EgressCIDRs, networkv1.HostSubnetEgressCIDR(c))
		}
		_, err = e.l.Network.NetworkV1().HostSubnets().Update(ctx, hs, metav1.UpdateOptions{})
		return err
	})
}

// setNamespaceEgressIPs sets the egress IPs NetNamespace ns requests.
func (e *eipLab) setNamespaceEgressIPs(ctx context.Context, ns string, ips ...netip.Addr) error {
	if _, err := e.l.WaitNetNamespaces(ctx, ns); err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		nn, err := e.l.Network.NetworkV1().NetNamespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return err
		}
		nn.EgressIPs = nil
		for _, ip := range ips {
			nn.EgressIPs = append(nn.EgressIPs, networkv1.NetNamespaceEgressIP(ip.String()))
		}
		_, err = e.l.Network.NetworkV1().NetNamespaces().Update(ctx, nn, metav1.UpdateOptions{})
		return err
	})
}

// assignment is every node's HostSubnet.egressIPs (sorted) and whether the
// controller marked it unreachable.
type assignment struct {
	ips         map[string][]netip.Addr
	unreachable map[string]bool
}

func (e *eipLab) assignment(ctx context.Context) (assignment, error) {
	a := assignment{ips: map[string][]netip.Addr{}, unreachable: map[string]bool{}}
	list, err := e.l.Network.NetworkV1().HostSubnets().List(ctx, metav1.ListOptions{})
	if err != nil {
		return a, err
	}
	for _, hs := range list.Items {
		for _, s := range hs.EgressIPs {
			ip, err := netip.ParseAddr(string(s))
			if err != nil {
				return a, fmt.Errorf("HostSubnet %s egressIPs: %w", hs.Name, err)
			}
			a.ips[hs.Name] = append(a.ips[hs.Name], ip)
		}
		slices.SortFunc(a.ips[hs.Name], netip.Addr.Compare)
		_, a.unreachable[hs.Name] = hs.Annotations[networkv1.EgressUnreachableAnnotation]
	}
	return a, nil
}

// holder returns the node whose egressIPs list ip ("" if none).
func (a assignment) holder(ip netip.Addr) string {
	var nodes []string
	for n, ips := range a.ips {
		if slices.Contains(ips, ip) {
			nodes = append(nodes, n)
		}
	}
	sort.Strings(nodes)
	if len(nodes) == 0 {
		return ""
	}
	return nodes[0]
}

func (a assignment) String() string {
	var nodes []string
	for n := range a.ips {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	s := ""
	for _, n := range nodes {
		s += fmt.Sprintf("%s%v", n, a.ips[n])
		if a.unreachable[n] {
			s += "(unreachable)"
		}
		s += " "
	}
	return s
}

// waitAssignment polls the HostSubnets until ok holds; it returns the last
// assignment seen either way.
func (e *eipLab) waitAssignment(ctx context.Context, within time.Duration, ok func(assignment) bool) (assignment, error) {
	var last assignment
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		a, err := e.assignment(ctx)
		if err != nil {
			return false, nil
		}
		last = a
		return ok(a), nil
	})
	if err != nil {
		return last, fmt.Errorf("egress IP assignment is %v after %v: %w", last, within, err)
	}
	return last, nil
}

// podNetNS is the netns of a running lab pod on node.
func (e *eipLab) podNetNS(node string, key types.NamespacedName) (netlab.NetNS, error) {
	n := e.l.Node(node)
	if n == nil {
		return netlab.NetNS{}, fmt.Errorf("no node %s", node)
	}
	p := n.Kubelet.PodNetNS(key)
	if p == "" {
		return netlab.NetNS{}, fmt.Errorf("pod %s is not running on %s", key, node)
	}
	return netlab.NetNS{Name: filepath.Base(p), Path: p}, nil
}

// sourceSeen connects from ns to the external host's first TCP service and
// returns the client address the host saw.
func (e *eipLab) sourceSeen(ns netlab.NetNS, timeout time.Duration) (netip.Addr, error) {
	seen, err := ns.TCPHello(e.ext.Service(0, 80), timeout)
	if err != nil {
		return netip.Addr{}, err
	}
	ap, err := netip.ParseAddrPort(seen)
	return ap.Addr(), err
}

// waitSource waits until the external host sees ns's connections with
// source want.
func (e *eipLab) waitSource(ns netlab.NetNS, want netip.Addr, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		got, err := e.sourceSeen(ns, 500*time.Millisecond)
		if err == nil && got == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s → external host: source %v (err %v) after %v, want %v", ns.Name, got, err, within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setUnderlay cuts (up=false) or restores node's link to the underlay
// bridge: the node is lost for everything on the underlay, the controller's
// probes included, while its agent keeps its API connection (loopback).
func (e *eipLab) setUnderlay(node string, up bool) error {
	state := map[bool]string{true: "up", false: "down"}[up]
	_, err := e.l.Net.Underlay.Exec(context.Background(), "ip", "link", "set", "u-"+node, state)
	return err
}

// exchange is one datagram of a udpStream and its answer.
type exchange struct {
	pod  string
	sent time.Time
	src  netip.Addr // the source the external host saw; invalid if no answer
}

// udpStream sends a datagram from each pod to the external host's UDP echo
// service every gap, each from a new socket (a new 5-tuple, so it follows
// the current flows and group), until stop.
type udpStream struct {
	mu   sync.Mutex
	log  []exchange
	quit chan struct{}
	wg   sync.WaitGroup
}

func (e *eipLab) startStream(gap time.Duration, pods map[string]netlab.NetNS) *udpStream {
	s := &udpStream{quit: make(chan struct{})}
	for name, ns := range pods {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				select {
				case <-s.quit:
					return
				default:
				}
				x := exchange{pod: name, sent: time.Now()}
				if seen, err := ns.UDPHello(e.ext.Service(0, 5353), 100*time.Millisecond); err == nil {
					if ap, err := netip.ParseAddrPort(seen); err == nil {
						x.src = ap.Addr()
					}
				}
				s.mu.Lock()
				s.log = append(s.log, x)
				s.mu.Unlock()
				time.Sleep(gap)
			}
		}()
	}
	return s
}

func (s *udpStream) stop() []exchange {
	close(s.quit)
	s.wg.Wait()
	return s.log
}

// recovered returns, per pod, the time from t0 to the first datagram sent
// after t0 that was answered with source want, and the largest of them;
// ok is false if some pod never got there.
func recovered(log []exchange, t0 time.Time, want netip.Addr) (worst time.Duration, per map[string]time.Duration, ok bool) {
	per = map[string]time.Duration{}
	pods := map[string]bool{}
	for _, x := range log {
		pods[x.pod] = true
		if x.sent.Before(t0) || x.src != want {
			continue
		}
		if d, seen := per[x.pod]; !seen || x.sent.Sub(t0) < d {
			per[x.pod] = x.sent.Sub(t0)
		}
	}
	for p := range pods {
		d, seen := per[p]
		if !seen {
			return 0, per, false
		}
		worst = max(worst, d)
	}
	return worst, per, true
}

// wrongSources returns the packets to port that reached the external host
// since mark with a source other than want.
func (e *eipLab) wrongSources(mark int, port uint16, want netip.Addr) (wrong []netlab.Packet, total int) {
	for _, p := range e.ext.Packets.Since(mark) {
		if p.Dst.Port() != port {
			continue
		}
		total++
		if p.Src.Addr() != want {
			wrong = append(wrong, p)
		}
	}
	return wrong, total
}
