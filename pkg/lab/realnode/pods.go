package realnode

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// podSandbox is what removePods needs of `crictl inspectp -o json`.
type podSandbox struct {
	Status struct {
		ID    string `json:"id"`
		Linux struct {
			Namespaces struct {
				Options struct {
					Network string `json:"network"` // "POD" or "NODE"
				} `json:"options"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"status"`
}

// sandboxes returns the node's pod sandbox IDs, split into those with a network namespace
// of their own and host-network ones.
func (n *Node) sandboxes(ctx context.Context) (podNet, hostNet []string, err error) {
	out, err := n.Crictl(ctx, "pods", "--quiet")
	if err != nil {
		return nil, nil, err
	}
	for _, id := range strings.Fields(out) {
		js, err := n.Crictl(ctx, "inspectp", "--output", "json", id)
		if err != nil {
			continue // gone meanwhile
		}
		var p podSandbox
		if json.Unmarshal([]byte(js), &p) == nil && p.Status.Linux.Namespaces.Options.Network == "NODE" {
			hostNet = append(hostNet, id)
		} else {
			podNet = append(podNet, id)
		}
	}
	return podNet, hostNet, nil
}

// removePods stops and removes every pod sandbox through the runtime, so each pod's
// network goes through CNI DEL: pods with their own network first, while a host-network
// CNI agent still serves them, then the host-network ones. Best effort within timeout:
// what is left is killed and its namespaces die with the node's.
func (n *Node) removePods(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	podNet, hostNet, err := n.sandboxes(ctx)
	if err != nil {
		n.progress("listing pods for removal: %v", err)
		return
	}
	for _, ids := range [][]string{podNet, hostNet} {
		if len(ids) == 0 {
			continue
		}
		if _, err := n.Crictl(ctx, append([]string{"stopp"}, ids...)...); err != nil {
			n.progress("stopping pods: %v", err)
		}
		if _, err := n.Crictl(ctx, append([]string{"rmp", "--force"}, ids...)...); err != nil {
			n.progress("removing pods: %v", err)
		}
	}
}
