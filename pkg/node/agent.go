// Package node is the node agent (sdn-node): it hosts the features that
// render br0's pipeline (pkg/pipeline renders, the features decide what and
// when: feature.go), keeps the desired flows by owner (FlowStore) and
// converges OVS, the tun0 gateway and iptables to them.
//
// # Sync model
//
// Informer and OVSDB handlers only mark keys of a feature dirty (a remote
// node, "the pod ports", a namespace) in one dirty queue; a render pass
// gives every feature, in order, the keys marked for it, and the changed
// owners are applied as one bundle (STYLE L8). The sync loop runs a pass
// and a sync whenever keys are marked; a CNI call runs one itself, so the
// pod's flows are in effect when it returns. Local pods are read from the
// pod ports of br0 in OVSDB, whose external_ids carry namespace, name and
// IP: OVSDB is persistent, so pods survive agent and OVS restarts with no
// other record. Nothing is applied before the informers have synced; the
// first apply is a full sync (replace-flows) that touches only differing
// flows, so restarting the agent does not disturb traffic. A periodic full
// sync repairs out-of-band edits; a missing version flow (ovs-vswitchd
// restarted) or a lost OVSDB connection (ovsdb-server restarted) triggers a
// rebuild of the bridge, tun0 and all flows.
package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned"
	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/iptables"
	"github.com/ovs-sdn/ovs-sdn/pkg/ovs"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/vnid"
	"net"
)

// Defaults of Config.
const (
	DefaultOVSDBEndpoint     = "unix:/var/run/openvswitch/db.sock"
	DefaultFullSyncPeriod    = 10 * time.Minute
	DefaultHealthCheckPeriod = 2 * time.Second
	DefaultIPTablesPeriod    = 30 * time.Second
)

// DefaultNodePortRange is kube-apiserver's default --service-node-port-range.
var DefaultNodePortRange = [2]uint16{30000, 32767}

// Config configures one node agent. NodeName, NodeIP and Network are
// required; every other zero field means its default.
type Config struct {
	NodeName string
	// NodeIP is the node's underlay address; the own HostSubnet is the one
	// whose hostIP equals it.
	NodeIP  netip.Addr
	Network versioned.Interface
	// OVSDBEndpoint is the ovsdb-server socket (DefaultOVSDBEndpoint).
	OVSDBEndpoint string
	// Dial connects to OVSDB (DialOVSDB); a seam for tests.
	Dial DialFunc
	// OfctlTarget is the ovs-ofctl target of br0: "br0" (default) or its
	// management socket "unix:<rundir>/br0.mgmt". Ignored if Bridge is set.
	OfctlTarget string
	// Bridge overrides the OpenFlow transport (tests).
	Bridge ovs.Bridge
	// DatapathType is "system" (default) or "netdev".
	DatapathType string
	// ProxyMode is how Services are load-balanced: pipeline.ProxyOVS
	// (default; br0, feature_services.go) or pipeline.ProxyKubeProxy
	// (service traffic to tun0 for kube-proxy; not possible on netdev,
	// whose conntrack the host's kube-proxy cannot see).
	ProxyMode pipeline.ProxyMode
	// NodePortRange is the Service node port range the host redirects to
	// br0 in proxy mode ovs (DefaultNodePortRange).
	NodePortRange [2]uint16
	// HostNetNS is the path of the network namespace holding tun0 and the
	// node's iptables ("" = the agent's own). Ignored if Host is set.
	HostNetNS string
	// Host overrides the kernel plumbing (tests).
	Host Host
	// IPTables overrides Host.IPTables() (tests).
	IPTables iptables.Interface
	// MasqueradeBit is kube-proxy's masquerade mark bit (see iptables.Config).
	MasqueradeBit int
	// FullSyncPeriod is the period of the repairing full sync.
	FullSyncPeriod time.Duration
	// HealthCheckPeriod is how often the version flow is checked to detect
	// an ovs-vswitchd restart (which loses every flow).
	HealthCheckPeriod time.Duration
	// IPTablesPeriod is how often the iptables canary is checked.
	IPTablesPeriod time.Duration
	// Registry receives the agent's metrics (nil: not registered).
	Registry prometheus.Registerer
	// Kube is the Kubernetes client for Pods, Namespaces, NetworkPolicies
	// and Events (feature_policy.go). In networkpolicy mode without it policies
	// are NOT enforced (all pod traffic allowed); other modes ignore it.
	Kube kubernetes.Interface
	// Recorder receives the agent's Events (nil: recorded through Kube).
	Recorder record.EventRecorder

	// CNI (cni_server.go). CNISocketPath enables the agent's CNI server on
	// that unix socket ("" = no CNI server); the host ends of pod veths go
	// into HostNetNS, where ovs-vswitchd runs. CNIStateDir holds the IP
	// leases (cni.DefaultStateDir). CNIConfDir, if set, receives the CNI
	// conflist once the agent is ready; it is removed when Run returns.
	CNISocketPath string
	CNIStateDir   string
	CNIConfDir    string
}

