package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// errPortInUse marks a start failure caused by a port taken after it was chosen; Start
// retries those with new ports.
var errPortInUse = errors.New("port already in use")

// pollInterval is how often readiness checks are repeated.
const pollInterval = 100 * time.Millisecond

// freePorts returns n distinct free TCP ports on 127.0.0.1. The ports are released before
// returning, so another process may take one before ours binds it; Start retries then.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitReady calls check every pollInterval until it returns nil. It fails when ctx ends or
// p exits first; the error names what was awaited, the last check error and the tail of
// p's log, and wraps errPortInUse when the log says a port was taken.
func waitReady(ctx context.Context, p *process, what string, check func(context.Context) error) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return startFailure(p, fmt.Errorf("%s: %s before it was ready (last check: %v)", what, p.describeExit(), last))
		case <-ctx.Done():
			return startFailure(p, fmt.Errorf("%s: not ready: %w (last check: %v)", what, ctx.Err(), last))
		case <-ticker.C:
		}
	}
}

// startFailure appends p's log tail to err and classifies port clashes.
func startFailure(p *process, err error) error {
	tail := p.logTail()
	if strings.Contains(tail, "address already in use") {
		err = fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, p.logPath, tail)
}
