// Command sdn-cni is ovs-sdn's CNI plugin (type "ovs-sdn"). It is a shim:
// it forwards each invocation to the node agent over a root-only unix
// socket and prints the agent's answer (see pkg/cni/shim, and pkg/cni for
// the server). It links only package shim, so each exec stays cheap.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/ovs-sdn/ovs-sdn/pkg/cni/shim"
)

func main() {
	skel.PluginMainFuncs(shim.PluginFuncs(), shim.PluginVersions(), "ovs-sdn CNI plugin (forwards to the sdn-node agent)")
}
