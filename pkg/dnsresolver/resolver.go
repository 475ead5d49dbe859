// Package dnsresolver keeps the IPv4 addresses of DNS names fresh for the egress firewall
// (SPEC §4.6): the node agent tracks the dnsName of every EgressNetworkPolicy rule it
// enforces and re-renders the policies of a name when its addresses change.
//
// # Rules
//
//   - Servers come from the agent's configuration, by default the nameservers of
//     /etc/resolv.conf (port 53); search domains and ndots do not apply: names are absolute.
//   - Only A records are asked for. Each query to a server times out after 5 s; the servers
//     are tried in order until one answers NOERROR or NXDOMAIN; a truncated UDP answer is
//     asked again over TCP.
//   - CNAME chains are followed (at most 8 links); the chain's TTL is the smallest TTL of
//     its CNAMEs and A records.
//   - A name with addresses is queried again after its TTL, clamped to [5 s, 30 min]: a 0 s
//     or 1 s TTL gives one query per 5 s, never more.
//   - A failed query (timeout, network error, SERVFAIL, REFUSED, …) keeps the last good
//     addresses and is retried with backoff: 2 s, 4 s, 8 s, 16 s, then every 30 s. A name
//     whose first resolution fails is retried the same way (OpenShift SDN never retried it).
//   - An authoritative empty answer (NXDOMAIN, or NOERROR without an A record) is an
//     answer, not a failure: the name then has no addresses, and is asked again on the same
//     backoff as a failure, so a name that appears later is found within 30 s (within 2 s
//     after the first miss).
//   - At most Concurrency names are resolved at once (default 8).
//
// Names are reference-counted (Track/Untrack: one reference per policy rule naming it), so
// a name shared by several policies is queried once. OnChange reports a name's new address
// set; it is called from the Run goroutine, one call at a time, in order.
//
// The scheduling rules live in a pure type (schedule.go) tested with explicit times; the
// Resolver adds the clock, the goroutines and the Lookuper, whose DNS implementation
// (DNSLookuper) reaches the servers through a DialFunc.
package dnsresolver

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
)

// Defaults of Config.
const (
	DefaultResolvConf  = "/etc/resolv.conf"
	DefaultTimeout     = 5 * time.Second
	DefaultMinTTL      = 5 * time.Second
	DefaultMaxTTL      = 30 * time.Minute
	DefaultRetryMin    = 2 * time.Second
	DefaultRetryMax    = 30 * time.Second
	DefaultConcurrency = 8
)

// Config configures New. Zero fields take the defaults above.
type Config struct {
	// Servers are the DNS servers; empty: the nameservers of ResolvConf.
	Servers    []netip.AddrPort
	ResolvConf string
	// Timeout bounds one query to one server.
	Timeout time.Duration
	// MinTTL and MaxTTL bound the refresh interval of a resolved name.
	MinTTL, MaxTTL time.Duration
	// RetryMin and RetryMax bound the backoff after a failure or an empty answer.
	RetryMin, RetryMax time.Duration
	// Concurrency bounds the names resolved at once.
	Concurrency int
	// Dial opens connections to the servers (default: net.Dialer in the caller's netns).
	// Ignored when Lookuper is set.
	Dial DialFunc
	// Lookuper replaces the DNS client (tests, or another source of names).
	Lookuper Lookuper
	// OnChange is called with a name (as Normalize returns it) and its new addresses
	// (sorted; empty when the name lost its addresses) whenever they change, also on the
	// first resolution. It runs on the Run goroutine, one call at a time; it should only
	// record the change and return (it may call Track, Untrack and Addrs). A call may arrive
	// just after the name's last Untrack; ignore names no longer used.
	OnChange func(name string, addrs []netip.Addr)
	// Registerer receives the metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Clock is the time source (tests pass a fake clock).
	Clock clock.WithTicker
}

func (c *Config) complete() error {
	setDur := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	setDur(&c.Timeout, DefaultTimeout)
	setDur(&c.MinTTL, DefaultMinTTL)
	setDur(&c.MaxTTL, DefaultMaxTTL)
	setDur(&c.RetryMin, DefaultRetryMin)
	setDur(&c.RetryMax, DefaultRetryMax)
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.OnChange == nil {
		c.OnChange = func(string, []netip.Addr) {}
	}
	if c.Lookuper != nil {
		return nil
	}
	return c.completeLookuper()
}

func (c *Config) completeLookuper() error {
	if len(c.Servers) == 0 {
		if c.ResolvConf == "" {
			c.ResolvConf = DefaultResolvConf
		}
		servers, err := ServersFromResolvConf(c.ResolvConf)
		if err != nil {
			return err
		}
		c.Servers = servers
	}
	if c.Dial == nil {
		c.Dial = defaultDial
	}
	c.Lookuper = &DNSLookuper{Servers: c.Servers, Timeout: c.Timeout, Dial: c.Dial}
	return nil
}

