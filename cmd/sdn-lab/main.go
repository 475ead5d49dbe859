// Command sdn-lab runs a cluster network built from real components on this
// machine (see pkg/lab):
//
//	sdn-lab up [--nodes N] [--mode networkpolicy|multitenant|subnet] [--demo]
//	sdn-lab down
//	sdn-lab exec NODE -- CMD [ARG…]
//	sdn-lab trace SRC DST [--port P] [--protocol tcp|udp|sctp]
//
// up stays in the foreground — every lab component runs in its process —
// until Ctrl-C, SIGTERM or `sdn-lab down`, then tears everything down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/sdnctl"
)

var modes = map[string]string{
	"networkpolicy": networkv1.NetworkPolicyPluginName,
	"multitenant":   networkv1.MultiTenantPluginName,
	"subnet":        networkv1.SingleTenantPluginName,
}

const usageText = `usage:
  sdn-lab up [--nodes N] [--mode networkpolicy|multitenant|subnet] [--runtime stand-in|containerd] [--demo] [--state-dir DIR] [--prefix P]
  sdn-lab down [--state-dir DIR]
  sdn-lab exec [--state-dir DIR] NODE -- CMD [ARG...]
  sdn-lab trace [--state-dir DIR] SRC DST [--port P] [--protocol tcp|udp|sctp]
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usageText)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		fs := flag.NewFlagSet("down", flag.ExitOnError)
		dir := fs.String("state-dir", lab.DefaultStateDir, "state directory of the running lab")
		_ = fs.Parse(os.Args[2:])
		err = lab.Down(*dir, time.Minute)
	case "exec":
		var code int
		code, err = execCmd(os.Args[2:])
		if err == nil {
			os.Exit(code)
		}
	case "trace":
		var code int
		code, err = traceCmd(os.Args[2:])
		if err == nil {
			os.Exit(code)
		}
	default:
		fmt.Fprint(os.Stderr, usageText)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sdn-lab:", err)
		os.Exit(1)
	}
}

type upFlags struct {
	nodes      int
	mode, dir  string
	prefix     string
	runtime    string
	demo       bool
	pluginName string
}

func (f *upFlags) parse(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	fs.IntVar(&f.nodes, "nodes", 3, "number of nodes")
	fs.StringVar(&f.mode, "mode", "networkpolicy", "isolation mode: networkpolicy, multitenant or subnet")
	fs.BoolVar(&f.demo, "demo", false, "run the demo of seeds/003: proj1/proj2, pods, policies, reachability matrix")
	fs.StringVar(&f.dir, "state-dir", lab.DefaultStateDir, "state directory (data, logs, kubeconfig, OVS sockets)")
	fs.StringVar(&f.prefix, "prefix", lab.DefaultPrefix, "name prefix of the lab's network namespaces")
	fs.StringVar(&f.runtime, "runtime", lab.RuntimeStandIn, "what runs the pods: stand-in (the lab's kubelet stand-in, agents as lab processes) "+
		"or containerd (real nodes: containerd, runc and kubelet per node; ovs-sdn installed from manifests/)")
	_ = fs.Parse(args)
	var ok bool
	if f.pluginName, ok = modes[f.mode]; !ok {
		return fmt.Errorf("--mode %q: must be networkpolicy, multitenant or subnet", f.mode)
	}
	if f.runtime != lab.RuntimeStandIn && f.runtime != lab.RuntimeContainerd {
		return fmt.Errorf("--runtime %q: must be %s or %s", f.runtime, lab.RuntimeStandIn, lab.RuntimeContainerd)
	}
	if f.nodes < 1 || f.nodes > lab.MaxNodes {
		return fmt.Errorf("--nodes %d: must be between 1 and %d", f.nodes, lab.MaxNodes)
	}
	return nil
}

func up(args []string) error {
	var f upFlags
	if err := f.parse(args); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("up needs root (network namespaces, Open vSwitch, iptables)")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	logFile, err := logToFile(f.dir)
	if err != nil {
		return err
	}
	defer logFile.Close()
	fmt.Printf("sdn-lab: %s mode, %d nodes (%s), state in %s (component logs: %s)\n", f.mode, f.nodes, f.runtime, f.dir, logFile.Name())
	l, err := lab.Up(ctx, lab.Config{Nodes: f.nodes, PluginName: f.pluginName, StateDir: f.dir, Prefix: f.prefix,
		Runtime: f.runtime, Out: os.Stdout})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("\nsdn-lab: tearing down")
		if err := l.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "sdn-lab: teardown:", err)
		} else {
			fmt.Println("sdn-lab: down; nothing left behind")
		}
	}()
	show(ctx, l, "hostsubnets")
	if f.demo {
		if _, err := l.RunDemo(ctx, os.Stdout); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("demo: %w", err)
		}
	}
	dnsFile, err := l.WatchDNSFile(ctx)
	if err != nil {
		return err
	}
	printHelp(os.Stdout, l, f, dnsFile)
	<-ctx.Done()
	return nil
}

// logToFile sends klog (agents, controller, kubelets) to a file beside the
// state dir, so the terminal shows the lab's story, not its logs. The file
// outlives the lab for post-mortems.
func logToFile(dir string) (*os.File, error) {
	path := filepath.Clean(dir) + ".log"
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("alsologtostderr", "false")
	_ = fs.Set("stderrthreshold", "FATAL")
	klog.SetOutput(f)
	return f, nil
}

func show(ctx context.Context, l *lab.Lab, kind string) {
	fmt.Printf("\n$ sdnctl get %s\n", kind)
	clients, err := sdnctl.ClientsFromKubeconfig(l.Kubeconfig())
	if err == nil {
		err = sdnctl.GetTable(ctx, clients, kind, os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
	}
}

func printHelp(w io.Writer, l *lab.Lab, f upFlags, dnsFile string) {
	self, _ := os.Executable()
	bin := filepath.Dir(self)
	sd := ""
	if f.dir != lab.DefaultStateDir {
		sd = " --state-dir " + f.dir
	}
	fmt.Fprintf(w, `
