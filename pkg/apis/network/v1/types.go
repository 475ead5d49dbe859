package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Plugin names, the value of ClusterNetwork.PluginName. Matched case-insensitively.
const (
	SingleTenantPluginName  = "redhat/openshift-ovs-subnet"
	MultiTenantPluginName   = "redhat/openshift-ovs-multitenant"
	NetworkPolicyPluginName = "redhat/openshift-ovs-networkpolicy"
)

// Well-known names and defaults.
const (
	// ClusterNetworkDefault is the name of the one ClusterNetwork every component reads.
	ClusterNetworkDefault = "default"
	// DefaultVXLANPort is used when ClusterNetwork.VXLANPort is unset.
	DefaultVXLANPort uint32 = 4789
	// DefaultMTU is the overlay MTU used when ClusterNetwork.MTU is unset.
	DefaultMTU uint32 = 1450
	// MaxEgressNetworkPolicyRules bounds EgressNetworkPolicy.Spec.Egress.
	MaxEgressNetworkPolicyRules = 1000
)

// Annotations, with the keys OpenShift uses.
const (
	// AssignMacvlanAnnotation on a Pod asks for an egress-router macvlan (not implemented).
	AssignMacvlanAnnotation = "pod.network.openshift.io/assign-macvlan"
	// AssignHostSubnetAnnotation on a HostSubnet asks the controller to allocate a subnet
	// for a host that is not a Node.
	AssignHostSubnetAnnotation = "pod.network.openshift.io/assign-subnet"
	// FixedVNIDHostAnnotation on a HostSubnet gives the VNID traffic to that host carries.
	FixedVNIDHostAnnotation = "pod.network.openshift.io/fixed-vnid-host"
	// NodeUIDAnnotation on a HostSubnet records the UID of the Node it belongs to.
	NodeUIDAnnotation = "pod.network.openshift.io/node-uid"
	// MulticastEnabledAnnotation on a NetNamespace ("true") enables multicast.
	MulticastEnabledAnnotation = "netnamespace.network.openshift.io/multicast-enabled"
	// ChangePodNetworkAnnotation on a NetNamespace requests join/isolate/global.
	ChangePodNetworkAnnotation = "pod.network.openshift.io/multitenant.change-network"
)

// Annotations of ovs-sdn's own (not OpenShift's), written by the sdn-controller.
const (
	// HostSubnetConflictAnnotation on a HostSubnet says, in words, that it conflicts
	// with an older HostSubnet (overlapping subnet or the same hostIP) and is ignored
	// by every node (pkg/hostsubnet). It is informational: agents decide with
	// hostsubnet.Resolve on their own cache, not from this annotation.
	HostSubnetConflictAnnotation = "network.ovs-sdn.io/conflict"
	// EgressUnreachableAnnotation on a HostSubnet of an egress node says that the
	// controller's health check finds the node down (value: RFC 3339 time since when).
	// Its egress IPs are inactive (pkg/egressip); automatically assigned ones move.
	EgressUnreachableAnnotation = "network.ovs-sdn.io/egress-unreachable"
)

// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cn
// +kubebuilder:printcolumn:name="Cluster Network",type=string,JSONPath=`.network`
// +kubebuilder:printcolumn:name="Service Network",type=string,JSONPath=`.serviceNetwork`
// +kubebuilder:printcolumn:name="Plugin Name",type=string,JSONPath=`.pluginName`
// +kubebuilder:validation:XValidation:rule="(has(self.network) ? self.network : self.clusterNetworks[0].CIDR) == (has(oldSelf.network) ? oldSelf.network : oldSelf.clusterNetworks[0].CIDR)",fieldPath=".network",reason=FieldValueForbidden,message="network cannot be changed on a running cluster: it is the legacy copy of clusterNetworks[0].CIDR, from which every node's pod subnet was allocated; leave it as it was, or unset it"
// +kubebuilder:validation:XValidation:rule="(has(self.hostsubnetlength) ? self.hostsubnetlength : self.clusterNetworks[0].hostSubnetLength) == (has(oldSelf.hostsubnetlength) ? oldSelf.hostsubnetlength : oldSelf.clusterNetworks[0].hostSubnetLength)",fieldPath=".hostsubnetlength",reason=FieldValueForbidden,message="hostsubnetlength cannot be changed on a running cluster: it is the legacy copy of clusterNetworks[0].hostSubnetLength, the size of every node's allocated pod subnet; leave it as it was, or unset it"
// +kubebuilder:validation:XValidation:rule="(has(self.pluginName) ? self.pluginName.lowerAscii() : 'redhat/openshift-ovs-networkpolicy') == (has(oldSelf.pluginName) ? oldSelf.pluginName.lowerAscii() : 'redhat/openshift-ovs-networkpolicy')",fieldPath=".pluginName",reason=FieldValueForbidden,message="pluginName cannot be changed on a running cluster: the isolation mode decides every namespace's VNID and every node's flows, and nodes switching one by one would isolate namespaces inconsistently; changing the mode needs a new cluster, or a migration that restarts sdn-controller and every sdn-node on a recreated ClusterNetwork"
// +kubebuilder:validation:XValidation:rule="(has(self.vxlanPort) ? self.vxlanPort : 4789) == (has(oldSelf.vxlanPort) ? oldSelf.vxlanPort : 4789)",fieldPath=".vxlanPort",reason=FieldValueForbidden,message="vxlanPort cannot be changed on a running cluster: every node's tunnel port uses it, and nodes switching one by one could not reach each other's pods; changing it needs every sdn-node restarted at once on a recreated ClusterNetwork"
// +kubebuilder:validation:XValidation:rule="(has(self.mtu) ? self.mtu : 1450) == (has(oldSelf.mtu) ? oldSelf.mtu : 1450)",fieldPath=".mtu",reason=FieldValueForbidden,message="mtu cannot be changed on a running cluster: running pods keep the MTU their interfaces were created with and tun0 would disagree with them; changing it needs every pod recreated after every sdn-node restarts on a recreated ClusterNetwork"

// ClusterNetwork describes the cluster's pod and service networks and the isolation mode.
// Exactly one, named "default", is read by the controller and every node agent.
//
// Nothing in it can change while the cluster runs (the API server refuses updates to every
// field, saying why; metadata such as labels may change): nodes derive their subnets, routes,
// tunnels and flows from it once, and a change half-applied — some nodes and not others, or
// the controller and not the pods — would break the network. A field may be set to the value
// it already had by default (mtu 1450, vxlanPort 4789, pluginName networkpolicy).
type ClusterNetwork struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Network is the legacy single cluster CIDR; for "default" it equals clusterNetworks[0].CIDR.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4",message="must be an IPv4 CIDR such as 10.128.0.0/14"
	Network string `json:"network,omitempty"`
	// HostSubnetLength is the legacy number of host bits per node subnet.
	// +optional
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=30
	HostSubnetLength uint32 `json:"hostsubnetlength,omitempty"`
	// ServiceNetwork is the service CIDR.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4",message="must be an IPv4 CIDR such as 172.30.0.0/16"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",message="must be a network address (host bits zero)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",reason=FieldValueForbidden,message="serviceNetwork cannot be changed on a running cluster: Services already hold ClusterIPs from it (it must equal kube-apiserver's --service-cluster-ip-range) and every node sends it to the host's service proxy; changing it needs a new cluster"
	ServiceNetwork string `json:"serviceNetwork"`
	// PluginName selects the isolation mode: redhat/openshift-ovs-subnet,
	// redhat/openshift-ovs-multitenant or redhat/openshift-ovs-networkpolicy.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.lowerAscii() in ['redhat/openshift-ovs-subnet', 'redhat/openshift-ovs-multitenant', 'redhat/openshift-ovs-networkpolicy']",message="must be one of redhat/openshift-ovs-subnet, redhat/openshift-ovs-multitenant, redhat/openshift-ovs-networkpolicy"
	PluginName string `json:"pluginName,omitempty"`
	// ClusterNetworks are the pod CIDRs, each with the host bits of its node subnets.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",reason=FieldValueForbidden,message="clusterNetworks cannot be changed on a running cluster: every node's HostSubnet, pod addresses, routes and flows were derived from these CIDRs and host-subnet lengths, and nothing renumbers them (adding a network would also need every node to route it); fix a mistake before any node joins by deleting and recreating the ClusterNetwork and restarting sdn-controller, otherwise build a new cluster"
	ClusterNetworks []ClusterNetworkEntry `json:"clusterNetworks"` // MinItems, not a CEL rule on the object: that would report the field as "<nil>"
	// VXLANPort is the UDP port of the VXLAN overlay (default 4789).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	VXLANPort *uint32 `json:"vxlanPort,omitempty"`
	// MTU is the overlay MTU of pod interfaces and tun0 (default 1450).
	// +optional
	// +kubebuilder:validation:Minimum=576
	// +kubebuilder:validation:Maximum=65536
	MTU *uint32 `json:"mtu,omitempty"`
}

