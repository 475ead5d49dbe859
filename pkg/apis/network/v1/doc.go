// Package v1 holds the network.openshift.io/v1 API: ClusterNetwork, HostSubnet,
// NetNamespace and EgressNetworkPolicy. Field names and JSON keys are identical to
// OpenShift's so existing manifests, `oc get` and `oc adm pod-network` keep working.
//
// +k8s:deepcopy-gen=package
// +groupName=network.openshift.io
package v1
