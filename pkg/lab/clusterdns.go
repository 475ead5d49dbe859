package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-sdn/ovs-sdn/pkg/clusternetwork"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/images"
	"github.com/ovs-sdn/ovs-sdn/pkg/sdnctl"
)

// Cluster DNS of a containerd lab: CoreDNS (images.CoreDNSImage, pinned by tools/coredns)
// as the Deployment kube-system/coredns behind the Service kube-system/kube-dns at
// ClusterDNSIP, which every kubelet hands to its pods (clusterDNS, search path
// <ns>.svc.cluster.local svc.cluster.local cluster.local), as a kubeadm cluster does. It
// is the lab's, not ovs-sdn's: manifests/ ship no DNS.
//
// CoreDNS answers from the API for cluster.local (Services, headless Services' pods,
// pods by dashed address: "pods insecure") and for the reverse zones of the lab's
// addresses; it forwards lab.example. to the lab's own DNS server (DNSAddr, in the
// external host's namespace) and nothing else anywhere: other names get SERVFAIL.
// Host-network pods (the ovs-sdn agents and controller) keep the node's resolver: the
// kubelet gives ClusterFirst host-network pods the node's DNS, not the cluster's.
//
// In multitenant mode kube-system is made global (VNID 0, `sdnctl pod-network
// make-projects-global`) before CoreDNS starts, as OpenShift makes its DNS namespace
// global: otherwise only kube-system's own pods could reach it.
//
// CoreDNS reaches the API server as the ovs-sdn pods do, through the relay on Gateway:
// the kubernetes Service's endpoint is the API server's loopback address, which no pod
// can reach.

// ClusterDNSIP is the ClusterIP of kube-system/kube-dns: the conventional tenth address
// of the service network, in the API server's static band (the first 256 addresses of a
// /16), which dynamic allocation only takes when the rest is full.
var ClusterDNSIP = netip.MustParseAddr("172.30.0.10")

// Names of the cluster DNS objects (in kube-system).
const (
	clusterDNSNamespace  = "kube-system"
	clusterDNSDeployment = "coredns"
	clusterDNSService    = "kube-dns"
	clusterDNSReplicas   = 2
)

// clusterDNSManifest renders the cluster DNS objects: ServiceAccount, ClusterRole and
// binding (what CoreDNS's kubernetes plugin lists and watches), the Corefile ConfigMap,
// the Deployment and the kube-dns Service. Pure.
func clusterDNSManifest() string {
	return fmt.Sprintf(clusterDNSTemplate, clusterDNSNamespace, clusterDNSDeployment, clusterDNSService,
		clusterDNSReplicas, images.CoreDNSImage, Gateway, GatewayPort, ClusterDNSIP, DNSZone, DNSAddr.Addr())
}

// The YAML of clusterDNSManifest; %[n] are, in order: namespace, Deployment (and
// ServiceAccount, ClusterRole, ConfigMap) name, Service name, replicas, image, API server
// relay host and port, ClusterIP, the lab's DNS zone and its server's address.
const clusterDNSTemplate = `apiVersion: v1
kind: ServiceAccount
metadata: {name: %[2]s, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:%[2]s"}
rules:
- {apiGroups: [""], resources: [services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:%[2]s"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:%[2]s"}
subjects:
- {kind: ServiceAccount, name: %[2]s, namespace: %[1]s}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: %[2]s, namespace: %[1]s}
data:
  Corefile: |
    .:53 {
        errors
        health
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        prometheus :9153
        cache 30
        loadbalance
    }
    %[9]s:53 {
        errors
        cache 30
        forward . %[10]s
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[2]s
  namespace: %[1]s
  labels: {k8s-app: %[3]s}
spec:
  replicas: %[4]d
  selector: {matchLabels: {k8s-app: %[3]s}}
  template:
    metadata: {labels: {k8s-app: %[3]s}}
    spec:
      serviceAccountName: %[2]s
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      terminationGracePeriodSeconds: 5
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {k8s-app: %[3]s}}}
      containers:
      - name: coredns
        image: %[5]s
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        env:
        - {name: KUBERNETES_SERVICE_HOST, value: "%[6]s"}
        - {name: KUBERNETES_SERVICE_PORT, value: "%[7]d"}
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        - {name: metrics, containerPort: 9153, protocol: TCP}
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 1
          failureThreshold: 3
        livenessProbe:
          httpGet: {path: /health, port: 8080}
          initialDelaySeconds: 30
          periodSeconds: 10
          failureThreshold: 5
        volumeMounts:
        - {name: config, mountPath: /etc/coredns, readOnly: true}
      volumes:
      - name: config
        configMap:
          name: %[2]s
          items: [{key: Corefile, path: Corefile}]
---
apiVersion: v1
kind: Service
metadata:
  name: %[3]s
  namespace: %[1]s
  labels: {k8s-app: %[3]s, kubernetes.io/name: CoreDNS}
spec:
  selector: {k8s-app: %[3]s}
  clusterIP: %[8]s
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
  - {name: metrics, port: 9153, protocol: TCP, targetPort: 9153}
`

