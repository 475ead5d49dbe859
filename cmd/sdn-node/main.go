// Command sdn-node is the ovs-sdn node agent: it sets up br0, tun0 and the
// node's iptables and keeps the OpenFlow pipeline in sync with HostSubnets,
// NetNamespaces and the pod ports in OVSDB. See pkg/node.
//
// It exits non-zero with a message when ClusterNetwork "default" is invalid
// or the node's HostSubnet does not appear (or loses a conflict with an
// older one) within about three minutes. While the API server is
// unreachable it waits for it, logging the reason every 30 s (its API
// clients hold reads until the server is ready: pkg/apigate).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni"
	"github.com/ovs-sdn/ovs-sdn/pkg/dnsresolver"
	"github.com/ovs-sdn/ovs-sdn/pkg/kubeconfig"
	"github.com/ovs-sdn/ovs-sdn/pkg/node"
	"github.com/ovs-sdn/ovs-sdn/pkg/pipeline"
	"github.com/ovs-sdn/ovs-sdn/pkg/probes"
	"strconv"
	"strings"
)

// flags are the command-line settings, completed into node.Config.
type flags struct {
	kubeconfig     string
	nodeName       string
	nodeIP         string
	ovsdb          string
	ofctlTarget    string
	transport      string
	datapathType   string
	underlayBridge string
	proxyMode      string
	nodePortRange  string
	fullSyncPeriod time.Duration
	healthPeriod   time.Duration
	metricsAddress string
	cniSocket      string
	cniStateDir    string
	cniConfDir     string
	hostNetNS      string
	dnsServers     []string
	resolvConf     string
}

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sdn-node:", err)
		klog.Flush()
		os.Exit(1)
	}
}

func newCommand() *cobra.Command { return newCommandFor(&flags{}) }

// newCommandFor builds the command around f, which parsing fills.
func newCommandFor(f *flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:           "sdn-node",
		Short:         "Run the ovs-sdn node agent (br0 pipeline, tun0, iptables)",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return f.run(ctx, cfg)
		},
	}
	hostname, _ := os.Hostname()
	fs := cmd.Flags()
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, else in-cluster configuration)")
	fs.StringVar(&f.nodeName, "node-name", hostname, "name of this node (and of its HostSubnet)")
	fs.StringVar(&f.nodeIP, "node-ip", "", "IPv4 underlay address of this node (the HostSubnet's hostIP); required")
	fs.StringVar(&f.ovsdb, "ovsdb", node.DefaultOVSDBEndpoint, "OVSDB endpoint")
	fs.StringVar(&f.ofctlTarget, "ofctl-target", pipeline.BridgeName, `ovs-ofctl target of br0: "br0" or "unix:<rundir>/br0.mgmt"`)
	fs.StringVar(&f.transport, "openflow-transport", node.TransportOpenFlow, `how the agent speaks OpenFlow to br0: "openflow" (one persistent OpenFlow 1.3 connection to br0's management socket) or "ofctl" (an ovs-ofctl process per operation)`)
	fs.StringVar(&f.datapathType, "datapath-type", "system", "datapath type of br0: system (kernel module) or netdev (userspace)")
	fs.StringVar(&f.underlayBridge, "underlay-bridge", "", "netdev only: the OVS bridge whose internal port holds the node IP (e.g. br-phy), for which the agent keeps ovs-vswitchd's tunnel neighbours (empty: the device the host routes each remote node through)")
	fs.StringVar(&f.proxyMode, "proxy-mode", string(pipeline.ProxyOVS), "how Services are load-balanced: ovs (in br0; required with --datapath-type=netdev) or kube-proxy (service traffic to tun0 for kube-proxy, kernel datapath only)")
	fs.StringVar(&f.nodePortRange, "service-node-port-range", "30000-32767", "node port range of the cluster (kube-apiserver's --service-node-port-range); proxy mode ovs redirects it into br0")
	fs.DurationVar(&f.fullSyncPeriod, "full-sync-period", node.DefaultFullSyncPeriod, "period of the full flow sync that repairs out-of-band edits")
	fs.DurationVar(&f.healthPeriod, "health-check-period", node.DefaultHealthCheckPeriod, "how often br0's version flow is checked to detect an ovs-vswitchd restart")
	fs.StringVar(&f.metricsAddress, "metrics-bind-address", "127.0.0.1:29101", "address serving /metrics, /healthz and /readyz (empty disables)")
	fs.StringVar(&f.cniSocket, "cni-socket", cni.DefaultSocketPath, "unix socket of the agent's CNI server, which the ovs-sdn plugin calls (empty disables the CNI server)")
	fs.StringVar(&f.cniStateDir, "cni-state-dir", cni.DefaultStateDir, "directory of the pod IP leases (<dir>/ovs-sdn/); must survive agent restarts")
	fs.StringVar(&f.hostNetNS, "host-netns", "", "path of the network namespace holding ovs-vswitchd, tun0 and the node's routes, when sdn-node runs outside it (sdn-lab, tests); empty: sdn-node's own")
	fs.StringSliceVar(&f.dnsServers, "dns-server", nil, "DNS server (IP or IP:port, repeatable) that resolves the dnsName rules of EgressNetworkPolicies; default: the nameservers of --resolv-conf. With --host-netns the queries leave from that namespace")
	fs.StringVar(&f.resolvConf, "resolv-conf", dnsresolver.DefaultResolvConf, "resolv.conf whose nameservers resolve EgressNetworkPolicy dnsNames when no --dns-server is given")
	fs.StringVar(&f.cniConfDir, "cni-conf-dir", "/etc/cni/net.d", "CNI config directory the agent writes "+cni.ConflistName+" into once ready (empty: not written)")
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	return cmd
}

