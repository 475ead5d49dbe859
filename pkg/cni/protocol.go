package cni

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni/shim"
)

// request is a validated shim.Request.
type request struct {
	shim.Request
	conf *shim.NetConf
	pod  PodArgs
}

// decodeRequest decodes and validates a request body as the server does.
// Errors are *types.Error with the code the shim prints.
func decodeRequest(body []byte) (*request, error) {
	var r shim.Request
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "ovs-sdn: malformed request from the plugin", err.Error())
	}
	return validateRequest(r)
}

func validateRequest(r shim.Request) (*request, error) {
	if err := validateEnv(r); err != nil {
		return nil, err
	}
	conf, err := shim.ParseNetConf(r.Config)
	if err != nil {
		return nil, err
	}
	pod, err := ParsePodArgs(r.Args)
	if err != nil {
		return nil, err
	}
	if r.Command == shim.CmdAdd || r.Command == shim.CmdCheck {
		if err := pod.validPod(); err != nil {
			return nil, err
		}
	}
	return &request{Request: r, conf: conf, pod: pod}, nil
}

// validateEnv checks the CNI_* variables the command needs, as skel does,
// so a request that did not come through skel is held to the same rules.
func validateEnv(r shim.Request) error {
	switch r.Command {
	case shim.CmdAdd, shim.CmdCheck, shim.CmdDel:
	case shim.CmdGC, shim.CmdStatus:
		return nil
	default:
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("ovs-sdn: unknown CNI_COMMAND %q", r.Command), "")
	}
	if err := utils.ValidateContainerID(r.ContainerID); err != nil {
		return err
	}
	if err := utils.ValidateInterfaceName(r.IfName); err != nil {
		return err
	}
	if r.Command != shim.CmdDel && r.Netns == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "ovs-sdn: CNI_NETNS is required for "+r.Command, "")
	}
	if r.Netns != "" && !filepath.IsAbs(r.Netns) {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("ovs-sdn: CNI_NETNS %q is not an absolute path", r.Netns), "")
	}
	return nil
}
