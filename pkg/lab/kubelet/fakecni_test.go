package kubelet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// fakeCNIType is the plugin type of the fake: the test binary, symlinked into the CNI bin
// dir under this name, runs as the plugin when exec'd by that name.
const fakeCNIType = "fake-cni"

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == fakeCNIType {
		skel.PluginMainFuncs(skel.CNIFuncs{Add: fakeAdd, Del: fakeDel, Check: func(*skel.CmdArgs) error { return nil }},
			version.All, "kubelet test fake CNI plugin")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeConf is the fake's netconf: pods get a veth into the hub netns, plugged into its
// bridge br0, and 10.99.0.<n>/24 from a counter kept as files in State.
type fakeConf struct {
	types.PluginConf
	Hub   string `json:"hub"`   // netns path
	State string `json:"state"` // dir: ip-<n> leases, fail-<pod> markers, calls.log
	// RuntimeConfig is what libcni injects for the capabilities the conflist declares.
	RuntimeConfig struct {
		PortMappings json.RawMessage `json:"portMappings,omitempty"`
	} `json:"runtimeConfig"`
}

const fakeSubnet = "10.99.0"

func parseFake(args *skel.CmdArgs) (*fakeConf, string, error) {
	var c fakeConf
	if err := json.Unmarshal(args.StdinData, &c); err != nil {
		return nil, "", err
	}
	var pod string
	for _, kv := range strings.Split(args.Args, ";") {
		if v, ok := strings.CutPrefix(kv, "K8S_POD_NAME="); ok {
			pod = v
		}
	}
	return &c, pod, nil
}

// logCall appends "<CMD> <container id> <pod> <netns> portMappings=<JSON>" to calls.log.
func (c *fakeConf) logCall(cmd string, args *skel.CmdArgs, pod string) {
	f, err := os.OpenFile(filepath.Join(c.State, "calls.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		fmt.Fprintf(f, "%s %s %s %s portMappings=%s\n", cmd, args.ContainerID, pod, args.Netns, c.RuntimeConfig.PortMappings)
		f.Close()
	}
}

func fakeHostVeth(id string) string {
	s := sha256.Sum256([]byte(id))
	return "fk" + hex.EncodeToString(s[:])[:10]
}

func fakeAdd(args *skel.CmdArgs) error {
	c, pod, err := parseFake(args)
	if err != nil {
		return err
	}
	c.logCall("ADD", args, pod)
	if _, err := os.Stat(filepath.Join(c.State, "fail-"+pod)); err == nil {
		return fmt.Errorf("fake-cni: ADD refused for pod %s (marker file)", pod)
	}
	n, err := fakeLease(c.State, args.ContainerID)
	if err != nil {
		return err
	}
	addr := &net.IPNet{IP: net.ParseIP(fmt.Sprintf("%s.%d", fakeSubnet, n)).To4(), Mask: net.CIDRMask(24, 32)}
	if err := fakePlumb(c.Hub, args.Netns, fakeHostVeth(args.ContainerID), addr); err != nil {
		return err
	}
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: args.IfName, Sandbox: args.Netns}},
		IPs:        []*current.IPConfig{{Address: *addr, Interface: current.Int(0)}}}
	return types.PrintResult(res, c.CNIVersion)
}

// fakeLease returns the lease of id or takes the lowest free one (O_EXCL makes parallel
// ADDs safe).
func fakeLease(dir, id string) (int, error) {
	for n := 2; n < 255; n++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("ip-%d", n)))
		if err == nil && string(b) == id {
			return n, nil
		}
	}
	for n := 2; n < 255; n++ {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("ip-%d", n)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		_, err = f.WriteString(id)
		f.Close()
		return n, err
	}
	return 0, errors.New("fake-cni: no free address")
}

func fakePlumb(hubPath, podPath, hostVeth string, addr *net.IPNet) error {
	hub, err := ns.GetNS(hubPath)
	if err != nil {
		return err
	}
	defer hub.Close()
	err = ns.WithNetNSPath(podPath, func(ns.NetNS) error {
		if _, err := netlinksafe.LinkByName("eth0"); err != nil {
			if _, _, err := ip.SetupVethWithName("eth0", hostVeth, 1500, "", hub); err != nil {
				return err
			}
		}
		l, err := netlinksafe.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: addr}); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		return fmt.Errorf("fake-cni: pod side: %w", err)
	}
	return hub.Do(func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(hostVeth)
		if err != nil {
			return err
		}
		br, err := netlinksafe.LinkByName("br0")
		if err != nil {
			return err
		}
		return netlink.LinkSetMaster(l, br)
	})
}

func fakeDel(args *skel.CmdArgs) error {
	c, pod, err := parseFake(args)
	if err != nil {
		return err
	}
	c.logCall("DEL", args, pod)
	err = ns.WithNetNSPath(c.Hub, func(ns.NetNS) error {
		if err := ip.DelLinkByName(fakeHostVeth(args.ContainerID)); err != nil && !errors.Is(err, ip.ErrLinkNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	leases, _ := filepath.Glob(filepath.Join(c.State, "ip-*"))
	for _, f := range leases {
		if b, _ := os.ReadFile(f); string(b) == args.ContainerID {
			os.Remove(f)
		}
	}
	return nil
}