// config validates the flags that need no cluster access.
func (f *flags) config() (node.Config, error) {
	ip, err := netip.ParseAddr(f.nodeIP)
	if err != nil || !ip.Is4() {
		return node.Config{}, fmt.Errorf("--node-ip %q: an IPv4 address is required", f.nodeIP)
	}
	if f.nodeName == "" {
		return node.Config{}, errors.New("--node-name is required")
	}
	if f.datapathType != "system" && f.datapathType != "netdev" {
		return node.Config{}, fmt.Errorf("--datapath-type %q: must be system or netdev", f.datapathType)
	}
	if f.underlayBridge != "" && f.datapathType != "netdev" {
		return node.Config{}, fmt.Errorf("--underlay-bridge %q: only for --datapath-type=netdev (the kernel datapath resolves tunnel neighbours itself)", f.underlayBridge)
	}
	if f.transport != node.TransportOpenFlow && f.transport != node.TransportOfctl {
		return node.Config{}, fmt.Errorf("--openflow-transport %q: must be %s or %s", f.transport, node.TransportOpenFlow, node.TransportOfctl)
	}
	mode := pipeline.ProxyMode(f.proxyMode)
	if mode != pipeline.ProxyOVS && mode != pipeline.ProxyKubeProxy {
		return node.Config{}, fmt.Errorf("--proxy-mode %q: must be ovs or kube-proxy", f.proxyMode)
	}
	if mode == pipeline.ProxyKubeProxy && f.datapathType == "netdev" {
		return node.Config{}, errors.New("--proxy-mode=kube-proxy needs --datapath-type=system: kube-proxy cannot un-NAT replies tracked by the userspace datapath's own conntrack")
	}
	ports, err := parsePortRange(f.nodePortRange)
	if err != nil {
		return node.Config{}, fmt.Errorf("--service-node-port-range %q: %w", f.nodePortRange, err)
	}
	if f.fullSyncPeriod <= 0 {
		return node.Config{}, fmt.Errorf("--full-sync-period %s: must be positive", f.fullSyncPeriod)
	}
	if f.healthPeriod <= 0 {
		return node.Config{}, fmt.Errorf("--health-check-period %s: must be positive", f.healthPeriod)
	}
	for _, d := range []struct{ flag, path string }{{"--cni-socket", f.cniSocket}, {"--cni-state-dir", f.cniStateDir}, {"--cni-conf-dir", f.cniConfDir}, {"--host-netns", f.hostNetNS}} {
		if d.path != "" && !filepath.IsAbs(d.path) {
			return node.Config{}, fmt.Errorf("%s %q: an absolute path is required", d.flag, d.path)
		}
	}
	servers, err := parseDNSServers(f.dnsServers)
	if err != nil {
		return node.Config{}, err
	}
	return node.Config{NodeName: f.nodeName, NodeIP: ip, OVSDBEndpoint: f.ovsdb, OfctlTarget: f.ofctlTarget,
		Transport: f.transport, DatapathType: f.datapathType, UnderlayBridge: f.underlayBridge, ProxyMode: mode, NodePortRange: ports,
		FullSyncPeriod: f.fullSyncPeriod, HealthCheckPeriod: f.healthPeriod,
		CNISocketPath: f.cniSocket, CNIStateDir: f.cniStateDir, CNIConfDir: f.cniConfDir, HostNetNS: f.hostNetNS,
		DNSServers: servers, ResolvConf: f.resolvConf}, nil
}

// parseDNSServers reads --dns-server values: "IP" (port 53) or "IP:port".
func parseDNSServers(vals []string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, v := range vals {
		if a, err := netip.ParseAddr(v); err == nil {
			out = append(out, netip.AddrPortFrom(a, 53))
			continue
		}
		ap, err := netip.ParseAddrPort(v)
		if err != nil || ap.Port() == 0 {
			return nil, fmt.Errorf("--dns-server %q: want an IP address or IP:port", v)
		}
		out = append(out, ap)
	}
	return out, nil
}

// parsePortRange parses "FROM-TO" (inclusive, 1..65535).
func parsePortRange(s string) ([2]uint16, error) {
	from, to, ok := strings.Cut(s, "-")
	a, errA := strconv.ParseUint(from, 10, 16)
	b, errB := strconv.ParseUint(to, 10, 16)
	if !ok || errA != nil || errB != nil || a == 0 || a > b {
		return [2]uint16{}, errors.New("want FROM-TO with 1 <= FROM <= TO <= 65535")
	}
	return [2]uint16{uint16(a), uint16(b)}, nil
}

func (f *flags) run(ctx context.Context, cfg node.Config) error {
	defer klog.Flush()
	rc, err := kubeconfig.Load(f.kubeconfig)
	if err != nil {
		return err
	}
	rc.UserAgent = "sdn-node/" + cfg.NodeName
	if cfg.Network, cfg.Kube, err = node.NewClients(ctx, rc); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registry = reg
	agent, err := node.New(cfg)
	if err != nil {
		return err
	}
	if f.metricsAddress != "" {
		if _, err := probes.Serve(ctx, f.metricsAddress, reg, nil, func() error {
			if !agent.Ready() {
				return errors.New("br0 not synced")
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return agent.Run(ctx)
}