// ClusterNetworkEntry is one pod CIDR and the size of the node subnets carved from it.
// +kubebuilder:validation:XValidation:rule="!isCIDR(self.CIDR) || self.hostSubnetLength <= 32 - cidr(self.CIDR).prefixLength()",message="hostSubnetLength must not exceed the host bits of CIDR",fieldPath=".hostSubnetLength"
type ClusterNetworkEntry struct {
	// CIDR is the pod network (IPv4). Note the upper-case JSON key, as in OpenShift.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4",message="must be an IPv4 CIDR such as 10.128.0.0/14"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",message="must be a network address (host bits zero)"
	CIDR string `json:"CIDR"`
	// HostSubnetLength is the number of host bits of each node subnet (2..30).
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=30
	HostSubnetLength uint32 `json:"hostSubnetLength"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ClusterNetworkList is a list of ClusterNetworks.
type ClusterNetworkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterNetwork `json:"items"`
}

// HostSubnetEgressIP is an egress IP hosted by a node.
// +kubebuilder:validation:MaxLength=64
// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address"
type HostSubnetEgressIP string

// HostSubnetEgressCIDR is a range from which egress IPs may be assigned to a node.
// +kubebuilder:validation:MaxLength=64
// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4",message="must be an IPv4 CIDR"
type HostSubnetEgressCIDR string

// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=hs
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.host`
// +kubebuilder:printcolumn:name="Host IP",type=string,JSONPath=`.hostIP`
// +kubebuilder:printcolumn:name="Subnet",type=string,JSONPath=`.subnet`
// +kubebuilder:printcolumn:name="Egress CIDRs",type=string,JSONPath=`.egressCIDRs`
// +kubebuilder:printcolumn:name="Egress IPs",type=string,JSONPath=`.egressIPs`

// HostSubnet is the pod subnet of one node (or of a non-node host): named after the node,
// created by the controller.
type HostSubnet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Host is the node name.
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host"`
	// HostIP is the node's underlay IP, the VXLAN tunnel endpoint.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address"
	HostIP string `json:"hostIP"`
	// Subnet is the node's pod CIDR; empty only while an assign-subnet request is pending.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self == '' || (isCIDR(self) && cidr(self).ip().family() == 4)",message="must be an IPv4 CIDR such as 10.128.0.0/23"
	// +kubebuilder:validation:XValidation:rule="self == '' || !isCIDR(self) || cidr(self) == cidr(self).masked()",message="must be a network address (host bits zero)"
	Subnet string `json:"subnet"`
	// EgressIPs are the egress IPs this node hosts.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	EgressIPs []HostSubnetEgressIP `json:"egressIPs,omitempty"`
	// EgressCIDRs are ranges egress IPs may be assigned from automatically.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	EgressCIDRs []HostSubnetEgressCIDR `json:"egressCIDRs,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// HostSubnetList is a list of HostSubnets.
type HostSubnetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []HostSubnet `json:"items"`
}

// NetNamespaceEgressIP is an egress IP requested by a namespace.
// +kubebuilder:validation:MaxLength=64
// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address"
type NetNamespaceEgressIP string

// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=netns
// +kubebuilder:printcolumn:name="NetID",type=integer,JSONPath=`.netid`
// +kubebuilder:printcolumn:name="Egress IPs",type=string,JSONPath=`.egressIPs`
// +kubebuilder:printcolumn:name="Multicast",type=string,JSONPath=`.metadata.annotations.netnamespace\.network\.openshift\.io/multicast-enabled`,priority=1,description="The multicast-enabled annotation (\"true\": on, when every NetNamespace of the NETID has it)."
// +kubebuilder:validation:XValidation:rule="self.netname == self.metadata.name",message="netname must equal metadata.name",fieldPath=".netname"