The lab is up. In another shell:
  export KUBECONFIG=%[1]s
  kubectl get nodes,pods -A -o wide
  kubectl get networkpolicies -A
  %[2]s/sdnctl get netnamespaces
  %[2]s/sdn-lab exec%[3]s node1 -- ovs-ofctl -O OpenFlow13 dump-flows br0 table=80
  %[2]s/sdn-lab exec%[3]s node1 -- sdnctl flows --table 80     # flows by owner, with table names
  %[2]s/sdn-lab exec%[3]s node2 -- ip addr                     # anything, inside node2's netns
`, l.Kubeconfig(), bin, sd)
	if f.runtime == lab.RuntimeContainerd {
		fmt.Fprintf(w, `  kubectl -n ovs-sdn get daemonset,deployment,pods -o wide     # ovs-sdn as installed from manifests/
  kubectl -n ovs-sdn logs daemonset/sdn-node                   # the agent's log
  kubectl exec -it POD -- sh                                   # a shell in any pod (agnhost images)
  %[1]s/sdn-lab exec%[2]s node1 -- crictl ps                   # node1's containers (also crictl pods, logs, exec)
`, bin, sd)
	}
	if f.demo && f.mode == "networkpolicy" {
		fmt.Fprintln(w, "  kubectl -n proj2 delete networkpolicy allow-from-proj1-client1   # and watch proj1 lose server2")
		fmt.Fprintf(w, "try: %s/sdn-lab trace%s proj1/client3 proj1/server1 --port 8080   # dropped: which table, which policies isolate server1\n", bin, sd)
		fmt.Fprintf(w, "     %s/sdn-lab trace%s proj1/client1 proj1/server1 --port 8080   # delivered: the allowing policy and rule\n", bin, sd)
	} else if f.demo {
		fmt.Fprintf(w, "try: %s/sdn-lab trace%s proj1/client3 proj2/server2 --port 8080   # ofproto/trace on both nodes, explained\n", bin, sd)
	}
	if f.mode == "multitenant" {
		fmt.Fprintf(w, "  %s/sdnctl pod-network join-projects --to=proj1 proj2\n", bin)
	}
	printOutsideHelp(w, l, f, dnsFile)
	fmt.Fprintf(w, "Stop with Ctrl-C here or '%s/sdn-lab down%s'.\n", bin, sd)
}

// printOutsideHelp tells how to use the external host, the DNS server and
// the egress firewall.
func printOutsideHelp(w io.Writer, l *lab.Lab, f upFlags, dnsFile string) {
	self, _ := os.Executable()
	bin := filepath.Dir(self)
	sd := ""
	if f.dir != lab.DefaultStateDir {
		sd = " --state-dir " + f.dir
	}
	fmt.Fprintf(w, "Outside world: external host %s (203.0.113.1-16: TCP 80/443, UDP 53/5353), DNS %s (zone %s)\n",
		l.Ext.IP.Addr(), lab.DNSAddr, lab.DNSZone)
	fmt.Fprintf(w, "  DNS records: edit %s (reloaded within a second; A and CNAME, per-record TTL)\n", dnsFile)
	if f.mode != "subnet" {
		fmt.Fprintf(w, "  %s/sdn-lab exec%s node1 -- sdnctl flows --egress-firewall proj1   # EgressNetworkPolicy flows with their rules\n", bin, sd)
		if f.demo {
			fmt.Fprintf(w, "  %s/sdn-lab trace%s proj1/client1 203.0.113.9 --port 80   # which EgressNetworkPolicy rule decides\n", bin, sd)
		}
	}
}
