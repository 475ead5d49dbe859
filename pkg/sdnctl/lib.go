package sdnctl

import (
	"context"
	"fmt"
	"io"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Library entry points: what sdn-lab, the demo and tests call to do what an
// operator does with sdnctl, without going through Main's argument parsing
// and exit codes (cmd/sdnctl is the only caller of Main).

// ClientsFromKubeconfig builds the API clients of the kubeconfig file at path
// (its current context).
func ClientsFromKubeconfig(path string) (*Clients, error) {
	f := newFactory(nil)
	f.kubeconfig = path
	return f.Clients()
}

// GetTable writes what `sdnctl get KIND` prints for every object of kind
// (hostsubnets, netnamespaces, …): oc's columns, with headers.
func GetTable(ctx context.Context, clients *Clients, kind string, out io.Writer) error {
	reg, err := loadResources()
	if err != nil {
		return err
	}
	res, err := reg.lookup(kind)
	if err != nil {
		return err
	}
	objs, err := listAll(ctx, resourceClient(clients.Dynamic, res, metav1.NamespaceAll, true), "")
	if err != nil {
		return err
	}
	return printObjects(out, res, objs, printOptions{Format: outputTable, WithNamespace: res.Namespaced, Now: time.Now()})
}

// Pod network changes for ChangePodNetwork: oc adm pod-network's three verbs.
const (
	PodNetworkJoin    = "join"
	PodNetworkIsolate = "isolate"
	PodNetworkGlobal  = "global"
)

// ChangePodNetwork does what `sdnctl pod-network join-projects --to=TO`,
// `isolate-projects` or `make-projects-global` does for projects (verb
// PodNetworkJoin, PodNetworkIsolate or PodNetworkGlobal): it annotates their
// NetNamespaces, waits (DefaultPodNetworkBackoff) until the controller has
// applied or refused the change, and writes one line per project to out. It
// does not check the cluster's mode; the controller refuses changes outside
// multitenant mode, which is reported as an error.
func ChangePodNetwork(ctx context.Context, clients *Clients, verb, to string, projects []string, out io.Writer) error {
	if verb != PodNetworkJoin && verb != PodNetworkIsolate && verb != PodNetworkGlobal {
		return fmt.Errorf("unknown pod network change %q", verb)
	}
	if (verb == PodNetworkJoin) != (to != "") {
		return fmt.Errorf("pod network change %q: a project to join is needed for %q and only for it", verb, PodNetworkJoin)
	}
	a := &podNetworkApplier{clients: clients, change: podNetworkChange{verb: verb, to: to}, backoff: DefaultPodNetworkBackoff, out: out}
	return a.apply(ctx, projects)
}

// SetMulticast does what `sdnctl pod-network enable-multicast` (enable) or
// `disable-multicast` does for projects: it sets or removes the NetNamespace
// multicast annotation, writes one line per project to out, and waits (at
// most DefaultMulticastTimeout) until br0 on every node in ovsRundirs (node
// name → OVS run directory, as --ovs-rundir) has the table-110 flows of the
// projects' VNIDs exactly when those VNIDs have multicast. Nodes missing
// from ovsRundirs are named on out and not waited for. It does not check the
// cluster's plugin.
func SetMulticast(ctx context.Context, clients *Clients, enable bool, projects []string, ovsRundirs map[string]string, out io.Writer) error {
	a := &multicastApplier{clients: clients, enable: enable, reach: &nodeReach{bridge: "br0", rundirs: ovsRundirs},
		backend: execBackend{}, timeout: DefaultMulticastTimeout, out: out, errOut: out}
	return a.apply(ctx, projects)
}
