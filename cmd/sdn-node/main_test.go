package main

import (
	"strings"
	"testing"
)

func TestFlagValidation(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--node-name=n1"}, "--node-ip"},
		{[]string{"--node-name=n1", "--node-ip=fd00::1"}, "IPv4"},
		{[]string{"--node-name=n1", "--node-ip=10.0.0.1", "--datapath-type=dpdk"}, "--datapath-type"},
		{[]string{"--node-name=n1", "--node-ip=10.0.0.1", "--full-sync-period=0s"}, "--full-sync-period"},
		{[]string{"--node-name=n1", "--node-ip=10.0.0.1", "--cni-socket=run/cni.sock"}, "--cni-socket"},
		{[]string{"--node-name=n1", "--node-ip=10.0.0.1", "--cni-conf-dir=net.d"}, "--cni-conf-dir"},
		{[]string{"--node-name=n1", "--node-ip=10.0.0.1", "--underlay-bridge=br-phy"}, "--underlay-bridge"},
		{[]string{"--node-name=n1", "--node-ip=10.0.0.1", "--openflow-transport=grpc"}, "--openflow-transport"},
		{[]string{"--node-name=n1", "--node-ip=10.0.0.1", "--proxy-mode=iptables"}, "--proxy-mode"},
		{[]string{"--node-name=n1", "--node-ip=10.0.0.1", "--datapath-type=netdev", "--proxy-mode=kube-proxy"}, "--datapath-type=system"},
		{[]string{"--node-name=n1", "--node-ip=10.0.0.1", "--service-node-port-range=32767-30000"}, "--service-node-port-range"},
		{[]string{"--node-name=n1", "--node-ip=10.0.0.1", "--service-node-port-range=30000"}, "--service-node-port-range"},
		{[]string{"--node-name=n1", "--node-ip=10.0.0.1", "--datapath-type=netdev"}, ""},
		{[]string{"--node-name=n1", "--node-ip=10.0.0.1", "--datapath-type=netdev", "--underlay-bridge=br-phy"}, ""},
	}
	for _, tt := range tests {
		f := &flags{}
		if err := newCommandFor(f).ParseFlags(tt.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%v: %v", tt.args, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%v: error %v, want %q", tt.args, err, tt.wantErr)
		case tt.wantErr == "" && (cfg.DatapathType != "netdev" || cfg.NodeName != "n1" || cfg.NodeIP.String() != "10.0.0.1" ||
			cfg.Transport != "openflow" || cfg.ProxyMode != "ovs" || cfg.NodePortRange != [2]uint16{30000, 32767}):
			t.Errorf("%v: config %+v", tt.args, cfg)
		case tt.wantErr == "" && (cfg.CNISocketPath != "/var/run/ovs-sdn/cni-server.sock" ||
			cfg.CNIStateDir != "/var/lib/cni/networks" || cfg.CNIConfDir != "/etc/cni/net.d"):
			t.Errorf("%v: CNI defaults %q %q %q", tt.args, cfg.CNISocketPath, cfg.CNIStateDir, cfg.CNIConfDir)
		}
	}
}

func TestDNSServerFlags(t *testing.T) {
	f := &flags{}
	if err := newCommandFor(f).ParseFlags([]string{"--node-name=n1", "--node-ip=10.0.0.1", "--dns-server=203.0.113.53", "--dns-server=198.18.0.254:5353"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.DNSServers) != 2 || cfg.DNSServers[0].String() != "203.0.113.53:53" || cfg.DNSServers[1].String() != "198.18.0.254:5353" || cfg.ResolvConf != "/etc/resolv.conf" {
		t.Errorf("DNS config %v %q", cfg.DNSServers, cfg.ResolvConf)
	}
	for _, bad := range []string{"dns.example", "203.0.113.53:0", "203.0.113.53:x"} {
		f := &flags{}
		if err := newCommandFor(f).ParseFlags([]string{"--node-name=n1", "--node-ip=10.0.0.1", "--dns-server=" + bad}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.config(); err == nil || !strings.Contains(err.Error(), "--dns-server") {
			t.Errorf("--dns-server=%s: %v", bad, err)
		}
	}
}
