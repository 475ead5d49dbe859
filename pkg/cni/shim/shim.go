// Package shim is sdn-cni, the CNI plugin binary the container runtime
// execs for every pod (type "ovs-sdn"), and the wire protocol it shares
// with the node agent's CNI server (package cni): it forwards each
// invocation over the agent's unix socket and prints the answer.
//
// It must stay small — it is exec'ed twice per pod (ADD, DEL), with 50
// pods starting at once on a 2-core node — so it imports only the CNI
// library and the standard library; a test (TestShimImports) keeps it so.
package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// Timeout bounds one forwarded request. ADD waits for OVS and for the
// pod's flows; kubelet's own CNI timeout is longer.
const Timeout = 2 * time.Minute

// ErrStatusNotAvailable is CNI error 50 (spec 1.1.0 STATUS): the plugin
// cannot service ADD requests now.
const ErrStatusNotAvailable uint = 50

// ErrSubnetFull is our plugin-specific code (codes >= 100 are the plugin's)
// for "every address of the node subnet is leased".
const ErrSubnetFull uint = 100

// msgAgentNotRunning is what a person reads when the socket is not there.
const msgAgentNotRunning = "ovs-sdn node agent is not running on this node"

// PluginFuncs returns the skel callbacks of the sdn-cni shim. Each forwards
// the invocation to the node agent and prints what it answers; the shim
// holds no logic that needs cluster state.
func PluginFuncs() skel.CNIFuncs {
	return skel.CNIFuncs{
		Add:    func(a *skel.CmdArgs) error { return forward(CmdAdd, a, os.Stdout) },
		Del:    func(a *skel.CmdArgs) error { return forward(CmdDel, a, os.Stdout) },
		Check:  func(a *skel.CmdArgs) error { return forward(CmdCheck, a, os.Stdout) },
		GC:     func(a *skel.CmdArgs) error { return forward(CmdGC, a, os.Stdout) },
		Status: func(a *skel.CmdArgs) error { return forward(CmdStatus, a, os.Stdout) },
	}
}

// forward sends one invocation to the agent; an ADD result is printed to
// stdout in the request's cniVersion.
func forward(cmd string, a *skel.CmdArgs, stdout io.Writer) error {
	conf, err := ParseNetConf(a.StdinData)
	if err != nil {
		return err
	}
	req := Request{Command: cmd, ContainerID: a.ContainerID, Netns: a.Netns,
		IfName: a.IfName, Args: a.Args, Config: a.StdinData}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	out, err := Send(ctx, conf.SocketPath(), req)
	if err != nil || cmd != CmdAdd {
		return err
	}
	res, err := version.NewResult(conf.CNIVersion, out)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "ovs-sdn: the node agent returned an unreadable result", err.Error())
	}
	return res.PrintTo(stdout)
}

// Send posts req to the agent at socketPath and returns the response body.
// Errors are *types.Error: the agent's own, or code 11 (50 for STATUS)
// with msgAgentNotRunning when nothing listens on the socket.
func Send(ctx context.Context, socketPath string, req Request) ([]byte, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, types.NewError(types.ErrInternal, "ovs-sdn: encode request", err.Error())
	}
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
	}}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://ovs-sdn"+RequestPath, bytes.NewReader(body))
	if err != nil {
		return nil, types.NewError(types.ErrInternal, "ovs-sdn: build request", err.Error())
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, transportError(req.Command, socketPath, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, MaxRequestBytes))
	if err != nil {
		return nil, types.NewError(types.ErrIOFailure, "ovs-sdn: reading the node agent's answer", err.Error())
	}
	if resp.StatusCode == http.StatusOK {
		return out, nil
	}
	var cerr types.Error
	if json.Unmarshal(out, &cerr) != nil || cerr.Msg == "" {
		return nil, types.NewError(types.ErrInternal,
			fmt.Sprintf("ovs-sdn: node agent answered HTTP %d", resp.StatusCode), string(out))
	}
	return nil, &cerr
}

// transportError explains a failure to talk to the agent.
func transportError(cmd, socketPath string, err error) error {
	code := types.ErrTryAgainLater
	if cmd == CmdStatus {
		code = ErrStatusNotAvailable
	}
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return types.NewError(code, msgAgentNotRunning,
			fmt.Sprintf("nothing is listening on %s (%v); check the sdn-node pod of this node", socketPath, err))
	case errors.Is(err, syscall.EACCES):
		return types.NewError(types.ErrInternal, "ovs-sdn: permission denied on the node agent's socket "+socketPath,
			"the plugin must run as root, as the container runtime does")
	case errors.Is(err, context.DeadlineExceeded):
		return types.NewError(code, "ovs-sdn: the node agent did not answer in time",
			fmt.Sprintf("%s via %s: %v", cmd, socketPath, err))
	}
	return types.NewError(code, "ovs-sdn: cannot reach the node agent", fmt.Sprintf("%s: %v", socketPath, err))
}