// NetNamespace carries the VNID of one Namespace, with the same name.
type NetNamespace struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// NetName is the namespace name.
	// +kubebuilder:validation:MaxLength=253
	NetName string `json:"netname"`
	// NetID is the VNID: 0 = global, 1 = control-plane group, 10..16777215 allocated.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=16777215
	NetID uint32 `json:"netid"`
	// EgressIPs are the egress IPs requested for this namespace.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	EgressIPs []NetNamespaceEgressIP `json:"egressIPs,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// NetNamespaceList is a list of NetNamespaces.
type NetNamespaceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NetNamespace `json:"items"`
}

// EgressNetworkPolicyRuleType is Allow or Deny.
// +kubebuilder:validation:Enum=Allow;Deny
type EgressNetworkPolicyRuleType string

// Rule types.
const (
	EgressNetworkPolicyRuleAllow EgressNetworkPolicyRuleType = "Allow"
	EgressNetworkPolicyRuleDeny  EgressNetworkPolicyRuleType = "Deny"
)

// EgressNetworkPolicyPeer is the destination of a rule: exactly one of CIDRSelector and DNSName.
// +kubebuilder:validation:XValidation:rule="has(self.cidrSelector) != has(self.dnsName)",message="exactly one of cidrSelector and dnsName must be set"
type EgressNetworkPolicyPeer struct {
	// CIDRSelector is the destination IPv4 CIDR, a network address (host bits zero).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4",message="must be an IPv4 CIDR such as 1.2.3.0/24"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",message="must be a network address (host bits zero)"
	CIDRSelector string `json:"cidrSelector,omitempty"`
	// DNSName is the destination host name: DNS-1123 subdomain syntax (dot-separated labels
	// of letters, digits and '-', 1-63 characters each, starting and ending with a letter or
	// digit; at most 253 characters), compared case-insensitively, optionally with one
	// trailing '.' (the name is always absolute: no search domains apply). Wildcards are not
	// accepted (an A query cannot enumerate the names of a zone) and neither is an IP address
	// (that is a cidrSelector).
	// +optional
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:XValidation:rule="!self.contains('*')",message="wildcards are not supported: list each host name"
	// +kubebuilder:validation:XValidation:rule="self.contains('*') || self.matches('^([a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?[.])*[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?[.]?$')",message="must be a DNS-1123 subdomain: dot-separated labels of letters, digits and '-' (1-63 characters, starting and ending with a letter or digit), optionally one trailing '.'"
	// +kubebuilder:validation:XValidation:rule="size(self) <= 253 || (size(self) == 254 && self.endsWith('.'))",message="must be at most 253 characters, not counting a trailing '.'"
	// +kubebuilder:validation:XValidation:rule="!self.matches('(^|[.])[0-9]+[.]?$')",message="must be a host name, not an IP address (use cidrSelector): the last label must not be all digits"
	DNSName string `json:"dnsName,omitempty"`
}

// EgressNetworkPolicyRule allows or denies traffic to one destination.
type EgressNetworkPolicyRule struct {
	// Type is Allow or Deny.
	Type EgressNetworkPolicyRuleType `json:"type"`
	// To is the destination.
	To EgressNetworkPolicyPeer `json:"to"`
}

// EgressNetworkPolicySpec is the ordered list of rules; the first match wins.
type EgressNetworkPolicySpec struct {
	// Egress is the ordered rule list (at most 1000).
	// +kubebuilder:validation:MaxItems=1000
	Egress []EgressNetworkPolicyRule `json:"egress"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=enp

// EgressNetworkPolicy is a namespace's egress firewall for traffic leaving the cluster.
type EgressNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec holds the rules.
	Spec EgressNetworkPolicySpec `json:"spec"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// EgressNetworkPolicyList is a list of EgressNetworkPolicies.
type EgressNetworkPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EgressNetworkPolicy `json:"items"`
}