// Resolver keeps tracked names resolved (see the package doc). Track, Untrack and Addrs
// are safe for concurrent use; Run runs once.
type Resolver struct {
	cfg     Config
	metrics *metrics
	wake    chan struct{} // size 1: something changed, reconsider the schedule
	results chan outcome  // size Concurrency: finished lookups

	mu       sync.Mutex
	sched    *schedule
	inFlight int
}

type outcome struct {
	t ticket
	r result
}

// New returns a Resolver; nothing is queried before Run.
func New(cfg Config) (*Resolver, error) {
	if err := cfg.complete(); err != nil {
		return nil, fmt.Errorf("dns resolver: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("dns resolver: metrics: %w", err)
	}
	return &Resolver{cfg: cfg, metrics: m, wake: make(chan struct{}, 1),
		results: make(chan outcome, cfg.Concurrency),
		sched: newSchedule(timing{minTTL: cfg.MinTTL, maxTTL: cfg.MaxTTL,
			retryMin: cfg.RetryMin, retryMax: cfg.RetryMax})}, nil
}

// Normalize returns the key the Resolver uses for name: lower case, without a trailing dot.
// It fails unless the rest is a DNS-1123 subdomain, the syntax the EgressNetworkPolicy CRD
// accepts for dnsName.
func Normalize(name string) (string, error) {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
		return "", fmt.Errorf("%q is not a DNS name: %s", name, strings.Join(errs, "; "))
	}
	return n, nil
}

// Track adds a reference to name (one per policy rule naming it). A new name is resolved as
// soon as Run gets to it; its addresses arrive through OnChange (and Addrs). Returns the
// normalized name.
func (r *Resolver) Track(name string) (string, error) {
	n, err := Normalize(name)
	if err != nil {
		return "", fmt.Errorf("track: %w", err)
	}
	r.mu.Lock()
	added := r.sched.track(n, r.cfg.Clock.Now())
	r.updateGauges()
	r.mu.Unlock()
	if added {
		r.poke()
	}
	return n, nil
}

// Untrack drops a reference to name; with the last one the name is forgotten: no more
// queries, no more OnChange calls. Untracking an untracked name is a no-op.
func (r *Resolver) Untrack(name string) {
	n, err := Normalize(name)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sched.untrack(n)
	r.updateGauges()
}

// Addrs returns the last good addresses of a tracked name (sorted), and whether it has
// been answered at least once.
func (r *Resolver) Addrs(name string) ([]netip.Addr, bool) {
	n, err := Normalize(name)
	if err != nil {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sched.addrs(n)
}

// Settled reports whether name is tracked and at least one resolution of it has finished
// (answered, empty or failed): what a caller waits for before it renders a name for the
// first time, so that it does not render "no addresses" only because Run has not got to
// the name yet.
func (r *Resolver) Settled(name string) bool {
	n, err := Normalize(name)
	if err != nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sched.settled(n)
}

func (r *Resolver) updateGauges() {
	tracked, unresolved := r.sched.counts()
	r.metrics.tracked.Set(float64(tracked))
	r.metrics.unresolved.Set(float64(unresolved))
}

func (r *Resolver) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run resolves names as they fall due until ctx ends; lookups in flight are cancelled.
func (r *Resolver) Run(ctx context.Context) {
	for {
		r.dispatch(ctx)
		timer := r.nextTimer()
		select {
		case <-ctx.Done():
			stopTimer(timer)
			return
		case o := <-r.results:
			r.apply(o)
		case <-r.wake:
		case <-timerC(timer):
		}
		stopTimer(timer)
	}
}

// dispatch starts the lookups that are due, up to the concurrency bound.
func (r *Resolver) dispatch(ctx context.Context) {
	r.mu.Lock()
	tickets := r.sched.due(r.cfg.Clock.Now(), r.cfg.Concurrency-r.inFlight)
	r.inFlight += len(tickets)
	r.mu.Unlock()
	for _, t := range tickets {
		go func() {
			ans, err := r.cfg.Lookuper.LookupA(ctx, t.name)
			r.results <- outcome{t: t, r: result{ans: ans, err: err}}
		}()
	}
}

// apply records a finished lookup and calls OnChange if the name's addresses changed.
func (r *Resolver) apply(o outcome) {
	r.metrics.observe(o.r)
	r.mu.Lock()
	r.inFlight--
	changed, addrs := r.sched.finish(o.t, r.cfg.Clock.Now(), o.r)
	r.updateGauges()
	r.mu.Unlock()
	if changed {
		r.cfg.OnChange(o.t.name, addrs)
	}
}

// nextTimer returns a timer for the earliest due name, or nil if none is waiting.
func (r *Resolver) nextTimer() clock.Timer {
	r.mu.Lock()
	next, ok := r.sched.nextWake()
	full := r.inFlight >= r.cfg.Concurrency
	r.mu.Unlock()
	if !ok || full { // when full, a finishing lookup wakes the loop
		return nil
	}
	return r.cfg.Clock.NewTimer(next.Sub(r.cfg.Clock.Now()))
}

func timerC(t clock.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C()
}

func stopTimer(t clock.Timer) {
	if t != nil {
		t.Stop()
	}
}
