// Package apigate lets a daemon's informers catch up within about a second
// after the API server comes back from an outage, instead of after
// client-go's back-off (SPEC §11: "API server back after an outage: every
// agent applies new changes within 5 s").
//
// # Why client-go waits
//
// A reflector (the list-and-watch loop behind every informer) retries a
// watch that fails with "connection refused", and re-lists after any other
// failure, after a delay from one exponential back-off manager per
// reflector: 800 ms doubling per failure up to 30 s, each delay jittered by
// up to +100 %, reset only after two minutes without a failure
// (k8s.io/client-go/tools/cache.NewReflectorWithOptions; neither the
// SharedInformerFactory nor ReflectorOptions lets a caller change it).
// During an outage every retry fails, so when the server returns each
// reflector is asleep for up to 30–60 s: measured 18–53 s from the first
// write after a 15–20 s outage to the node agent applying it.
//
// # What the gate does
//
// The gate sits in the client's transport (rest.Config.WrapTransport). When
// a read (GET) fails without an HTTP response — the server is unreachable:
// connection refused or reset, TLS or HTTP/2 connection lost — the gate
// closes: that request and every read after it are held inside RoundTrip,
// and one prober asks GET /readyz until the server answers 200. Then the
// gate opens, and every held request is sent (again) at once. A reflector
// therefore never sees its watch or list fail during an outage, its back-off
// never grows, and it resumes the moment the server is ready: its re-watch
// continues from the resource version it had (or, when the restarted
// server no longer has it, the reflector re-lists after at most one short
// back-off step), so caches stay consistent with no restart of any
// informer and no new handler events beyond the changes themselves.
//
// Only reads are held and re-sent: re-sending a GET is harmless, whereas a
// write whose connection broke may have been applied. Writes fail at once
// while the gate is closed, as without it (the event recorder and
// controllers retry on their own). A held request still honours its
// context (and http.Client timeouts).
//
// # Load on a server that is down
//
// While the gate is closed the process sends the server nothing but the
// probe: the first 100 ms after the failure, then at doubling intervals up
// to one per ProbePeriod (default 1 s), each bounded by ProbeTimeout
// (default 2 s). A gate that closes again within two probe periods of
// opening starts at one per ProbePeriod, so a server that answers /readyz
// but fails reads is not asked faster than that either. Without the gate every reflector (six to ten per node
// agent) retries on its own back-off. When the server is back the held
// requests go out together — what the reflectors would send anyway, but
// without waiting.
package apigate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

// Defaults of Options.
const (
	DefaultFirstProbe   = 100 * time.Millisecond
	DefaultProbePeriod  = time.Second
	DefaultProbeTimeout = 2 * time.Second
)

// stillDownLogPeriod is how often a closed gate logs the last probe error
// (a wrong server address in a kubeconfig must not go unnoticed).
const stillDownLogPeriod = 30 * time.Second

// Options tunes a Gate; zero fields take the defaults.
type Options struct {
	// FirstProbe is the delay from the failure that closes the gate to the
	// first probe; each later probe waits twice as long as the previous
	// one, up to ProbePeriod.
	FirstProbe, ProbePeriod time.Duration
	// ProbeTimeout bounds one probe.
	ProbeTimeout time.Duration
	// OnChange, if set, is called (from the gate's goroutines) when the
	// gate closes (down=true, with the error that closed it) and when it
	// opens again (down=false, with how long it was closed).
	OnChange func(down bool, err error, closedFor time.Duration)
}

// ProbeFunc reports whether the API server is ready: nil means ready.
type ProbeFunc func(ctx context.Context) error

// Gate holds reads to an API server while it is unreachable. Create it with
// New or ForConfig; it is safe for concurrent use, and its zero state is
// open. A Gate belongs to one API server (one rest.Config).
type Gate struct {
	ctx   context.Context // ends probing
	probe ProbeFunc
	opts  Options

	mu       sync.Mutex
	open     chan struct{} // closed while the gate is open
	closedAt time.Time
	openedAt time.Time
	probes   int
}

// New returns an open gate that checks the server with probe while it is
// closed. ctx bounds the gate's life: once it is done no probe runs and
// held requests fail with ctx's error.
func New(ctx context.Context, probe ProbeFunc, opts Options) *Gate {
	if opts.FirstProbe <= 0 {
		opts.FirstProbe = DefaultFirstProbe
	}
	if opts.ProbePeriod <= 0 {
		opts.ProbePeriod = DefaultProbePeriod
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = DefaultProbeTimeout
	}
	open := make(chan struct{})
	close(open)
	return &Gate{ctx: ctx, probe: probe, opts: opts, open: open}
}

