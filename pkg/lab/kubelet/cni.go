package kubelet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
)

// podIfName is the pod's interface, as every Kubernetes runtime names it.
const podIfName = "eth0"

// ErrNetworkNotReady means CNIConfDir holds no network configuration yet (the node agent has
// not written its conflist).
var ErrNetworkNotReady = errors.New("network is not ready: no CNI configuration")

// cniRuntime is the container-runtime side of CNI: it finds the configuration and runs the
// plugins through libcni.
type cniRuntime struct {
	confDir string
	cni     *libcni.CNIConfig
}

// newCNIRuntime execs the plugins in nodeNetNS ("" = the caller's netns), where a real
// node's containerd runs them: chained plugins such as portmap act on the netns they run
// in (its hostPort DNAT rules belong in the node's iptables, not the lab host's).
func newCNIRuntime(confDir, binDir, cacheDir, nodeNetNS string) *cniRuntime {
	exec := &netnsExec{Exec: &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr},
		PluginDecoder: version.PluginDecoder{}}, netns: nodeNetNS}
	return &cniRuntime{confDir: confDir,
		cni: libcni.NewCNIConfigWithCacheDir([]string{binDir}, cacheDir, exec)}
}

// netnsExec is libcni's plugin executor, run from a thread switched into netns (a child
// process starts in the netns of the thread that forks it).
type netnsExec struct {
	invoke.Exec
	netns string
}

func (e *netnsExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	if e.netns == "" {
		return e.Exec.ExecPlugin(ctx, pluginPath, stdin, environ)
	}
	var out []byte
	var err error
	if nsErr := ns.WithNetNSPath(e.netns, func(ns.NetNS) error {
		out, err = e.Exec.ExecPlugin(ctx, pluginPath, stdin, environ)
		return nil
	}); nsErr != nil {
		return nil, fmt.Errorf("exec CNI plugin %s in %s: %w", pluginPath, e.netns, nsErr)
	}
	return out, err
}

// loadConf reads the lexically first configuration file, as containerd and CRI-O do. It is
// re-read for every operation, so a configuration the agent rewrites takes effect at once.
func (r *cniRuntime) loadConf() (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(r.confDir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return nil, fmt.Errorf("CNI configuration in %s: %w", r.confDir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w in %s", ErrNetworkNotReady, r.confDir)
	}
	sort.Strings(files)
	f := files[0]
	if filepath.Ext(f) == ".conflist" {
		return libcni.NetworkConfFromFile(f)
	}
	c, err := libcni.ConfFromFile(f)
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromConf(c)
}

// runtimeConf is what a runtime passes for a pod sandbox.
func runtimeConf(sb *sandbox, pod *corev1.Pod) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: sb.id,
		NetNS:       sb.netnsPath,
		IfName:      podIfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", sb.key.Namespace},
			{"K8S_POD_NAME", sb.key.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", sb.id},
			{"K8S_POD_UID", string(sb.uid)},
		},
		CapabilityArgs: map[string]interface{}{"portMappings": []interface{}{}},
	}
	if pod != nil {
		rt.CapabilityArgs["portMappings"] = portMappings(pod)
		rt.CapabilityArgs["io.kubernetes.cri.pod-annotations"] = pod.Annotations
	}
	return rt
}

// portMappings lists the hostPorts, in the shape of the portmap plugin's capability.
func portMappings(pod *corev1.Pod) []map[string]interface{} {
	pm := []map[string]interface{}{}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			pm = append(pm, map[string]interface{}{"hostPort": p.HostPort, "containerPort": p.ContainerPort,
				"protocol": string(p.Protocol), "hostIP": p.HostIP})
		}
	}
	return pm
}

// add runs CNI ADD and returns the addresses assigned inside the sandbox.
func (r *cniRuntime) add(ctx context.Context, sb *sandbox, pod *corev1.Pod) ([]netip.Addr, error) {
	list, err := r.loadConf()
	if err != nil {
		return nil, err
	}
	res, err := r.cni.AddNetworkList(ctx, list, runtimeConf(sb, pod))
	if err != nil {
		return nil, fmt.Errorf("CNI ADD (network %q): %w", list.Name, err)
	}
	ips, err := resultIPs(res, sb.netnsPath)
	if err != nil {
		return nil, fmt.Errorf("CNI ADD (network %q): %w", list.Name, err)
	}
	return ips, nil
}

// del runs CNI DEL. Without a configuration it falls back to the one cached at ADD (a
// runtime must be able to clean up after the network is gone). Like containerd, it passes
// the capability arguments of the ADD (the pod's portMappings, from libcni's cache), so
// portmap finds and removes the hostPort rules it made.
func (r *cniRuntime) del(ctx context.Context, sb *sandbox) error {
	rt := runtimeConf(sb, nil)
	list, err := r.loadConf()
	if errors.Is(err, ErrNetworkNotReady) {
		list, err = r.cachedConf(rt)
	}
	if err != nil {
		return fmt.Errorf("CNI DEL: %w", err)
	}
	if _, cached, cerr := r.cni.GetNetworkListCachedConfig(list, rt); cerr == nil && cached != nil && cached.CapabilityArgs != nil {
		rt.CapabilityArgs = cached.CapabilityArgs
	}
	if err := r.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("CNI DEL (network %q): %w", list.Name, err)
	}
	return nil
}

func (r *cniRuntime) cachedConf(rt *libcni.RuntimeConf) (*libcni.NetworkConfigList, error) {
	atts, err := r.cni.GetCachedAttachments(rt.ContainerID)
	if err != nil || len(atts) == 0 {
		return nil, fmt.Errorf("%w in %s and none cached for container %s", ErrNetworkNotReady, r.confDir, rt.ContainerID)
	}
	return libcni.NetworkConfFromBytes(atts[0].Config)
}

// resultIPs picks the addresses of the result that live in the sandbox (an interface with
// that sandbox, or with no interface index at all).
func resultIPs(res cnitypes.Result, netnsPath string) ([]netip.Addr, error) {
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert result: %w", err)
	}
	var ips []netip.Addr
	for _, ipc := range r.IPs {
		if ipc.Interface != nil && *ipc.Interface < len(r.Interfaces) &&
			r.Interfaces[*ipc.Interface].Sandbox != netnsPath {
			continue
		}
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if ok {
			ips = append(ips, a.Unmap())
		}
	}
	if len(ips) == 0 {
		return nil, errors.New("result has no address in the pod's sandbox")
	}
	return ips, nil
}