func (c *Config) complete() error {
	if c.NodeName == "" || !c.NodeIP.Is4() || c.Network == nil {
		return errors.New("node agent: NodeName, an IPv4 NodeIP and a Network client are required")
	}
	setDefault(&c.OVSDBEndpoint, DefaultOVSDBEndpoint)
	setDefault(&c.OfctlTarget, pipeline.BridgeName)
	setDefault(&c.DatapathType, "system")
	setDefault(&c.ProxyMode, pipeline.ProxyOVS)
	setDefault(&c.NodePortRange, DefaultNodePortRange)
	switch {
	case c.ProxyMode != pipeline.ProxyOVS && c.ProxyMode != pipeline.ProxyKubeProxy:
		return fmt.Errorf("node agent: proxy mode %q: must be %s or %s", c.ProxyMode, pipeline.ProxyOVS, pipeline.ProxyKubeProxy)
	case c.ProxyMode == pipeline.ProxyKubeProxy && c.DatapathType == "netdev":
		return fmt.Errorf("node agent: proxy mode %s needs the kernel datapath: kube-proxy cannot un-NAT replies the userspace datapath's conntrack tracks (use %s)",
			pipeline.ProxyKubeProxy, pipeline.ProxyOVS)
	case c.NodePortRange[0] == 0 || c.NodePortRange[0] > c.NodePortRange[1]:
		return fmt.Errorf("node agent: node port range %d-%d is empty", c.NodePortRange[0], c.NodePortRange[1])
	}
	setDefault(&c.FullSyncPeriod, DefaultFullSyncPeriod)
	setDefault(&c.HealthCheckPeriod, DefaultHealthCheckPeriod)
	setDefault(&c.IPTablesPeriod, DefaultIPTablesPeriod)
	if c.Dial == nil {
		c.Dial = DialOVSDB
	}
	if c.Host == nil {
		c.Host = NewHost(c.HostNetNS)
	}
	if c.Bridge == nil {
		c.Bridge = &ovs.OfctlBridge{Name: c.OfctlTarget}
	}
	if c.DatapathType == "netdev" {
		c.Bridge = newPurgingBridge(c.Bridge, ovsRunDir(c.OVSDBEndpoint))
	}
	return nil
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// Agent is one node agent. Create it with New and start it with Run.
type Agent struct {
	cfg   Config
	store *FlowStore
	m     *metrics
	br    ovs.Bridge
	ready atomic.Bool

	// Set by start before the first render; env.db is replaced on
	// reconnect under renderMu.
	env      *env
	features []feature
	cn       *clusternetwork.Config
	fc       pipeline.FlowConfig
	// renderMu serializes render passes (the sync loop's and the CNI
	// server's) and everything features own.
	renderMu sync.Mutex
}

// New validates cfg and returns an agent that has not started.
func New(cfg Config) (*Agent, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("node agent metrics: %w", err)
	}
	a := &Agent{cfg: cfg, store: NewFlowStore(), m: m, br: meteredBridge{cfg.Bridge, m}}
	a.env = &env{cfg: &a.cfg, m: m, store: a.store, queue: newDirtyQueue(), vnids: &vnid.Map{}, pods: &localPods{}}
	return a, nil
}

