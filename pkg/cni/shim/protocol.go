package shim

import "encoding/json"

// The shim ↔ agent protocol: HTTP/1.1 over the unix socket, one
// `POST /cni` per CNI invocation, keep-alives off. The body is a Request
// (JSON). The agent answers 200 with the plugin's stdout on success — the
// ADD result already converted to the request's cniVersion, empty for the
// other commands — or a non-200 status with a types.Error (JSON) that the
// shim prints as it is.
const RequestPath = "/cni"

// MaxRequestBytes bounds a request body (netconfs are small; a GC with many
// valid attachments is the largest).
const MaxRequestBytes = 4 << 20

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