// ForConfig creates a gate for the API server of rc and installs it in rc
// (rc.Wrap), so every client made from rc afterwards goes through it. The
// probe is GET /readyz through a client made from rc as it was before (the
// probe itself is never held).
func ForConfig(ctx context.Context, rc *rest.Config, opts Options) (*Gate, error) {
	probe, err := ReadyzProbe(rest.CopyConfig(rc))
	if err != nil {
		return nil, err
	}
	g := New(ctx, probe, opts)
	rc.Wrap(g.Wrap)
	return g, nil
}

// ReadyzProbe returns a probe that asks rc's server for /readyz and wants
// 200 "ok" (kube-apiserver answers 500 until its post-start hooks — among
// them the CRD handlers — are done).
func ReadyzProbe(rc *rest.Config) (ProbeFunc, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("API server probe: %w", err)
	}
	return func(ctx context.Context) error {
		body, err := dc.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return err
		}
		if string(body) != "ok" {
			return fmt.Errorf("/readyz: %q", body)
		}
		return nil
	}, nil
}

// Wrap returns rt behind the gate (a rest.Config WrapTransport function).
func (g *Gate) Wrap(rt http.RoundTripper) http.RoundTripper { return &transport{g: g, rt: rt} }

// Closed reports whether the gate is holding reads.
func (g *Gate) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		return false
	default:
		return true
	}
}

// Probes returns how many probes the gate has sent.
func (g *Gate) Probes() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.probes
}

// wait returns once the gate is open, or ctx's (or the gate's) error.
func (g *Gate) wait(ctx context.Context) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-g.ctx.Done():
		return fmt.Errorf("API server unreachable and the client is stopping: %w", g.ctx.Err())
	}
}

// close closes the gate after a failure (if it is open) and starts the
// prober.
func (g *Gate) close(cause error) {
	g.mu.Lock()
	select {
	case <-g.open:
	default:
		g.mu.Unlock()
		return // closed already: one prober
	}
	g.open = make(chan struct{})
	g.closedAt = time.Now()
	open := g.open
	// A server that is ready but keeps failing requests must not make the
	// gate cycle at the fast first-probe rate.
	first := g.opts.FirstProbe
	if g.closedAt.Sub(g.openedAt) < 2*g.opts.ProbePeriod {
		first = g.opts.ProbePeriod
	}
	g.mu.Unlock()
	if g.opts.OnChange != nil {
		g.opts.OnChange(true, cause, 0)
	}
	go g.probeUntilReady(open, first)
}

// probeUntilReady probes at growing intervals, from first, until the
// server is ready, then opens the gate.
func (g *Gate) probeUntilReady(open chan struct{}, first time.Duration) {
	delay := first
	var last error
	logged := time.Now()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-time.After(delay):
		}
		if last = g.probeOnce(); last == nil {
			break
		}
		if time.Since(logged) >= stillDownLogPeriod {
			logged = time.Now()
			klog.InfoS("API server still unreachable or not ready; reads held", "for", time.Since(g.closedAt).Round(time.Second), "err", last)
		} else {
			klog.V(4).InfoS("API server not ready yet", "err", last)
		}
		delay = min(2*delay, g.opts.ProbePeriod)
	}
	g.mu.Lock()
	g.openedAt = time.Now()
	closedFor := g.openedAt.Sub(g.closedAt)
	close(open)
	g.mu.Unlock()
	if g.opts.OnChange != nil {
		g.opts.OnChange(false, nil, closedFor)
	}
}

func (g *Gate) probeOnce() error {
	g.mu.Lock()
	g.probes++
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(g.ctx, g.opts.ProbeTimeout)
	defer cancel()
	return g.probe(ctx)
}

// transport is an http.RoundTripper behind a gate.
type transport struct {
	g  *Gate
	rt http.RoundTripper
}

// RoundTrip sends writes straight through. A read waits while the gate is
// closed; if it fails without a response (and not because its own context
// ended) it closes the gate and is sent again once the gate opens.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return t.rt.RoundTrip(req)
	}
	for {
		if err := t.g.wait(req.Context()); err != nil {
			return nil, err
		}
		resp, err := t.rt.RoundTrip(req.Clone(req.Context()))
		if err == nil || req.Context().Err() != nil || errors.Is(err, context.Canceled) {
			return resp, err
		}
		t.g.close(err)
	}
}

// WrappedRoundTripper lets client-go's transport debugging see through the
// gate.
func (t *transport) WrappedRoundTripper() http.RoundTripper { return t.rt }
