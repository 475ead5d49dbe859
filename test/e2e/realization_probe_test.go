package e2e

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/ovs-sdn/ovs-sdn/pkg/lab"
	"github.com/ovs-sdn/ovs-sdn/pkg/lab/kubelet"
)

// probePair is one probed path of a realization benchmark: TCP from a pod
// to an address, port 80.
type probePair struct {
	from types.NamespacedName
	to   netip.Addr
}

// slowestOutcome probes every pair in parallel (firstOutcomeTo) until each
// has shown want and returns the latest time since t0 (zero t0: just wait);
// false when some pair did not show it within the time given.
func slowestOutcome(ctx context.Context, l *lab.Lab, pairs []probePair, want kubelet.Outcome, t0 time.Time, within time.Duration) (time.Duration, bool) {
	deadline := time.Now().Add(within)
	firsts := make([]time.Time, len(pairs))
	var wg sync.WaitGroup
	for i, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			firsts[i] = firstOutcomeTo(ctx, l, p.from, p.to, want, deadline)
		}()
	}
	wg.Wait()
	var worst time.Duration
	for _, f := range firsts {
		if f.IsZero() {
			return 0, false
		}
		if !t0.IsZero() {
			worst = max(worst, f.Sub(t0))
		}
	}
	return worst, true
}

// firstOutcomeTo launches a TCP connection from `from` to to:80 every 20 ms
// (150 ms timeout) and returns when the new state began: the end of the
// first probe that connected (want Connected) or the launch of the first
// probe that was dropped with no later probe connecting (want TimedOut).
func firstOutcomeTo(ctx context.Context, l *lab.Lab, from types.NamespacedName, to netip.Addr, want kubelet.Outcome, deadline time.Time) time.Time {
	const timeout = 150 * time.Millisecond
	var mu sync.Mutex
	var first time.Time
	var wg sync.WaitGroup
	defer wg.Wait()
	for time.Now().Before(deadline) {
		launch := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := l.Kubelets.Probe(ctx, from, netip.AddrPortFrom(to, 80), tcp, timeout)
			end := time.Now()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && r.Outcome == want && want == kubelet.Connected:
				if first.IsZero() || end.Before(first) {
					first = end
				}
			case err == nil && r.Outcome == want:
				if first.IsZero() || launch.Before(first) {
					first = launch
				}
			case !first.IsZero() && launch.After(first):
				first = time.Time{} // a later probe still saw the old state
			}
		}()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		f := first
		mu.Unlock()
		if !f.IsZero() && time.Since(f) > 3*timeout {
			wg.Wait() // every probe launched after f has ended
			mu.Lock()
			f = first
			mu.Unlock()
			if !f.IsZero() {
				return f
			}
		}
	}
	return time.Time{}
}
