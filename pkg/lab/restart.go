package lab

import (
	"context"
	"fmt"
)

// KillAgent kills node n's agent with SIGKILL (a crash: flows, conflist and
// OVS state stay as they were) and starts the sdn-node binary again with
// the same flags, returning once the new agent is ready. Traffic keeps
// flowing meanwhile on the flows already on br0.
func (l *Lab) KillAgent(ctx context.Context, n *Node) error {
	if n.Agent != nil {
		n.Agent.Stop(0)
	}
	if err := l.startAgent(n); err != nil {
		return fmt.Errorf("node %s: restarting the agent: %w", n.Name, err)
	}
	return l.waitAgent(ctx, n)
}
