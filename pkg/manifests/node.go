package manifests

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Paths inside the images (images/*/Dockerfile install them) and on the host.
const (
	NodeBinary       = "/usr/bin/sdn-node"
	ControllerBinary = "/usr/bin/sdn-controller"
	// CNIBinaryInImage (cmd/sdn-cni) is copied by the install-cni init container to
	// <cniBinDir>/<CNIPluginType>: the runtime execs the binary named by the conflist's type.
	CNIBinaryInImage = "/usr/libexec/ovs-sdn/sdn-cni"
	CNIPluginType    = "ovs-sdn"
	// PortmapBinaryInImage (the standard portmap plugin, pinned in go.mod) is copied next to
	// it as <cniBinDir>/<PortmapPluginType>: the conflist chains it after ovs-sdn for
	// hostPorts (pkg/cni.PortmapPluginType; a name of our own, so a portmap other software
	// installed on the host is left alone).
	PortmapBinaryInImage = "/usr/libexec/ovs-sdn/portmap"
	PortmapPluginType    = "ovs-sdn-portmap"
	// CNIConfFile is written by the agent into the CNI conf dir once it is ready; its
	// presence is the DaemonSet's readiness.
	CNIConfFile = "10-ovs-sdn.conflist"
	// CNIServerDir holds the agent's root-only CNI socket.
	CNIServerDir = "/var/run/ovs-sdn"
	OVSRunDir    = "/var/run/openvswitch"
	// cniConfMount and cniBinMount are where the host's CNI dirs appear in the pod. The
	// conf dir keeps its conventional path so the agent's default finds it.
	cniConfMount = "/etc/cni/net.d"
	cniBinMount  = "/host/opt/cni/bin"
)

// nodeDaemonSet runs the agent on every Linux node (reference §12.2): privileged, host
// network and PID namespace, system-node-critical, tolerating every taint (it is what makes
// a node's network ready). Ready = the conflist exists; preStop removes it so the runtime
// stops starting pods on a node whose agent is gone. The CNI binary stays on the host so
// pod deletions keep reaching the shim, which answers "try again later" until an agent runs.
func (c *Config) nodeDaemonSet(configHash string) *appsv1.DaemonSet {
	labels := commonLabels(NodeName)
	maxUnavailable := intstr.FromString("10%")
	return &appsv1.DaemonSet{
		TypeMeta:   typeMeta("apps/v1", "DaemonSet"),
		ObjectMeta: c.objectMeta(NodeName, NodeName),
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels(NodeName)},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &maxUnavailable},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{ConfigHashAnnotation: configHash}},
				Spec:       c.nodePodSpec(),
			},
		},
	}
}

func (c *Config) nodePodSpec() corev1.PodSpec {
	grace := int64(30)
	return corev1.PodSpec{
		ServiceAccountName:            NodeName,
		HostNetwork:                   true,
		HostPID:                       true,
		DNSPolicy:                     corev1.DNSDefault, // cluster DNS needs the pod network first
		PriorityClassName:             "system-node-critical",
		NodeSelector:                  map[string]string{corev1.LabelOSStable: "linux"},
		Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		TerminationGracePeriodSeconds: &grace,
		InitContainers:                []corev1.Container{c.installCNIContainer()},
		Containers:                    []corev1.Container{c.nodeContainer()},
		Volumes:                       c.nodeVolumes(),
	}
}

// installCNIContainer copies the shim and portmap onto the host atomically (a half-written
// binary must never be exec'd) and removes a conflist left by a previous agent, so
// readiness reflects this one.
func (c *Config) installCNIContainer() corev1.Container {
	lines := []string{"set -eu"}
	for _, b := range []struct{ src, name string }{
		{CNIBinaryInImage, CNIPluginType}, {PortmapBinaryInImage, PortmapPluginType},
	} {
		tmp := cniBinMount + "/." + b.name + ".new"
		lines = append(lines, fmt.Sprintf("cp -f %s %s", b.src, tmp),
			fmt.Sprintf("mv -f %s %s/%s", tmp, cniBinMount, b.name))
	}
	script := strings.Join(append(lines, fmt.Sprintf("rm -f %s/%s", cniConfMount, CNIConfFile)), "\n") + "\n"
	return corev1.Container{
		Name:            "install-cni",
		Image:           c.Images.Node,
		ImagePullPolicy: corev1.PullPolicy(c.Images.PullPolicy),
		Command:         []string{"/bin/sh", "-c", script},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "cni-bin-dir", MountPath: cniBinMount},
			{Name: "cni-conf-dir", MountPath: cniConfMount},
		},
		Resources: requests("10m", "16Mi"),
	}
}

func (c *Config) nodeContainer() corev1.Container {
	privileged := true
	return corev1.Container{
		Name:            NodeName,
		Image:           c.Images.Node,
		ImagePullPolicy: corev1.PullPolicy(c.Images.PullPolicy),
		Command:         []string{NodeBinary},
		Args: []string{
			"--node-name=$(K8S_NODE_NAME)",
			"--node-ip=$(K8S_NODE_IP)",
			"--ovsdb=unix:" + OVSRunDir + "/db.sock",
			"--datapath-type=" + c.Node.DatapathType,
			"--proxy-mode=" + string(c.ProxyMode),
			"--service-node-port-range=" + c.ServiceNodePortRange,
			fmt.Sprintf("--metrics-bind-address=$(K8S_NODE_IP):%d", c.Node.MetricsPort),
			fmt.Sprintf("--v=%d", *c.LogLevel),
		},
		Env: append([]corev1.EnvVar{
			fieldEnv("K8S_NODE_NAME", "spec.nodeName"),
			fieldEnv("K8S_NODE_IP", "status.hostIP"),
		}, c.apiServerEnv()...),
		Ports:           []corev1.ContainerPort{{Name: "metrics", ContainerPort: int32(c.Node.MetricsPort), Protocol: corev1.ProtocolTCP}},
		SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{
				Command: []string{"test", "-f", cniConfMount + "/" + CNIConfFile},
			}},
			InitialDelaySeconds: 5, PeriodSeconds: 5,
		},
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{"rm", "-f", cniConfMount + "/" + CNIConfFile},
		}}},
		Resources:    requests("100m", "200Mi"),
		VolumeMounts: nodeMounts(),
	}
}

// nodeMounts: OVS sockets, the CNI socket dir, pod network namespaces (HostToContainer, so
// namespaces created after the agent started are visible), the CNI conf dir, IPAM state,
// kernel modules (openvswitch, conntrack) and the iptables lock shared with kube-proxy.
func nodeMounts() []corev1.VolumeMount {
	hostToContainer := corev1.MountPropagationHostToContainer
	return []corev1.VolumeMount{
		{Name: "host-run-openvswitch", MountPath: OVSRunDir},
		{Name: "host-run-ovs-sdn", MountPath: CNIServerDir},
		{Name: "host-run-netns", MountPath: "/run/netns", MountPropagation: &hostToContainer},
		{Name: "cni-conf-dir", MountPath: cniConfMount},
		{Name: "host-var-lib-cni", MountPath: "/var/lib/cni"},
		{Name: "host-lib-modules", MountPath: "/lib/modules", ReadOnly: true},
		{Name: "xtables-lock", MountPath: "/run/xtables.lock"},
	}
}

func (c *Config) nodeVolumes() []corev1.Volume {
	return []corev1.Volume{
		hostPathVolume("host-run-openvswitch", OVSRunDir, corev1.HostPathDirectoryOrCreate),
		hostPathVolume("host-run-ovs-sdn", CNIServerDir, corev1.HostPathDirectoryOrCreate),
		hostPathVolume("host-run-netns", "/run/netns", corev1.HostPathDirectoryOrCreate),
		hostPathVolume("cni-conf-dir", c.Node.CNIConfDir, corev1.HostPathDirectoryOrCreate),
		hostPathVolume("cni-bin-dir", c.Node.CNIBinDir, corev1.HostPathDirectoryOrCreate),
		hostPathVolume("host-var-lib-cni", "/var/lib/cni", corev1.HostPathDirectoryOrCreate),
		hostPathVolume("host-lib-modules", "/lib/modules", corev1.HostPathDirectory),
		hostPathVolume("xtables-lock", "/run/xtables.lock", corev1.HostPathFileOrCreate),
	}
}

func hostPathVolume(name, path string, typ corev1.HostPathType) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &typ},
	}}
}

func fieldEnv(name, fieldPath string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: fieldPath},
	}}
}

// apiServerEnv points client-go's in-cluster config at apiServer.host when set.
func (c *Config) apiServerEnv() []corev1.EnvVar {
	if c.APIServer.Host == "" {
		return nil
	}
	return []corev1.EnvVar{
		{Name: "KUBERNETES_SERVICE_HOST", Value: c.APIServer.Host},
		{Name: "KUBERNETES_SERVICE_PORT", Value: fmt.Sprint(c.APIServer.Port)},
	}
}

func requests(cpu, memory string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory),
	}}
}

// selectorLabels are the immutable selector of a workload and its Service.
func selectorLabels(component string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": component}
}