// Run runs the agent until ctx is done (then it returns nil) or start-up
// fails. Flows stay on br0 when it returns: the dataplane keeps working
// without the agent.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// Ready reports whether the agent has synced br0 at least once since start
// and is connected to OVSDB (for /readyz).
func (a *Agent) Ready() bool { return a.ready.Load() }

// Store returns the agent's flow store (read-only use: tests, debugging).
func (a *Agent) Store() *FlowStore { return a.store }

// Run starts the agent; see the package doc.
func (a *Agent) Run(ctx context.Context) error {
	stopCNI, err := a.startCNI(ctx)
	if err != nil {
		return err
	}
	defer stopCNI()
	if err := a.start(ctx); err != nil {
		return err
	}
	defer func() { a.env.db.Close() }()
	if err := a.announceCNI(); err != nil {
		return err
	}
	defer a.withdrawCNI()
	klog.InfoS("Node agent synced", "node", a.cfg.NodeName, "flows", a.store.Len())
	a.loop(ctx)
	return nil
}

func (a *Agent) start(ctx context.Context) error {
	if err := a.readConfig(ctx); err != nil {
		return err
	}
	if err := a.setupHost(ctx); err != nil {
		return err
	}
	if err := a.connectOVS(ctx); err != nil {
		return err
	}
	if err := a.startFeatures(ctx); err != nil {
		return err
	}
	if err := a.renderAll(ctx); err != nil {
		return err
	}
	if err := a.fullSync(ctx); err != nil {
		return fmt.Errorf("start-up full sync: %w", err)
	}
	a.ready.Store(true)
	return nil
}

// retryBackoff is OpenShift SDN's wait for the own HostSubnet: 1 s × 1.5,
// 11 steps, about 3 minutes in all.
var retryBackoff = wait.Backoff{Duration: time.Second, Factor: 1.5, Steps: 11}

// readConfig reads ClusterNetwork "default" and waits for the own
// HostSubnet, then derives the FlowConfig.
func (a *Agent) readConfig(ctx context.Context) error {
	var cn *networkv1.ClusterNetwork
	err := wait.ExponentialBackoffWithContext(ctx, retryBackoff, func(ctx context.Context) (bool, error) {
		var err error
		cn, err = a.cfg.Network.NetworkV1().ClusterNetworks().Get(ctx, networkv1.ClusterNetworkDefault, metav1.GetOptions{})
		return err == nil, ignoreNotFound(err)
	})
	if err != nil {
		return fmt.Errorf("read ClusterNetwork %q: %w", networkv1.ClusterNetworkDefault, err)
	}
	if a.cn, err = clusternetwork.Parse(cn); err != nil {
		return err
	}
	local, err := a.waitOwnSubnet(ctx)
	if err != nil {
		return err
	}
	a.fc = pipeline.FlowConfig{Mode: a.cn.Mode, ServiceNetwork: a.cn.ServiceNetwork, LocalSubnet: local,
		NodeIP: a.cfg.NodeIP, VXLANPort: a.cn.VXLANPort, ProxyMode: a.cfg.ProxyMode, Userspace: a.cfg.DatapathType == "netdev"}
	for _, n := range a.cn.ClusterNetworks {
		a.fc.ClusterNetworks = append(a.fc.ClusterNetworks, n.CIDR)
	}
	a.env.cn, a.env.fc, a.env.iso = a.cn, a.fc, a.fc.Isolation()
	klog.InfoS("Node network configuration", "clusterNetwork", a.cn.String(), "localSubnet", local)
	return nil
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// waitOwnSubnet waits for HostSubnet <NodeName> with hostIP == NodeIP and
// a subnet.
func (a *Agent) waitOwnSubnet(ctx context.Context) (netip.Prefix, error) {
	var local netip.Prefix
	var last string
	err := wait.ExponentialBackoffWithContext(ctx, retryBackoff, func(ctx context.Context) (bool, error) {
		hs, err := a.cfg.Network.NetworkV1().HostSubnets().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, ignoreNotFound(err)
		}
		if ip, err := netip.ParseAddr(hs.HostIP); err != nil || ip != a.cfg.NodeIP {
			last = fmt.Sprintf("hostIP %q is not the node IP %s", hs.HostIP, a.cfg.NodeIP)
			return false, nil
		}
		p, err := netip.ParsePrefix(hs.Subnet)
		if err != nil || !a.cn.ContainsNodeSubnet(p) {
			last = fmt.Sprintf("subnet %q is not a node subnet of the cluster network", hs.Subnet)
			return false, nil
		}
		local = p
		return true, nil
	})
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("wait for HostSubnet %s (last: %s): %w", a.cfg.NodeName, last, err)
	}
	return local, nil
}

