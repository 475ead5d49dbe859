package manifests

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	networkv1 "github.com/ovs-sdn/ovs-sdn/pkg/apis/network/v1"
)

// Identities of the two daemons. ClusterRoles are named after them, prefixed "ovs-sdn:".
const (
	NodeName       = "sdn-node"
	ControllerName = "sdn-controller"
)

var (
	readVerbs  = []string{"get", "list", "watch"}
	eventVerbs = []string{"create", "patch"}
	writeVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete"}
)

// nodeRules: the node agent reads the cluster and writes nothing but Events (SPEC §7). It
// does not even update its own HostSubnet: the controller owns every network object.
func nodeRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{networkv1.GroupName}, Verbs: readVerbs,
			Resources: []string{"clusternetworks", "egressnetworkpolicies", "hostsubnets", "netnamespaces"}},
		{APIGroups: []string{""}, Verbs: readVerbs, Resources: []string{"namespaces", "nodes", "pods", "services"}},
		{APIGroups: []string{"networking.k8s.io"}, Verbs: readVerbs, Resources: []string{"networkpolicies"}},
		{APIGroups: []string{"discovery.k8s.io"}, Verbs: readVerbs, Resources: []string{"endpointslices"}},
		{APIGroups: []string{"", "events.k8s.io"}, Verbs: eventVerbs, Resources: []string{"events"}},
	}
}

// controllerRules: the controller owns HostSubnets and NetNamespaces, reads the
// ClusterNetwork (rendered here, never written by the controller), Nodes, Namespaces and
// NetworkPolicies and EgressNetworkPolicies (it reports the invalid ones), and records Events; Events about cluster-scoped objects land in "default", hence a
// ClusterRole.
func controllerRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{networkv1.GroupName}, Verbs: writeVerbs, Resources: []string{"hostsubnets", "netnamespaces"}},
		{APIGroups: []string{networkv1.GroupName}, Verbs: readVerbs, Resources: []string{"clusternetworks", "egressnetworkpolicies"}},
		{APIGroups: []string{""}, Verbs: readVerbs, Resources: []string{"namespaces", "nodes"}},
		{APIGroups: []string{"networking.k8s.io"}, Verbs: readVerbs, Resources: []string{"networkpolicies"}},
		{APIGroups: []string{"", "events.k8s.io"}, Verbs: eventVerbs, Resources: []string{"events"}},
	}
}

// leaderElectionRules are granted in the namespace only: the Lease lives there.
func leaderElectionRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"coordination.k8s.io"}, Verbs: []string{"get", "create", "update"}, Resources: []string{"leases"}},
	}
}

// ServiceAccountUser is the user name a daemon's ServiceAccount authenticates as.
func (c *Config) ServiceAccountUser(name string) string {
	return "system:serviceaccount:" + c.Namespace + ":" + name
}

func (c *Config) nodeRBAC() []runtime.Object {
	return append([]runtime.Object{c.serviceAccount(NodeName)}, c.clusterRoleAndBinding(NodeName, nodeRules())...)
}

func (c *Config) controllerRBAC() []runtime.Object {
	objs := append([]runtime.Object{c.serviceAccount(ControllerName)}, c.clusterRoleAndBinding(ControllerName, controllerRules())...)
	name := "ovs-sdn:" + ControllerName + ":leader-election"
	role := &rbacv1.Role{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "Role"),
		ObjectMeta: c.objectMeta(name, ControllerName),
		Rules:      leaderElectionRules(),
	}
	binding := &rbacv1.RoleBinding{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"),
		ObjectMeta: c.objectMeta(name, ControllerName),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   c.subjects(ControllerName),
	}
	return append(objs, role, binding)
}

func (c *Config) serviceAccount(name string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{TypeMeta: typeMeta("v1", "ServiceAccount"), ObjectMeta: c.objectMeta(name, name)}
}

func (c *Config) clusterRoleAndBinding(component string, rules []rbacv1.PolicyRule) []runtime.Object {
	meta := metav1.ObjectMeta{Name: "ovs-sdn:" + component, Labels: commonLabels(component)}
	return []runtime.Object{
		&rbacv1.ClusterRole{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"), ObjectMeta: meta, Rules: rules},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
			ObjectMeta: *meta.DeepCopy(),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: meta.Name},
			Subjects:   c.subjects(component),
		},
	}
}

func (c *Config) subjects(serviceAccount string) []rbacv1.Subject {
	return []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: serviceAccount, Namespace: c.Namespace}}
}
