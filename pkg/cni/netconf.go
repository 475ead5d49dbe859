package cni

import (
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni/shim"
)

// NetworkName is the network name of the conflist the agent writes.
const NetworkName = "ovs-sdn"

// The plugin's names and codes, defined with the shim (package shim) and
// repeated here for the agent's callers.
const (
	PluginType            = shim.PluginType
	DefaultSocketPath     = shim.DefaultSocketPath
	ErrStatusNotAvailable = shim.ErrStatusNotAvailable
	ErrSubnetFull         = shim.ErrSubnetFull
)

// PodArgs are the Kubernetes keys of CNI_ARGS.
type PodArgs struct {
	Namespace, Name, UID string
}

// ParsePodArgs reads K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID from
// CNI_ARGS ("k=v;k=v"); other keys are ignored. It does not require them;
// validPod does.
func ParsePodArgs(cniArgs string) (PodArgs, error) {
	var p PodArgs
	if cniArgs == "" {
		return p, nil
	}
	for _, kv := range strings.Split(cniArgs, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return PodArgs{}, types.NewError(types.ErrInvalidEnvironmentVariables,
				fmt.Sprintf("ovs-sdn: CNI_ARGS entry %q is not KEY=VALUE", kv), "")
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			p.Namespace = v
		case "K8S_POD_NAME":
			p.Name = v
		case "K8S_POD_UID":
			p.UID = v
		}
	}
	return p, nil
}

// validPod requires a Kubernetes namespace and pod name in CNI_ARGS.
func (p PodArgs) validPod() error {
	if p.Namespace == "" || p.Name == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			"ovs-sdn: CNI_ARGS lacks K8S_POD_NAMESPACE or K8S_POD_NAME",
			"ovs-sdn attaches Kubernetes pods only; the container runtime must pass the pod's namespace and name (kubelet does)")
	}
	if errs := validation.IsDNS1123Label(p.Namespace); len(errs) > 0 {
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("ovs-sdn: K8S_POD_NAMESPACE %q is not a namespace name", p.Namespace), strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(p.Name); len(errs) > 0 {
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("ovs-sdn: K8S_POD_NAME %q is not a pod name", p.Name), strings.Join(errs, "; "))
	}
	return nil
}
