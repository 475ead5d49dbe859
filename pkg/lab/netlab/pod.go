package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Pod is a test pod: a netns whose eth0 is a veth to an OVS port on the node's br0.
type Pod struct {
	Name     string
	Node     *Node
	NetNS    NetNS            // <prefix>-<node>-<pod>
	IP       netip.Prefix     // on eth0
	MAC      net.HardwareAddr // 0a:58:<IP octets>, as OpenShift SDN's CNI plugin sets it
	HostVeth string           // host end in the node netns, a port of br0
	OFPort   int
}

// PodOption configures AddTestPod.
type PodOption func(*podOptions)

type podOptions struct {
	routes      []netip.Prefix
	externalIDs map[string]string
}

// WithRoutes adds on-link routes (dev eth0) in the pod, e.g. the cluster CIDRs when the pod
// prefix does not cover them.
func WithRoutes(p ...netip.Prefix) PodOption {
	return func(o *podOptions) { o.routes = append(o.routes, p...) }
}

// WithExternalIDs sets extra external_ids on the pod's OVS Interface, in the same ovs-vsctl
// transaction that adds the port, e.g. the pod identity a node agent reads
// (k8s_pod_namespace, k8s_pod_name). A key given here overrides the default sandbox or ip.
func WithExternalIDs(ids map[string]string) PodOption {
	return func(o *podOptions) {
		if o.externalIDs == nil {
			o.externalIDs = map[string]string{}
		}
		for k, v := range ids {
			o.externalIDs[k] = v
		}
	}
}

// PodMAC is the MAC OpenShift SDN derives from a pod IPv4 address: 0a:58:<a>:<b>:<c>:<d>.
func PodMAC(ip netip.Addr) net.HardwareAddr {
	a := ip.As4()
	return net.HardwareAddr{0x0a, 0x58, a[0], a[1], a[2], a[3]}
}

// AddTestPod wires a pod the way the CNI plugin will, for tests that run before the CNI
// exists: netns <prefix>-<node>-<name>; a veth with the pod end eth0 (PodMAC, ip, mtu, default
// route via gw unless gw is invalid, optional on-link routes) and the host end in the node
// netns (mtu, up) added to br0 with external_ids sandbox=<pod netns name> and ip=<pod IP>
// (plus WithExternalIDs, e.g. the pod identity a node agent needs); TX offload off on both
// ends. br0 must exist. Not idempotent (a second call with the same name fails); on failure
// the partial pod is removed by Lab.Close (or Pod.Delete).
func (n *Node) AddTestPod(name string, ip netip.Prefix, gw netip.Addr, mtu int, opts ...PodOption) (*Pod, error) {
	if err := validPodName(name); err != nil {
		return nil, err
	}
	if !ip.Addr().Is4() {
		return nil, fmt.Errorf("pod %s: IPv4 address required, got %s", name, ip)
	}
	var o podOptions
	for _, f := range opts {
		f(&o)
	}
	p := &Pod{Name: name, Node: n, IP: ip, MAC: PodMAC(ip.Addr()),
		HostVeth: hostVethName(n.Name, name)}
	if err := n.registerPod(p); err != nil {
		return nil, err
	}
	if err := p.setup(gw, mtu, o); err != nil {
		return p, fmt.Errorf("add pod %s on node %s: %w", name, n.Name, err)
	}
	return p, nil
}

func (n *Node) registerPod(p *Pod) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pods[p.Name] != nil {
		return fmt.Errorf("add pod %s on node %s: exists", p.Name, n.Name)
	}
	n.pods[p.Name] = p
	return nil
}

func (p *Pod) setup(gw netip.Addr, mtu int, o podOptions) error {
	ns, err := p.Node.lab.newNetNS(p.Node.NetNS.Name + "-" + p.Name)
	p.NetNS = ns
	if err != nil {
		return err
	}
	if err := p.createVeth(mtu); err != nil {
		return err
	}
	if err := p.configureEth0(gw, o.routes); err != nil {
		return err
	}
	return p.plug(o.externalIDs)
}