// setupHost sets ip_forward and the iptables chains, and starts the
// iptables canary monitor.
func (a *Agent) setupHost(ctx context.Context) error {
	if err := a.cfg.Host.EnsureIPForward(); err != nil {
		return err
	}
	ipt := a.cfg.IPTables
	if ipt == nil {
		var err error
		if ipt, err = a.cfg.Host.IPTables(); err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
	}
	ic := iptables.Config{ClusterNetworks: a.fc.ClusterNetworks, VXLANPort: a.fc.VXLANPortOrDefault(),
		MasqueradeBit: a.cfg.MasqueradeBit, TunnelInterface: pipeline.Tun0}
	if a.fc.OVSProxy() {
		ic.Services = &iptables.ServicesConfig{ServiceNetwork: a.fc.ServiceNetwork, NodePortVIP: pipeline.NodePortVIP,
			NodePortRange: a.cfg.NodePortRange}
	}
	chains := iptables.NodeChains(ic)
	if err := iptables.Ensure(ipt, chains); err != nil {
		return fmt.Errorf("ensure iptables chains: %w", err)
	}
	a.env.ipt = ipt
	go iptables.Monitor(ctx, ipt, chains, a.cfg.IPTablesPeriod, func(err error) {
		klog.InfoS("iptables canary was gone; chains re-ensured", "err", err)
		a.env.queue.markAll(featureEgressIP) // its chain is the feature's
	})
	return nil
}

// connectOVS dials OVSDB and sets up br0, its ports and the tun0 gateway.
// It leaves flows alone.
func (a *Agent) connectOVS(ctx context.Context) error {
	db, err := a.cfg.Dial(ctx, a.cfg.OVSDBEndpoint)
	if err != nil {
		return fmt.Errorf("connect to OVSDB %s: %w", a.cfg.OVSDBEndpoint, err)
	}
	if err := a.setupOVS(ctx, db); err != nil {
		db.Close()
		return err
	}
	a.env.db = db
	db.OnPortChange(a.markPorts)
	return nil
}

func hwAddr(m ovs.MAC) net.HardwareAddr { return net.HardwareAddr(m[:]) }

func (a *Agent) setupOVS(ctx context.Context, db SwitchDB) error {
	if err := setupBridge(ctx, db, a.cfg.DatapathType, a.fc.VXLANPortOrDefault(), a.cn.MTU); err != nil {
		return err
	}
	gw := netip.PrefixFrom(a.fc.Gateway(), a.fc.LocalSubnet.Bits())
	routes := append([]netip.Prefix{}, a.fc.ClusterNetworks...)
	if !a.fc.OVSProxy() {
		routes = append(routes, a.fc.ServiceNetwork) // kube-proxy's DNAT follows
	}
	if err := a.cfg.Host.EnsureGateway(pipeline.Tun0, gw, hwAddr(a.fc.GatewayMAC()), routes, a.cn.MTU); err != nil {
		return fmt.Errorf("tun0 gateway: %w", err)
	}
	if a.fc.OVSProxy() {
		dsts := []netip.Prefix{a.fc.ServiceNetwork, netip.PrefixFrom(pipeline.NodePortVIP, 32)}
		if err := a.cfg.Host.EnsureServiceRoutes(pipeline.Tun0, pipeline.ServiceGatewayIP,
			hwAddr(pipeline.ServiceGatewayMAC), dsts, a.cn.MTU); err != nil {
			return fmt.Errorf("tun0 service routes: %w", err)
		}
	}
	return nil
}
