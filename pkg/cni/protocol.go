package cni

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"
)

// The shim ↔ agent protocol: HTTP/1.1 over the unix socket, one
// `POST /cni` per CNI invocation, keep-alives off. The body is a Request
// (JSON). The agent answers 200 with the plugin's stdout on success — the
// ADD result already converted to the request's cniVersion, empty for the
// other commands — or a non-200 status with a types.Error (JSON) that the
// shim prints as it is.
const requestPath = "/cni"

// maxRequestBytes bounds a request body (netconfs are small; a GC with many
// valid attachments is the largest).
const maxRequestBytes = 4 << 20

// CNI commands.
const (
	CmdAdd    = "ADD"
	CmdDel    = "DEL"
	CmdCheck  = "CHECK"
	CmdGC     = "GC"
	CmdStatus = "STATUS"
)

// Request is one CNI invocation, forwarded by the shim: its CNI_*
// environment and its stdin.
type Request struct {
	Command     string `json:"command"`               // CNI_COMMAND
	ContainerID string `json:"containerID,omitempty"` // CNI_CONTAINERID
	Netns       string `json:"netns,omitempty"`       // CNI_NETNS
	IfName      string `json:"ifName,omitempty"`      // CNI_IFNAME
	Args        string `json:"args,omitempty"`        // CNI_ARGS
	// Config is the netconf from stdin, verbatim.
	Config json.RawMessage `json:"config"`
}

// request is a validated Request.
type request struct {
	Request
	conf *NetConf
	pod  PodArgs
}

// decodeRequest decodes and validates a request body as the server does.
// Errors are *types.Error with the code the shim prints.
func decodeRequest(body []byte) (*request, error) {
	var r Request
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "ovs-sdn: malformed request from the plugin", err.Error())
	}
	return validateRequest(r)
}

func validateRequest(r Request) (*request, error) {
	if err := validateEnv(r); err != nil {
		return nil, err
	}
	conf, err := ParseNetConf(r.Config)
	if err != nil {
		return nil, err
	}
	pod, err := ParsePodArgs(r.Args)
	if err != nil {
		return nil, err
	}
	if r.Command == CmdAdd || r.Command == CmdCheck {
		if err := pod.validPod(); err != nil {
			return nil, err
		}
	}
	return &request{Request: r, conf: conf, pod: pod}, nil
}

// validateEnv checks the CNI_* variables the command needs, as skel does,
// so a request that did not come through skel is held to the same rules.
func validateEnv(r Request) error {
	switch r.Command {
	case CmdAdd, CmdCheck, CmdDel:
	case CmdGC, CmdStatus:
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
	if r.Command != CmdDel && r.Netns == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "ovs-sdn: CNI_NETNS is required for "+r.Command, "")
	}
	if r.Netns != "" && !filepath.IsAbs(r.Netns) {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("ovs-sdn: CNI_NETNS %q is not an absolute path", r.Netns), "")
	}
	return nil
}