// createVeth creates the pair in the node netns with the peer already in the pod netns.
func (p *Pod) createVeth(mtu int) error {
	m := strconv.Itoa(mtu)
	node := p.Node.NetNS
	if err := node.ip("link", "add", p.HostVeth, "mtu", m, "type", "veth",
		"peer", "name", podIfName, "mtu", m, "netns", p.NetNS.Name); err != nil {
		return fmt.Errorf("veth %s: %w", p.HostVeth, err)
	}
	if err := node.ip("link", "set", p.HostVeth, "up"); err != nil {
		return fmt.Errorf("veth %s up: %w", p.HostVeth, err)
	}
	if err := node.txOff(p.HostVeth); err != nil {
		return err
	}
	return p.NetNS.txOff(podIfName)
}

func (p *Pod) configureEth0(gw netip.Addr, routes []netip.Prefix) error {
	ns := p.NetNS
	if err := ns.ip("link", "set", podIfName, "address", p.MAC.String(), "up"); err != nil {
		return fmt.Errorf("pod eth0 up: %w", err)
	}
	if err := ns.ip("addr", "add", p.IP.String(), "dev", podIfName); err != nil {
		return fmt.Errorf("pod address: %w", err)
	}
	for _, r := range routes {
		if err := ns.ip("route", "replace", r.String(), "dev", podIfName); err != nil {
			return fmt.Errorf("pod route %s: %w", r, err)
		}
	}
	if gw.IsValid() {
		if err := ns.ip("route", "replace", "default", "via", gw.String(), "dev", podIfName); err != nil {
			return fmt.Errorf("pod default route via %s: %w", gw, err)
		}
	}
	return nil
}

// plug adds the host veth to br0 with its external_ids and reads its ofport.
func (p *Pod) plug(extra map[string]string) error {
	iface := p.HostVeth
	ids := map[string]string{"sandbox": p.NetNS.Name, "ip": p.IP.Addr().String()}
	for k, v := range extra {
		ids[k] = v
	}
	keys := make([]string, 0, len(ids))
	for k := range ids {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"--may-exist", "add-port", PodBridge, iface, "--", "set", "Interface", iface}
	for _, k := range keys {
		args = append(args, "external_ids:"+k+"="+strconv.Quote(ids[k]))
	}
	if _, err := p.Node.Vsctl(args...); err != nil {
		return fmt.Errorf("port %s on %s: %w", iface, PodBridge, err)
	}
	out, err := p.Node.Vsctl("get", "Interface", iface, "ofport")
	if err != nil {
		return fmt.Errorf("ofport of %s: %w", iface, err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || port <= 0 {
		return fmt.Errorf("ofport of %s: got %q", iface, strings.TrimSpace(out))
	}
	p.OFPort = port
	return nil
}

// Delete removes the pod's OVS port and netns (and with it the veth pair). Idempotent.
// Probe servers of the pod must be closed first, or the kernel keeps the netns alive.
func (p *Pod) Delete() error {
	_, err := p.Node.Vsctl("--if-exists", "del-port", PodBridge, p.HostVeth)
	if err != nil {
		return fmt.Errorf("delete pod %s: %w", p.Name, err)
	}
	if err := deleteNetNS(p.NetNS.Name); err != nil {
		return fmt.Errorf("delete pod %s: %w", p.Name, err)
	}
	p.Node.mu.Lock()
	delete(p.Node.pods, p.Name)
	p.Node.mu.Unlock()
	return nil
}

// Exec runs argv inside the pod netns and returns stdout.
func (p *Pod) Exec(ctx context.Context, argv ...string) (string, error) {
	return p.NetNS.Exec(ctx, argv...)
}

// Start runs a long-lived process in the pod netns (e.g. an iperf3 server), logging to the
// node's run dir; Lab.Close stops it.
func (p *Pod) Start(name string, argv ...string) (*Process, error) {
	log := filepath.Join(p.Node.RunDir, p.Name+"-"+name+".log")
	return p.Node.lab.startTracked(p.Node.Name+"/"+p.Name+"/"+name, p.NetNS, nil, log, argv...)
}
