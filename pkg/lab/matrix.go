package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
)

// Matrix is pod-to-pod reachability: rows are clients, columns servers.
type Matrix struct {
	Clients, Servers []types.NamespacedName
	Cells            map[[2]types.NamespacedName]kubelet.Outcome
	Errs             map[[2]types.NamespacedName]error
}

// Allowed is an expectation: which (client, server) pairs should connect.
type Allowed map[[2]types.NamespacedName]bool

// ProbeMatrix probes every client → server pair (TCP to port, in
// parallel).
func (l *Lab) ProbeMatrix(ctx context.Context, clients, servers []types.NamespacedName, ips map[types.NamespacedName]netip.Addr, port uint16, timeout time.Duration) Matrix {
	m := Matrix{Clients: clients, Servers: servers,
		Cells: map[[2]types.NamespacedName]kubelet.Outcome{}, Errs: map[[2]types.NamespacedName]error{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range clients {
		for _, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := l.Probe(ctx, c, ips[s], port, corev1.ProtocolTCP, timeout)
				mu.Lock()
				defer mu.Unlock()
				m.Cells[[2]types.NamespacedName{c, s}] = out
				if err != nil {
					m.Errs[[2]types.NamespacedName{c, s}] = err
				}
			}()
		}
	}
	wg.Wait()
	return m
}

// Matches reports whether every cell is Connected exactly where want says.
func (m Matrix) Matches(want Allowed) bool {
	for k, out := range m.Cells {
		if (out == kubelet.Connected) != want[k] {
			return false
		}
	}
	return true
}

// ProbeUntil probes the matrix until it matches want or within expires,
// and returns the last matrix: policy realization takes a moment, and a
// matrix printed too early would show the old state.
func (l *Lab) ProbeUntil(ctx context.Context, want Allowed, within time.Duration, clients, servers []types.NamespacedName, ips map[types.NamespacedName]netip.Addr, port uint16) Matrix {
	deadline := time.Now().Add(within)
	for {
		m := l.ProbeMatrix(ctx, clients, servers, ips, port, 1500*time.Millisecond)
		if m.Matches(want) || time.Now().After(deadline) || ctx.Err() != nil {
			return m
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func cellText(out kubelet.Outcome, err error) string {
	switch {
	case err != nil:
		return "error"
	case out == kubelet.Connected:
		return "✓"
	case out == kubelet.Refused:
		return "refused"
	case out == kubelet.TimedOut:
		return "✗"
	}
	return "?"
}

// Render prints the matrix; a cell that differs from want is marked "!".
// It returns the number of such cells.
func (m Matrix) Render(w io.Writer, want Allowed) int {
	width := 16
	for _, p := range append(append([]types.NamespacedName{}, m.Clients...), m.Servers...) {
		width = max(width, len(p.String())+2)
	}
	fmt.Fprintf(w, "    %-*s", width, "from \\ to")
	for _, s := range m.Servers {
		fmt.Fprintf(w, "%-*s", width, s.String())
	}
	fmt.Fprintln(w)
	bad := 0
	for _, c := range m.Clients {
		fmt.Fprintf(w, "    %-*s", width, c.String())
		for _, s := range m.Servers {
			k := [2]types.NamespacedName{c, s}
			txt := cellText(m.Cells[k], m.Errs[k])
			if (m.Cells[k] == kubelet.Connected) != want[k] {
				txt += " !"
				bad++
			}
			fmt.Fprintf(w, "%-*s", width, txt) // fmt pads by runes
		}
		fmt.Fprintln(w)
	}
	for k, err := range m.Errs {
		fmt.Fprintf(w, "    probe %s → %s: %v\n", k[0], k[1], err)
	}
	return bad
}
