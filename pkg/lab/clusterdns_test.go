package lab

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/images"
)

// clusterDNSObjects decodes clusterDNSManifest strictly (an unknown or misspelt field
// fails) into its objects by kind.
func clusterDNSObjects(t *testing.T) (map[string]any, string) {
	t.Helper()
	docs := strings.Split(clusterDNSManifest(), "\n---\n")
	objs := map[string]any{}
	for _, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		var obj any
		switch tm.Kind {
		case "ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case "ConfigMap":
			obj = &corev1.ConfigMap{}
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "Service":
			obj = &corev1.Service{}
		default:
			t.Fatalf("unexpected kind %q in\n%s", tm.Kind, doc)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: %v in\n%s", tm.Kind, err, doc)
		}
		objs[tm.Kind] = obj
	}
	if len(objs) != 6 || len(docs) != 6 {
		t.Fatalf("%d documents of %d kinds, want 6 of 6", len(docs), len(objs))
	}
	return objs, objs["ConfigMap"].(*corev1.ConfigMap).Data["Corefile"]
}

// TestClusterDNSService: kube-dns sits at ClusterDNSIP inside the lab's service network
// (not its first address, the kubernetes Service's), with the DNS and metrics ports, and
// selects the Deployment's pods.
func TestClusterDNSService(t *testing.T) {
	objs, _ := clusterDNSObjects(t)
	svc, dep := objs["Service"].(*corev1.Service), objs["Deployment"].(*appsv1.Deployment)
	ip := netip.MustParseAddr(svc.Spec.ClusterIP)
	cidr := netip.MustParsePrefix(ServiceCIDR)
	if ip != ClusterDNSIP || !cidr.Contains(ip) || ip == cidr.Addr().Next() {
		t.Errorf("kube-dns clusterIP %s: want %s inside %s, not its first address", ip, ClusterDNSIP, cidr)
	}
	if svc.Name != "kube-dns" || svc.Namespace != "kube-system" || svc.Labels["k8s-app"] != "kube-dns" {
		t.Errorf("Service %s/%s labels %v: want kube-system/kube-dns with k8s-app=kube-dns", svc.Namespace, svc.Name, svc.Labels)
	}
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, p.Name+"="+string(p.Protocol)+"/"+p.TargetPort.String())
	}
	if want := []string{"dns=UDP/53", "dns-tcp=TCP/53", "metrics=TCP/9153"}; !slices.Equal(ports, want) {
		t.Errorf("kube-dns ports %v, want %v", ports, want)
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v || dep.Spec.Selector.MatchLabels[k] != v {
			t.Errorf("kube-dns selects %s=%s, which the Deployment's pods %v do not have", k, v, dep.Spec.Template.Labels)
		}
	}
}

// TestClusterDNSDeployment: the pods run the lab's CoreDNS image (never pulled), are ready
// on CoreDNS's ready plugin, resolve with the node's DNS (not themselves), and reach the
// API server through the lab's relay as the ServiceAccount the ClusterRole is bound to,
// which may list and watch what the kubernetes plugin watches.
func TestClusterDNSDeployment(t *testing.T) {
	objs, _ := clusterDNSObjects(t)
	dep := objs["Deployment"].(*appsv1.Deployment)
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	if len(pod.Containers) != 1 || c.Image != images.CoreDNSImage || c.ImagePullPolicy != corev1.PullNever {
		t.Errorf("containers %+v: want one of %s, never pulled", pod.Containers, images.CoreDNSImage)
	}
	if r := dep.Spec.Replicas; r == nil || *r < 1 || *r > 2 {
		t.Errorf("replicas %v: want 1 or 2", r)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/ready" || p.HTTPGet.Port.IntValue() != 8181 {
		t.Errorf("readiness probe %+v: want GET /ready on 8181", p)
	}
	if pod.DNSPolicy != corev1.DNSDefault || pod.HostNetwork {
		t.Errorf("dnsPolicy %q hostNetwork %v: want Default on the pod network", pod.DNSPolicy, pod.HostNetwork)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["KUBERNETES_SERVICE_HOST"] != Gateway.String() || env["KUBERNETES_SERVICE_PORT"] != "6443" {
		t.Errorf("env %v: want the API relay %s:%d", env, Gateway, GatewayPort)
	}
	sa, crb := objs["ServiceAccount"].(*corev1.ServiceAccount), objs["ClusterRoleBinding"].(*rbacv1.ClusterRoleBinding)
	cr := objs["ClusterRole"].(*rbacv1.ClusterRole)
	if pod.ServiceAccountName != sa.Name || crb.RoleRef.Name != cr.Name || len(crb.Subjects) != 1 ||
		crb.Subjects[0].Name != sa.Name || crb.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("ServiceAccount %s/%s, pod's %q, binding %+v of ClusterRole %s: not bound together",
			sa.Namespace, sa.Name, pod.ServiceAccountName, crb, cr.Name)
	}
	for _, want := range []string{"/services", "/pods", "/namespaces", "discovery.k8s.io/endpointslices"} {
		if !grants(cr.Rules, want, "list") || !grants(cr.Rules, want, "watch") {
			t.Errorf("ClusterRole %s does not let CoreDNS list and watch %s", cr.Name, want)
		}
	}
}

func grants(rules []rbacv1.PolicyRule, groupResource, verb string) bool {
	group, resource, _ := strings.Cut(groupResource, "/")
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

// TestClusterDNSCorefile: CoreDNS serves cluster.local and the reverse zones from the API
// with the plugins the task names, and forwards only the lab's own zone to the lab's own
// DNS server: nothing may be asked outside the lab.
func TestClusterDNSCorefile(t *testing.T) {
	_, corefile := clusterDNSObjects(t)
	for _, want := range []string{"kubernetes cluster.local in-addr.arpa ip6.arpa {", "pods insecure", "fallthrough",
		"errors", "health", "ready", "cache 30", "loadbalance", "prometheus :9153"} {
		if !strings.Contains(corefile, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, corefile)
		}
	}
	forwards := regexp.MustCompile(`(?m)^\s*(forward|proxy)\b.*$`).FindAllString(corefile, -1)
	want := "forward . " + DNSAddr.Addr().String()
	if len(forwards) != 1 || strings.TrimSpace(forwards[0]) != want ||
		strings.Index(corefile, want) < strings.Index(corefile, DNSZone+":53 {") {
		t.Errorf("Corefile forwards %q, want only %q in the %s block", forwards, want, DNSZone)
	}
	blocks := regexp.MustCompile(`(?m)^(\S+) \{$`).FindAllStringSubmatch(corefile, -1)
	var zones []string
	for _, b := range blocks {
		zones = append(zones, b[1])
	}
	if !slices.Equal(zones, []string{".:53", DNSZone + ":53"}) {
		t.Errorf("server blocks %v, want .:53 and %s:53 (the one that forwards)", zones, DNSZone)
	}
}
