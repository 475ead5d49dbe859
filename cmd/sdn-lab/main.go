// Command sdn-lab runs a cluster built from real components on this machine.
//
//	sdn-lab up [--nodes N] [--mode networkpolicy|multitenant|subnet] [--demo]
//	sdn-lab down
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/sdnctl"
)

var modes = map[string]string{
	"networkpolicy": networkv1.NetworkPolicyPluginName,
	"multitenant":   networkv1.MultiTenantPluginName,
	"subnet":        networkv1.SingleTenantPluginName,
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		fs := flag.NewFlagSet("down", flag.ExitOnError)
		dir := fs.String("state-dir", lab.DefaultStateDir, "state directory of the running lab")
		_ = fs.Parse(os.Args[2:])
		err = lab.Down(*dir, 30*time.Second)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sdn-lab:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sdn-lab up [--nodes N] [--mode networkpolicy|multitenant|subnet] [--demo] | sdn-lab down")
	os.Exit(2)
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	nodes := fs.Int("nodes", 3, "number of nodes")
	mode := fs.String("mode", "networkpolicy", "isolation mode: networkpolicy, multitenant or subnet")
	demo := fs.Bool("demo", false, "create the demo namespaces proj1 and proj2")
	dir := fs.String("state-dir", lab.DefaultStateDir, "state directory (data, logs, kubeconfig)")
	_ = fs.Parse(args)
	plugin, ok := modes[*mode]
	if !ok {
		return fmt.Errorf("--mode %q: must be networkpolicy, multitenant or subnet", *mode)
	}
	if *nodes < 1 || *nodes > 200 {
		return fmt.Errorf("--nodes %d: must be between 1 and 200", *nodes)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	fmt.Printf("sdn-lab: starting etcd, kube-apiserver, kube-controller-manager and sdn-controller (%s mode, %d nodes)…\n", *mode, *nodes)
	l, err := lab.Up(ctx, lab.Config{Nodes: *nodes, PluginName: plugin, StateDir: *dir, Demo: *demo, Out: os.Stdout})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("sdn-lab: tearing down")
		if err := l.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "sdn-lab: teardown:", err)
		}
	}()
	kc := l.Env.Kubeconfig
	for _, kind := range []string{"clusternetwork", "hostsubnets", "netnamespaces"} {
		fmt.Printf("\n$ sdnctl get %s\n", kind)
		sdnctl.Main(ctx, []string{"get", kind, "--kubeconfig", kc}, sdnctl.Options{Out: os.Stdout, ErrOut: os.Stderr})
	}
	fmt.Printf(`
The lab is up. In another shell:
  export KUBECONFIG=%s
  _output/bin/sdnctl get hostsubnets
  _output/bin/sdnctl get netnamespaces
  kubectl create namespace demo      # (kubectl if installed) a NetNamespace appears
This lab runs the control plane only: the node network namespaces with Open vSwitch,
the node agent, CNI and the NetworkPolicy demo are not part of it yet (see README).
Stop with Ctrl-C or 'sdn-lab down'.
`, kc)
	if *mode == "multitenant" {
		fmt.Println("Try: _output/bin/sdnctl pod-network join-projects --to=proj1 proj2 && _output/bin/sdnctl get netnamespaces")
	}
	<-ctx.Done()
	fmt.Println(strings.Repeat("-", 40))
	return nil
}
