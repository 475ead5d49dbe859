package manifests

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// controllerDeployment runs the leader-elected controller (reference §12.3, as a Deployment
// per SPEC §7). It uses the host network: it allocates the HostSubnets that give nodes a pod
// network, so it cannot wait for one. Hence it also tolerates not-ready and
// network-unavailable nodes and the control-plane taints. Two replicas on the host network
// cannot share a node (the metrics port), so updates replace one pod at a time (no surge).
func (c *Config) controllerDeployment(configHash string) *appsv1.Deployment {
	zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
	return &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: c.objectMeta(ControllerName, ControllerName),
		Spec: appsv1.DeploymentSpec{
			Replicas: c.Controller.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels(ControllerName)},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &one, MaxSurge: &zero},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      commonLabels(ControllerName),
					Annotations: map[string]string{ConfigHashAnnotation: configHash},
				},
				Spec: c.controllerPodSpec(),
			},
		},
	}
}

func (c *Config) controllerPodSpec() corev1.PodSpec {
	noSchedule := func(key string) corev1.Toleration {
		return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	}
	return corev1.PodSpec{
		ServiceAccountName: ControllerName,
		HostNetwork:        true,
		DNSPolicy:          corev1.DNSDefault,
		PriorityClassName:  "system-cluster-critical",
		NodeSelector:       map[string]string{corev1.LabelOSStable: "linux"},
		Tolerations: []corev1.Toleration{
			noSchedule("node-role.kubernetes.io/control-plane"),
			noSchedule("node-role.kubernetes.io/master"),
			noSchedule(corev1.TaintNodeNotReady),
			noSchedule(corev1.TaintNodeNetworkUnavailable),
		},
		Affinity:        controllerAffinity(),
		SecurityContext: &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers:      []corev1.Container{c.controllerContainer()},
	}
}

// controllerAffinity prefers control-plane nodes and spreads the replicas over nodes.
func controllerAffinity() *corev1.Affinity {
	return &corev1.Affinity{
		NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
			Weight: 50,
			Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: "node-role.kubernetes.io/control-plane", Operator: corev1.NodeSelectorOpExists,
			}}},
		}}},
		PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 100,
			PodAffinityTerm: corev1.PodAffinityTerm{
				LabelSelector: &metav1.LabelSelector{MatchLabels: selectorLabels(ControllerName)},
				TopologyKey:   corev1.LabelHostname,
			},
		}}},
	}
}

// controllerContainer runs as nobody with nothing but its binary: it only talks to the API.
func (c *Config) controllerContainer() corev1.Container {
	yes, no := true, false
	uid := int64(65534)
	port := intstr.FromString("metrics")
	return corev1.Container{
		Name:            ControllerName,
		Image:           c.Images.Controller,
		ImagePullPolicy: corev1.PullPolicy(c.Images.PullPolicy),
		Command:         []string{ControllerBinary},
		Args: []string{
			"--identity=$(POD_NAME)",
			"--lease-namespace=$(POD_NAMESPACE)",
			fmt.Sprintf("--metrics-bind-address=$(POD_IP):%d", c.Controller.MetricsPort),
			fmt.Sprintf("--v=%d", *c.LogLevel),
		},
		Env: append([]corev1.EnvVar{
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("POD_IP", "status.podIP"),
		}, c.apiServerEnv()...),
		Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: int32(c.Controller.MetricsPort), Protocol: corev1.ProtocolTCP}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: port}},
			PeriodSeconds: 10,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: port}},
			InitialDelaySeconds: 30, PeriodSeconds: 30, FailureThreshold: 3,
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &yes,
			AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		Resources: requests("10m", "50Mi"),
	}
}

// metricsServices are headless, so Prometheus scrapes every pod, not a random one.
func (c *Config) metricsServices() []runtime.Object {
	svc := func(component string, port int) runtime.Object {
		return &corev1.Service{
			TypeMeta:   typeMeta("v1", "Service"),
			ObjectMeta: c.objectMeta(component, component),
			Spec: corev1.ServiceSpec{
				ClusterIP: corev1.ClusterIPNone,
				Selector:  selectorLabels(component),
				Ports: []corev1.ServicePort{{
					Name: "metrics", Port: int32(port), TargetPort: intstr.FromString("metrics"), Protocol: corev1.ProtocolTCP,
				}},
			},
		}
	}
	return []runtime.Object{svc(NodeName, c.Node.MetricsPort), svc(ControllerName, c.Controller.MetricsPort)}
}
