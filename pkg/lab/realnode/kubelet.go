package realnode

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	kubeletconfig "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// Ports of the kubelet in the node's network namespace.
const (
	KubeletPort        = 10250 // API (logs, exec, port-forward), on the node IP
	kubeletHealthzPort = 10248 // /healthz, on the node's loopback
)

// Paths of the kubelet's files as the node sees them (<Dir>/kubelet is /var/lib/kubelet).
const (
	kubeletConfigPath     = "/var/lib/kubelet/config.yaml"
	kubeletKubeconfigPath = "/var/lib/kubelet/kubeconfig"
	kubeletClientCAPath   = "/var/lib/kubelet/pki/client-ca.crt"
)

// kubeletConfig is the node's KubeletConfiguration. What this machine needs: cgroupfs on
// cgroup v1 (no systemd) with failCgroupV1 off and the node's own cgroupRoot; oomScoreAdj
// 0 (root lacks CAP_SYS_RESOURCE for the default -999). What the lab wants: no DNS from the
// host (resolvConf ""; nothing outside the lab may be asked) but Config.ClusterDNS for
// ClusterFirst pods, in domain cluster.local, no evictions or image garbage
// collection (images are imported, never pulled back), healthz on the node's loopback.
func (c *Config) kubeletConfig() ([]byte, error) {
	kc := kubeletconfig.KubeletConfiguration{
		TypeMeta:                 metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		ContainerRuntimeEndpoint: "unix:///run/containerd/containerd.sock",
		CgroupDriver:             "cgroupfs",
		CgroupRoot:               c.CgroupRoot,
		FailCgroupV1:             ptr.To(false),
		OOMScoreAdj:              ptr.To[int32](0),
		Address:                  c.IP.String(),
		Port:                     KubeletPort,
		HealthzBindAddress:       "127.0.0.1",
		HealthzPort:              ptr.To[int32](kubeletHealthzPort),
		ClusterDomain:            "cluster.local",
		ResolverConfig:           ptr.To(""),
		FailSwapOn:               ptr.To(false),
		EvictionHard: map[string]string{"memory.available": "1Mi", "nodefs.available": "1%",
			"nodefs.inodesFree": "1%", "imagefs.available": "1%"},
		ImageGCHighThresholdPercent: ptr.To[int32](100),
		ImageGCLowThresholdPercent:  ptr.To[int32](99),
		NodeStatusUpdateFrequency:   metav1.Duration{Duration: 5 * time.Second},
	}
	for _, ip := range c.ClusterDNS {
		kc.ClusterDNS = append(kc.ClusterDNS, ip.String())
	}
	kc.Authentication.Anonymous.Enabled = ptr.To(true)
	kc.Authentication.Webhook.Enabled = ptr.To(false)
	if len(c.ClientCA) > 0 {
		kc.Authentication.X509.ClientCAFile = kubeletClientCAPath
	}
	kc.Authorization.Mode = kubeletconfig.KubeletAuthorizationModeAlwaysAllow
	return yaml.Marshal(kc)
}

// writeKubeletFiles writes the configuration, kubeconfig and client CA into <Dir>/kubelet.
func (c *Config) writeKubeletFiles() error {
	cfg, err := c.kubeletConfig()
	if err != nil {
		return err
	}
	files := map[string][]byte{kubeletConfigPath: cfg, kubeletKubeconfigPath: c.Kubeconfig}
	if len(c.ClientCA) > 0 {
		files[kubeletClientCAPath] = c.ClientCA
	}
	for p, data := range files {
		host := filepath.Join(c.kubeletDir(), strings.TrimPrefix(p, "/var/lib/kubelet/"))
		if err := os.MkdirAll(filepath.Dir(host), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(host, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// kubeletArgs is the kubelet's command line.
func (c *Config) kubeletArgs() []string {
	args := []string{c.tool("kubelet"), "--config=" + kubeletConfigPath, "--kubeconfig=" + kubeletKubeconfigPath,
		"--hostname-override=" + c.Name, "--node-ip=" + c.IP.String(), fmt.Sprintf("--v=%d", c.KubeletVerbosity)}
	if len(c.Labels) > 0 {
		var l []string
		for k, v := range c.Labels {
			l = append(l, k+"="+v)
		}
		sort.Strings(l)
		args = append(args, "--node-labels="+strings.Join(l, ","))
	}
	return args
}

// startKubelet starts the kubelet in the node's namespaces and waits for its /healthz.
func (n *Node) startKubelet(ctx context.Context) error {
	argv := append(n.cfg.nsenter(), n.cfg.kubeletArgs()...)
	p, err := n.spawner.startProcess("kubelet", argv, n.cfg.daemonEnv(),
		filepath.Join(n.cfg.logDir(), "kubelet.log"))
	if err != nil {
		return err
	}
	n.kubelet = p
	return n.waitFor(ctx, p, 60*time.Second, "kubelet", n.kubeletHealthy)
}

// kubeletHealthy asks the kubelet's /healthz on the node's loopback, from a socket made
// inside the node's network namespace.
func (n *Node) kubeletHealthy() error {
	var conn net.Conn
	err := inNetNS(n.cfg.NetNS, func() (err error) {
		conn, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", kubeletHealthzPort), time.Second)
		return err
	})
	if err != nil {
		return err
	}
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", kubeletHealthzPort))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("kubelet /healthz: %s", resp.Status)
	}
	return nil
}

func inNetNS(path string, fn func() error) error {
	netns, err := ns.GetNS(path)
	if err != nil {
		return err
	}
	defer netns.Close()
	return netns.Do(func(ns.NetNS) error { return fn() })
}

// KubeletKubeconfig returns a kubeconfig for a kubelet: the API server at server (as
// reached from the node), trusted through caPEM, and the node's client certificate.
func KubeletKubeconfig(server string, caPEM, certPEM, keyPEM []byte) ([]byte, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["lab"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	kc.AuthInfos["kubelet"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	kc.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "kubelet"}
	kc.CurrentContext = "lab"
	return clientcmd.Write(*kc)
}