// installClusterDNS applies the cluster DNS objects (kubectl apply --server-side, field
// manager sdn-lab; idempotent) from <StateDir>/cluster-dns.yaml and waits until the
// Deployment is available and kube-dns has ready endpoints.
func (l *Lab) installClusterDNS(ctx context.Context) error {
	begin := time.Now()
	if err := l.makeClusterDNSGlobal(ctx); err != nil {
		return err
	}
	file := filepath.Join(l.cfg.StateDir, "cluster-dns.yaml")
	if err := os.WriteFile(file, []byte(clusterDNSManifest()), 0o644); err != nil {
		return fmt.Errorf("lab: cluster DNS: %w", err)
	}
	if _, err := l.Kubectl(ctx, "apply", "--server-side", "--field-manager=sdn-lab", "-f", file); err != nil {
		return fmt.Errorf("lab: applying the cluster DNS: %w", err)
	}
	if err := l.WaitClusterDNS(ctx, 2*time.Minute); err != nil {
		return err
	}
	l.progress("cluster DNS (CoreDNS %s, Service %s/%s at %s) ready in %v", images.CoreDNSVersion,
		clusterDNSNamespace, clusterDNSService, ClusterDNSIP, time.Since(begin).Round(time.Millisecond))
	return nil
}

// makeClusterDNSGlobal gives kube-system the global VNID in multitenant mode (and does
// nothing in the other modes), waiting until the controller has renumbered it.
func (l *Lab) makeClusterDNSGlobal(ctx context.Context) error {
	mode, err := clusternetwork.ModeForPlugin(l.cfg.PluginName)
	if err != nil || mode != clusternetwork.ModeMultitenant {
		return err
	}
	clients := &sdnctl.Clients{Kube: l.Kube, Network: l.Network}
	err = sdnctl.ChangePodNetwork(ctx, clients, sdnctl.PodNetworkGlobal, "", []string{clusterDNSNamespace}, io.Discard)
	if err != nil {
		return fmt.Errorf("lab: making %s global for the cluster DNS: %w", clusterDNSNamespace, err)
	}
	return nil
}

// WaitClusterDNS waits until every replica of the CoreDNS Deployment is updated and
// available (ready: its kubernetes plugin has synced with the API) and the kube-dns
// Service's EndpointSlices hold as many ready endpoints.
func (l *Lab) WaitClusterDNS(ctx context.Context, timeout time.Duration) error {
	if err := waitNothingMissing(ctx, 250*time.Millisecond, timeout, l.clusterDNSMissing); err != nil {
		return fmt.Errorf("lab: waiting for the cluster DNS: %w", err)
	}
	return nil
}

// clusterDNSMissing returns what WaitClusterDNS still waits for, or "".
func (l *Lab) clusterDNSMissing(ctx context.Context) string {
	dep, err := l.Kube.AppsV1().Deployments(clusterDNSNamespace).Get(ctx, clusterDNSDeployment, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	want := *dep.Spec.Replicas
	if s := dep.Status; s.ObservedGeneration < dep.Generation || s.UpdatedReplicas != want ||
		s.AvailableReplicas != want || s.Replicas != want {
		return fmt.Sprintf("Deployment %s/%s: %d wanted, %d updated, %d available, %d in all", dep.Namespace, dep.Name,
			want, s.UpdatedReplicas, s.AvailableReplicas, s.Replicas)
	}
	slices, err := l.Kube.DiscoveryV1().EndpointSlices(clusterDNSNamespace).List(ctx,
		metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + clusterDNSService})
	if err != nil {
		return err.Error()
	}
	ready := int32(0)
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ready++
			}
		}
	}
	if ready < want {
		return fmt.Sprintf("Service %s/%s: %d ready endpoints, want %d", clusterDNSNamespace, clusterDNSService, ready, want)
	}
	return ""
}
